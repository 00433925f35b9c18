"""The inbox's ordering state, without NATS or a store: what it decides for each delivery,
what it remembers, how long early events wait, and how far it says it took the outbox."""

from __future__ import annotations

from lifeline.bus.ordering import Delivery, Ordering, TakenUpTo, Verdict, verdict


def delivery(aggregate: str, version: int, since: float = 0.0) -> Delivery:
    return Delivery(msg=None, aggregate_id=aggregate, version=version,
                    key=f"dispatch/{aggregate}", message_type=None, handled=True, since=since)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_delivery_is_a_repeat_the_next_early_or_stale() -> None:
    assert verdict(delivery("a", 3), last=3, seen=True) is Verdict.REPEAT
    assert verdict(delivery("a", 4), last=3, seen=False) is Verdict.NEXT
    assert verdict(delivery("a", 6), last=3, seen=False) is Verdict.EARLY
    # Older than the last taken and never taken itself: only after a parked gap.
    assert verdict(delivery("a", 2), last=3, seen=False) is Verdict.STALE


def test_the_store_is_asked_only_about_what_is_not_simply_the_next() -> None:
    ordering = Ordering()
    first = delivery("a", 1)
    assert ordering.hint(first) == 0 and first.first  # a new aggregate: no round trip
    ordering.taken(first)
    assert ordering.hint(delivery("a", 2)) == 1
    assert ordering.hint(delivery("a", 3)) is None  # a gap: the store decides
    assert ordering.hint(delivery("b", 2)) is None  # an aggregate it never saw, mid-way
    failing = delivery("c", 1)
    ordering.failed(failing)
    assert ordering.hint(delivery("c", 1)) is None  # after a failure the store decides
    ordering.forget()
    assert ordering.hint(delivery("a", 2)) is None  # memory gone: the store again


def test_the_store_answer_never_goes_below_what_this_process_took() -> None:
    ordering = Ordering()
    taken = delivery("a", 5)
    ordering.taken(taken)
    assert ordering.answered(delivery("a", 7), last=4, parked=False) == 5
    assert ordering.nothing_parked("dispatch/a")
    assert ordering.answered(delivery("b", 3), last=2, parked=True) == 2
    assert not ordering.nothing_parked("dispatch/b")


def test_an_early_event_waits_for_its_predecessor_then_follows_it() -> None:
    ordering = Ordering()
    early = delivery("a", 3)
    assert ordering.wait(early)
    assert ordering.follower(delivery("a", 1)) is None
    assert ordering.follower(delivery("a", 2)) is early
    assert ordering.follower(delivery("a", 2)) is None  # handed out once


def test_a_redelivered_early_event_keeps_waiting_since_it_first_came() -> None:
    clock = Clock()
    ordering = Ordering(early_wait=30, clock=clock)
    ordering.wait(delivery("a", 3, since=60.0))
    again = delivery("a", 3, since=99.0)
    ordering.wait(again)
    assert again.since == 60.0
    assert ordering.expired() == [again]  # 30 s since it first came


def test_early_events_expire_oldest_version_first_and_only_once() -> None:
    clock = Clock()
    ordering = Ordering(early_wait=30, clock=clock)
    fresh, old5, old3 = delivery("a", 9, 95.0), delivery("a", 5, 60.0), delivery("a", 3, 65.0)
    for d in (fresh, old5, old3):
        ordering.wait(d)
    assert ordering.expired() == [old3, old5]
    assert ordering.withdraw(old3)
    assert not ordering.withdraw(old3)  # taken meanwhile: not acted on twice
    clock.now = 130.0
    assert ordering.expired() == [old5, fresh]


def test_too_many_early_events_are_handed_back() -> None:
    ordering = Ordering(max_early=2)
    assert ordering.wait(delivery("a", 3)) and ordering.wait(delivery("b", 3))
    assert not ordering.wait(delivery("c", 3))
    assert ordering.wait(delivery("a", 3))  # one already waiting is not one more


def test_memory_of_aggregates_is_bounded_oldest_forgotten_first() -> None:
    ordering = Ordering(remembered=10)
    for n in range(11):
        ordering.taken(delivery(f"agg-{n}", 1))
    assert ordering.hint(delivery("agg-0", 2)) is None  # forgotten: ask the store
    assert ordering.hint(delivery("agg-10", 2)) == 1


def test_failures_are_counted_until_given_up_or_taken() -> None:
    ordering = Ordering()
    poison = delivery("a", 1)
    assert [ordering.failed(poison) for _ in range(3)] == [1, 2, 3]
    ordering.given_up(poison)
    assert ordering.failed(poison) == 1
    ordering.taken(poison)
    assert ordering.failed(poison) == 1


def test_taken_up_to_stops_below_the_oldest_message_still_held() -> None:
    taken = TakenUpTo(floor=10)
    assert taken.floor == 10
    for sequence, position in ((1, 12), (2, 15), (3, 17)):
        taken.received(sequence, position)
    assert taken.floor == 11  # 12 is still held
    taken.settled(2)
    taken.settled(3)
    assert taken.floor == 11  # an early one settled; 12 still held
    taken.settled(1)
    assert taken.floor == 17
    taken.received(4, None)  # a message from a relay that does not say its position
    taken.settled(4)
    assert taken.floor == 17


def test_what_was_handed_back_does_not_count_as_taken() -> None:
    taken = TakenUpTo()
    taken.received(1, 5)
    taken.received(2, 8)
    taken.settled(2)
    taken.released()  # a failure: 5 comes again
    assert taken.floor == 4
    taken.received(3, 5)
    taken.settled(3)
    assert taken.floor == 5  # on the safe side: 8 counts again once a later one settles


def test_after_saying_what_it_took_the_floor_waits_for_the_refill_below_it() -> None:
    """A durable recreated on a refilled stream said 10; newer events (20, 21) come before
    the republished 11..19: until the stream holds everything after 10 and the inbox caught
    up, the floor stays at 10, or a second loss would skip what is still to come."""
    taken = TakenUpTo(floor=10)
    assert taken.say() == 10
    for sequence, position in ((1, 20), (2, 21)):
        taken.received(sequence, position)
        taken.settled(sequence)
    assert taken.floor == 10
    taken.received(3, 11)
    assert taken.floor == 10
    taken.settled(3)
    taken.caught_up()
    assert taken.floor == 21
