"""The inbox's ordering state: what to do with each delivery, decided without I/O.

Per upstream aggregate: the last version taken, the early events waiting for their
predecessor, the attempts of failing ones; and how far in the upstream's outbox
everything received was taken. The inbox asks the store and the broker; this decides.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from eventsourcing.persistence import Tracking

#: An event that arrived before an earlier one of its aggregate waits this long for it
#: (held by a dead consumer, redelivered after a failure), then is parked with the gap.
EARLY_WAIT_SECONDS = 30.0
#: At most this many early events wait in memory; more are handed back to JetStream.
MAX_EARLY = 512
#: Aggregates whose last taken version an inbox remembers (a hint; the store decides).
MAX_REMEMBERED = 50_000


@dataclass
class Delivery:
    """One message with its event identity: upstream aggregate id and version."""

    msg: Any  # the broker's message (nats.aio.msg.Msg); only the inbox looks inside
    aggregate_id: str
    version: int
    key: str  # "<upstream>/<aggregate id>": the tracking table's application_name
    message_type: Any  # the payload's protobuf class; None: a type this consumer does not know
    handled: bool  # False: an event of the aggregate this consumer only tracks
    since: float = field(default_factory=time.monotonic)
    #: Taken as its aggregate's first without asking the store (see Ordering.hint): its
    #: write refuses it if a later version was taken.
    first: bool = False

    @property
    def ident(self) -> tuple[str, int]:
        return self.key, self.version

    @property
    def tracking(self) -> Tracking:
        return Tracking(application_name=self.key, notification_id=self.version)


class Verdict(Enum):
    REPEAT = "taken before: acknowledge"
    EARLY = "an earlier version is missing: wait for it"
    STALE = "older than one taken after a gap was parked: park it behind"
    NEXT = "the next version: apply it"


def verdict(delivery: Delivery, last: int, seen: bool) -> Verdict:
    """What to do with a delivery, given the last version taken of its aggregate and
    whether exactly this one was."""
    if seen:
        return Verdict.REPEAT
    if delivery.version > last + 1:
        return Verdict.EARLY
    if delivery.version <= last:
        return Verdict.STALE
    return Verdict.NEXT


class Ordering:
    """Per upstream aggregate: the last version taken as far as this process knows (a
    hint: the store decides), the early deliveries waiting for their predecessor, how often
    each failed, and which aggregates are known to have nothing parked."""

    def __init__(self, early_wait: float = EARLY_WAIT_SECONDS, *, max_early: int = MAX_EARLY,
                 remembered: int = MAX_REMEMBERED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.early_wait, self.max_early, self.remembered = early_wait, max_early, remembered
        self.clock = clock
        self.early: dict[tuple[str, int], Delivery] = {}
        self._last: dict[str, int] = {}  # key -> last version taken, as far as we know
        self._attempts: dict[tuple[str, int], int] = {}
        self._unparked: dict[str, None] = {}  # keys known to have nothing parked

    def hint(self, delivery: Delivery) -> int | None:
        """The last version taken, when it needs no store: the delivery is simply the next
        one remembered, or the first event of an aggregate new to this inbox (each warning,
        incident and request starts so). That one is marked `first`: its write refuses a
        repeat (the tracking row's key) and a straggler whose aggregate has a later
        version taken (a guard in the same statement), and the retry then asks the store.
        None: ask the store."""
        remembered = self._last.get(delivery.key)
        if remembered is not None and delivery.version == remembered + 1:
            return remembered
        if remembered is None and delivery.version == 1 and delivery.ident not in self._attempts:
            delivery.first = True
            self._unparked[delivery.key] = None
            return 0
        return None

    def answered(self, delivery: Delivery, last: int, parked: bool) -> int:
        """Merge the store's answer (last version taken, anything parked) with memory."""
        if not parked:
            self._unparked[delivery.key] = None  # the parking check needs no second look
        remembered = self._last.get(delivery.key)
        return last if remembered is None else max(last, remembered)

    def wait(self, delivery: Delivery) -> bool:
        """Keep an early delivery until its predecessor is taken; False when too many wait
        already (hand it back to the broker)."""
        earlier = self.early.get(delivery.ident)
        if earlier is not None:
            delivery.since = earlier.since  # a redelivery of one that already waits
        elif len(self.early) >= self.max_early:
            return False
        self.early[delivery.ident] = delivery
        return True

    def follower(self, delivery: Delivery) -> Delivery | None:
        """The early delivery that waited for this one, now free to go."""
        return self.early.pop((delivery.key, delivery.version + 1), None)

    def expired(self) -> list[Delivery]:
        """The early deliveries that waited longer than early_wait, oldest version first
        (still kept: `withdraw` each before acting on it)."""
        limit = self.clock() - self.early_wait
        return sorted((d for d in self.early.values() if d.since < limit),
                      key=lambda d: (d.key, d.version))

    def withdraw(self, delivery: Delivery) -> bool:
        """Stop keeping an early delivery; False when it was taken meanwhile."""
        return self.early.pop(delivery.ident, None) is not None

    def taken(self, delivery: Delivery) -> None:
        """Remember the version taken (most recent last; the oldest forgotten first)."""
        self._attempts.pop(delivery.ident, None)
        self._last.pop(delivery.key, None)
        self._last[delivery.key] = delivery.version
        if len(self._last) > self.remembered:
            for key in list(itertools.islice(self._last, self.remembered // 10)):
                del self._last[key]

    def failed(self, delivery: Delivery) -> int:
        """Count a failed attempt; how many so far (in this process)."""
        self._unparked.pop(delivery.key, None)
        attempts = self._attempts[delivery.ident] = self._attempts.get(delivery.ident, 0) + 1
        return attempts

    def given_up(self, delivery: Delivery) -> None:
        self._attempts.pop(delivery.ident, None)

    def nothing_parked(self, key: str) -> bool:
        return key in self._unparked

    def unparked(self, key: str) -> None:
        self._unparked[key] = None
        if len(self._unparked) > self.remembered:
            del self._unparked[next(iter(self._unparked))]

    def parked(self, key: str) -> None:
        self._unparked.pop(key, None)

    def forget(self) -> None:
        """After a failure of the store or the broker: the store is the truth again."""
        self.early.clear()
        self._last.clear()
        self._unparked.clear()


class TakenUpTo:
    """How far in the upstream's outbox (the relay's positions, carried in a header) this
    inbox has taken everything: messages come in stream order, so that is just below the
    oldest one still held, else the newest one settled.

    Said when the inbox (re)creates its durable, so that the upstream's relay republishes
    what a lost stream took with it. From then until the stream holds everything after
    what it said (the relay's refill done) and the inbox caught up with it, what it
    settled may lie above a gap the refill still fills: the floor stays where it was said.
    """

    def __init__(self, floor: int = 0) -> None:
        self._held: dict[int, int] = {}  # stream sequence -> position
        self._newest = floor
        self.said: int | None = None  # what the durable said, until the stream caught up

    @property
    def floor(self) -> int:
        found = min(self._held.values()) - 1 if self._held else self._newest
        return found if self.said is None else min(found, self.said)

    def say(self) -> int:
        """The floor, as a newly created durable says it."""
        self.said = self.floor
        return self.said

    def caught_up(self) -> None:
        """The stream holds everything after what was said, and all of it was received."""
        self.said = None

    def received(self, sequence: int, position: int | None) -> None:
        if position is not None:
            self._held[sequence] = position

    def settled(self, sequence: int) -> None:
        position = self._held.pop(sequence, None)
        if position is not None:
            self._newest = max(self._newest, position)

    def released(self) -> None:
        """Everything held was handed back (it comes again): nothing from the oldest of
        them on counts as taken."""
        self._newest = self.floor
        self._held.clear()


#: How many upstream aggregates of a fetched batch a consumer takes side by side (each
#: aggregate's events still one after another, in version order): their writes share
#: transactions.
LANES = 16


def lane_of(headers: dict[str, str] | None) -> str:
    """The upstream aggregate a message belongs to, as the relay names it in its
    Nats-Msg-Id header (one shared lane for messages that do not say)."""
    aggregate_id, _, _ = (headers or {}).get("Nats-Msg-Id", "").rpartition("/")
    return aggregate_id
