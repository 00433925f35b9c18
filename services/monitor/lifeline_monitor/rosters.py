"""Duty rosters: posts (xuhui/duty-officer, fire/liaison) with daily shifts, and the swaps
and covers recorded against them, each post an event-sourced `DutyPost`; who holds a post
at a moment of field time. Grids and escalation policies name a post as `post:<id>`: a
notification goes to whoever holds it when it is sent."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from eventsourcing.persistence import Recording
from google.protobuf.message import Message
from lifeline.edge import check_name
from lifeline.errors import InvalidArgument, NotFound, RuleViolation
from lifeline.events import Cause, ProtoAggregate, event_of, from_timestamp, stable_id, to_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.store import ServiceApplication
from lifeline.views import ViewRow

POST = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}/[a-z0-9][a-z0-9_-]{0,63}$")
CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
PREFIX = "post:"
DEFAULT_ZONE = "Asia/Shanghai"
MAX_SHIFTS = 48
MAX_COVER = timedelta(days=31)
MAX_POSTS_PER_LOAD = 1000


#: The times a roster answers for (a shift's arithmetic must not run off the calendar).
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)


def check_time(field: str, when: datetime) -> datetime:
    if not EARLIEST <= when < LATEST:
        raise InvalidArgument(field, f"a time from {EARLIEST:%Y} to {LATEST:%Y}")
    return when


def post_id_of(post: str) -> UUID:
    return stable_id("post", post)


def check_post(field: str, post: str) -> str:
    if not POST.match(post):
        raise InvalidArgument(field, "a post looks like <area>/<name>, e.g. xuhui/duty-officer "
                                     "(lower case, digits, - and _)")
    return post


def check_party(field: str, party: str) -> None:
    """A party as grids and policies name it: a name, or post:<area>/<name>."""
    if party.startswith(PREFIX):
        check_post(field, party[len(PREFIX):])
    else:
        check_name(field, party)


def check_inbox(field: str, party: str) -> None:
    """Whose inbox: a party's name, or a post's id (a vacant post's notifications)."""
    if "/" in party:
        check_post(field, party)
    else:
        check_name(field, party)


class DutyPost(ProtoAggregate):
    """One post: its shifts, and the swaps and covers recorded against them."""

    EVENT_TYPE = pb.PostEvent

    def when(self, wrapper: Message) -> None:
        field, event = event_of(wrapper)
        if field == "defined":
            overrides = list(self.view.overrides) if "view" in vars(self) else []
            self.view: pb.Post = pb.Post()
            self.view.CopyFrom(event.post)
            self.view.overrides.extend(overrides)
        elif field == "overridden":
            self.view.overrides.append(event.override)

    def on_duty(self, at: datetime) -> pb.OnDuty:
        return on_duty(self.view, at)


def on_duty(post: pb.Post, at: datetime) -> pb.OnDuty:
    """Who holds the post at `at`, since when, until when, and who takes over then."""
    found = _holder(post, at)
    if found.HasField("until"):
        found.next_holder = _holder(post, from_timestamp(found.until)).holder
    return found


def _holder(post: pb.Post, at: datetime) -> pb.OnDuty:
    on = pb.OnDuty(post=post.id, name=post.name)
    # A swap or cover that begins later ends this holder's time there.
    starts = [from_timestamp(o.starts_at) for o in post.overrides
              if from_timestamp(o.starts_at) > at]
    for override in reversed(post.overrides):  # the latest recorded wins
        begin, end = from_timestamp(override.starts_at), from_timestamp(override.ends_at)
        if begin <= at < end:
            on.holder, on.by = override.holder, override.kind
            on.since.CopyFrom(override.starts_at)
            on.until.CopyFrom(to_timestamp(min([end, *starts])))
            return on
    zone = ZoneInfo(post.time_zone or DEFAULT_ZONE)
    local = at.astimezone(zone)
    for shift in post.shifts:
        for day in (local.date(), local.date() - timedelta(days=1)):
            begin, end = _occurrence(shift, day, zone)
            if begin <= at < end:
                on.holder, on.by = shift.holder, "shift"
                on.since.CopyFrom(to_timestamp(begin))
                on.until.CopyFrom(to_timestamp(min([end, *starts])))
                return on
    return on


def _occurrence(shift: pb.Shift, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """When a shift starting on `day` (local) begins and ends."""
    sh, sm = (int(x) for x in shift.starts.split(":"))
    eh, em = (int(x) for x in shift.ends.split(":"))
    begin = datetime.combine(day, time(sh, sm), zone)
    length = timedelta(hours=eh - sh, minutes=em - sm) % timedelta(days=1) or timedelta(days=1)
    return begin, begin + length


def _post(index: int, given: pb.Post) -> pb.Post:
    where = f"posts[{index}]"
    check_post(f"{where}.id", given.id)
    zone = given.time_zone or DEFAULT_ZONE
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Asia" is a folder: IsADirectoryError
        raise InvalidArgument(f"{where}.time_zone", f"{zone[:40]!r} is not an IANA time zone "
                                                    "(e.g. Asia/Shanghai)") from None
    if len(given.shifts) > MAX_SHIFTS:
        raise InvalidArgument(f"{where}.shifts", f"at most {MAX_SHIFTS}")
    for n, shift in enumerate(given.shifts):
        check_name(f"{where}.shifts[{n}].holder", shift.holder)
        for name in ("starts", "ends"):
            if not CLOCK.match(getattr(shift, name)):
                raise InvalidArgument(f"{where}.shifts[{n}].{name}", "HH:MM, 00:00 to 23:59")
    if given.overrides:
        raise InvalidArgument(f"{where}.overrides", "swaps and covers are recorded with "
                                                    "SwapDuty and CoverDuty, not loaded")
    return pb.Post(id=given.id, name=given.name[:200], time_zone=zone, shifts=given.shifts)


def load_roster(app: ServiceApplication, posts: Sequence[pb.Post], cause: Cause,
                now: datetime) -> tuple[pb.LoadRosterResponse, list[Recording]]:
    """Define or redefine posts and their shifts, all or nothing; swaps and covers stay."""
    if not posts:
        raise InvalidArgument("posts", "give at least one post")
    if len(posts) > MAX_POSTS_PER_LOAD:
        raise InvalidArgument("posts", f"at most {MAX_POSTS_PER_LOAD} per load")
    wanted: dict[str, pb.Post] = {}
    for index, given in enumerate(posts):
        post = _post(index, given)
        if post.id in wanted:
            raise InvalidArgument(f"posts[{index}].id", f"{post.id!r} is given twice")
        wanted[post.id] = post
    changed: list[DutyPost] = []
    for post in wanted.values():
        found = app.find(DutyPost, post_id_of(post.id))
        if found is None:
            changed.append(DutyPost.start(post_id_of(post.id), "defined",
                                          pb.PostDefined(post=post), cause, now))
            continue
        current = pb.Post()
        current.CopyFrom(found.view)
        del current.overrides[:]
        if current != post:
            found.record("defined", pb.PostDefined(post=post), cause, now)
            changed.append(found)
    return pb.LoadRosterResponse(posts_changed=len(changed)), app.record(*changed)


def _found(app: ServiceApplication, field: str, post: str) -> DutyPost:
    check_post(field, post)
    found = app.find(DutyPost, post_id_of(post))
    if found is None:
        raise NotFound("post", post)
    return found


def swap(app: ServiceApplication, post: str, to: str, at: datetime, cause: Cause,
         now: datetime) -> tuple[pb.OnDuty, list[Recording]]:
    """From `at`, `to` holds the post in place of whoever holds it then, until that
    holder's time ends (a handover)."""
    check_name("to", to)
    found = _found(app, "post", post)
    current = found.on_duty(at)
    if not current.holder:
        raise RuleViolation("swap-held-post", f"nobody holds {post} at {at:%Y-%m-%d %H:%M} "
                                              "UTC to hand over: cover it instead")
    if current.holder == to:
        raise RuleViolation("swap-held-post", f"{to} already holds {post} then")
    found.record("overridden", pb.DutyOverridden(post=post, override=pb.DutyOverride(
        holder=to, starts_at=to_timestamp(at), ends_at=current.until, kind="swap",
        replaces=current.holder, reason=cause.reason, by=cause.actor)), cause, now)
    return found.on_duty(at), app.record(found)


def cover(app: ServiceApplication, post: str, by: str, starts: datetime, ends: datetime,
          cause: Cause, now: datetime) -> tuple[pb.OnDuty, list[Recording]]:
    """`by` holds the post from `starts` to `ends`, whoever is on shift."""
    check_name("by", by)
    if ends <= starts:
        raise InvalidArgument("ends_at", "must be after starts_at")
    if ends - starts > MAX_COVER:
        raise InvalidArgument("ends_at", "a cover lasts at most 31 days")
    found = _found(app, "post", post)
    found.record("overridden", pb.DutyOverridden(post=post, override=pb.DutyOverride(
        holder=by, starts_at=to_timestamp(starts), ends_at=to_timestamp(ends), kind="cover",
        replaces=found.on_duty(starts).holder, reason=cause.reason, by=cause.actor)),
        cause, now)
    return found.on_duty(starts), app.record(found)


def holder(app: ServiceApplication, post: str, at: datetime) -> str:
    """Who holds the post at `at`; empty when nobody does or no such post is loaded."""
    found = app.find(DutyPost, post_id_of(post))
    return found.on_duty(at).holder if found is not None else ""


def read_roster(path: str | Path) -> list[pb.Post]:
    """`rosters/<city>.toml`: [[posts]] with id, name, time_zone and shifts (holder,
    starts, ends); checked when loaded."""
    try:
        data: dict[str, Any] = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InvalidArgument("file", f"{path}: {error}") from None
    posts = []
    for index, raw in enumerate(data.get("posts", [])):
        try:
            posts.append(pb.Post(
                id=str(raw.get("id", "")), name=str(raw.get("name", "")),
                time_zone=str(raw.get("time_zone", "")),
                shifts=[pb.Shift(holder=str(s["holder"]), starts=str(s["starts"]),
                                 ends=str(s["ends"])) for s in raw.get("shifts", [])]))
        except (KeyError, TypeError, AttributeError):
            raise InvalidArgument(f"posts[{index}].shifts", "each shift has holder, starts "
                                                            "and ends") from None
    return posts


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, DutyPost):
        return [ViewRow("post", aggregate.view.id, aggregate.view)]
    return []
