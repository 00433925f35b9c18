"""Duty rosters: who holds a post at a moment of field time, across midnight and time
zones; a swap hands the post over for the rest of a shift, a cover holds it for a while;
a policy step naming a post notifies its holder at the time the step is notified, and the
notification says both the post and the person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from lifeline.common.v1 import common_pb2
from lifeline.errors import InvalidArgument, RuleViolation
from lifeline.events import Cause, from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline_monitor import rosters
from lifeline_monitor.escalation import chains, policy

from tests.unit.test_monitor_escalation import RESPONSIBLE, Store

L = common_pb2.WarningLevel
#: 2031-07-20 in Shanghai (UTC+8): 08:00 local is 00:00 UTC.
DAY = datetime(2031, 7, 20, tzinfo=UTC)
DUTY = pb.Post(id="xuhui/duty-officer", name="Xuhui duty officer", time_zone="Asia/Shanghai",
               shifts=[pb.Shift(holder="li-wei", starts="08:00", ends="20:00"),
                       pb.Shift(holder="he-jing", starts="20:00", ends="08:00")])


def local(hours: float) -> datetime:
    """Shanghai time on the day, hours after midnight (may run into the next day)."""
    return DAY - timedelta(hours=8) + timedelta(hours=hours)


def cause(at: datetime, actor: str = "duty-desk") -> Cause:
    return Cause(actor=actor, occurred_at=at, reason="test")


def loaded() -> Store:
    store = Store()
    rosters.load_roster(store, [DUTY], cause(DAY), DAY)  # type: ignore[arg-type]
    return store


def test_shifts_hand_over_at_their_times_and_past_midnight() -> None:
    on = rosters.on_duty(DUTY, local(8))
    assert (on.holder, on.by, on.next_holder) == ("li-wei", "shift", "he-jing")
    assert from_timestamp(on.since) == local(8) and from_timestamp(on.until) == local(20)
    assert rosters.on_duty(DUTY, local(7.99)).holder == "he-jing"
    night = rosters.on_duty(DUTY, local(26))  # 02:00 the next day
    assert (night.holder, from_timestamp(night.since), from_timestamp(night.until)) == (
        "he-jing", local(20), local(32))
    vacant = rosters.on_duty(pb.Post(id="fire/liaison", shifts=[
        pb.Shift(holder="sun-hao", starts="09:00", ends="17:00")]), local(18))
    assert vacant.holder == ""


def test_a_swap_at_eight_hands_the_post_over_until_the_shift_ends() -> None:
    store = loaded()
    on, _ = rosters.swap(store, "xuhui/duty-officer", "he-jing", local(8),  # type: ignore[arg-type]
                         cause(local(8)), DAY)
    assert (on.holder, on.by, from_timestamp(on.until), on.next_holder) == (
        "he-jing", "swap", local(20), "he-jing")
    assert rosters.holder(store, "xuhui/duty-officer", local(8 + 5 / 60)) == "he-jing"  # type: ignore[arg-type]
    assert rosters.holder(store, "xuhui/duty-officer", local(7.9)) == "he-jing"  # type: ignore[arg-type]
    assert rosters.holder(store, "xuhui/duty-officer", local(32.5)) == "li-wei"  # type: ignore[arg-type]
    overridden = [e.overridden.override for _, e in store.events
                  if e.WhichOneof("event") == "overridden"]
    assert [(o.holder, o.replaces, o.by) for o in overridden] == [
        ("he-jing", "li-wei", "duty-desk")]
    with pytest.raises(RuleViolation, match="already holds"):
        rosters.swap(store, "xuhui/duty-officer", "he-jing", local(9), cause(local(9)),  # type: ignore[arg-type]
                     DAY)


def test_a_cover_holds_the_post_and_a_later_swap_wins() -> None:
    store = loaded()
    on, _ = rosters.cover(store, "xuhui/duty-officer", "sun-hao", local(12), local(14),  # type: ignore[arg-type]
                          cause(local(11)), DAY)
    assert (on.holder, on.by, on.next_holder) == ("sun-hao", "cover", "li-wei")
    assert rosters.holder(store, "xuhui/duty-officer", local(11)) == "li-wei"  # type: ignore[arg-type]
    before = rosters.on_duty(store.aggregates[rosters.post_id_of("xuhui/duty-officer")].view,
                             local(11))
    assert from_timestamp(before.until) == local(12)  # the cover cuts li-wei's time there
    with pytest.raises(InvalidArgument, match="ends_at"):
        rosters.cover(store, "xuhui/duty-officer", "sun-hao", local(14), local(12),  # type: ignore[arg-type]
                      cause(local(11)), DAY)


def test_a_roster_is_checked_and_loading_it_again_changes_nothing() -> None:
    store = loaded()
    answer, _ = rosters.load_roster(store, [DUTY], cause(DAY), DAY)  # type: ignore[arg-type]
    assert answer.posts_changed == 0
    for bad, field in (
            (pb.Post(id="Xuhui duty"), "posts[0].id"),
            (pb.Post(id="xuhui/duty", time_zone="Mars/Olympus"), "posts[0].time_zone"),
            (pb.Post(id="xuhui/duty", time_zone="Asia"), "posts[0].time_zone"),
            (pb.Post(id="xuhui/duty", shifts=[pb.Shift(holder="li-wei", starts="8:00",
                                                       ends="20:00")]),
             "posts[0].shifts[0].starts")):
        with pytest.raises(InvalidArgument) as refused:
            rosters.load_roster(store, [bad], cause(DAY), DAY)  # type: ignore[arg-type]
        assert refused.value.field == field
    shipped = rosters.read_roster("rosters/xuhui.toml")
    assert "xuhui/duty-officer" in [p.id for p in shipped]


def test_a_step_naming_a_post_notifies_its_holder_then_and_says_the_post() -> None:
    store = loaded()
    rosters.swap(store, "xuhui/duty-officer", "he-jing", local(8), cause(local(8)), DAY)  # type: ignore[arg-type]
    policies = policy.parse_policies({"deadlines": {"red": 5}, "policies": [{
        "id": "posts", "steps": [{"notify": ["post:xuhui/duty-officer", "grid_officer"],
                                  "channel": "app"}]}]})
    chain = chains.Chains(store, policies,  # type: ignore[arg-type]
                          lambda post, at: rosters.holder(store, post, at))  # type: ignore[arg-type]
    raised = pb.WarningRaised(warning_id="88309b96dbfffff/urban_flooding/1",
                              hazard="urban_flooding", grid_cell="88309b96dbfffff",
                              level=L.WARNING_LEVEL_RED, responsible=RESPONSIBLE)
    store.record(*chain.warning_moved("raised", raised, cause(local(8 + 5 / 60)), DAY))
    notified = [e.notified.notification for _, e in store.events
                if e.WhichOneof("event") == "notified"]
    assert [(n.party, n.post, n.role) for n in notified] == [
        ("he-jing", "xuhui/duty-officer", "post"), ("wang-fang", "", "grid_officer")]
    with pytest.raises(policy.PolicyError, match="post:<area>/<name>"):
        policy.parse_policies({"policies": [{"id": "x", "steps": [
            {"notify": ["post:Xuhui Duty"], "channel": "app"}]}]})


def test_a_vacant_post_is_notified_as_itself() -> None:
    store = Store()
    liaison = pb.Post(id="fire/liaison", shifts=[pb.Shift(holder="sun-hao", starts="09:00",
                                                          ends="17:00")])
    rosters.load_roster(store, [liaison], cause(DAY), DAY)  # type: ignore[arg-type]
    policies = policy.parse_policies({"policies": [{"id": "p", "steps": [
        {"notify": ["post:fire/liaison"], "channel": "phone"}]}]})
    chain = chains.Chains(store, policies,  # type: ignore[arg-type]
                          lambda post, at: rosters.holder(store, post, at))  # type: ignore[arg-type]
    raised = pb.WarningRaised(warning_id="88309b96dbfffff/building_fire/1",
                              hazard="building_fire", grid_cell="88309b96dbfffff",
                              level=L.WARNING_LEVEL_RED, responsible=RESPONSIBLE)
    store.record(*chain.warning_moved("raised", raised, cause(local(3)), DAY))  # 03:00
    [n] = [e.notified.notification for _, e in store.events
           if e.WhichOneof("event") == "notified"]
    assert (n.party, n.post) == ("fire/liaison", "fire/liaison")
    rosters.check_inbox("party", "fire/liaison")
    with pytest.raises(InvalidArgument, match="party"):
        rosters.check_inbox("party", "fire/liaison/x")
