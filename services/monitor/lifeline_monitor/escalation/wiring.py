"""How monitor runs escalation chains: they follow its consumer of its own warnings, steps
fall due on the field clock and a periodic watch notifies them, chains and notifications
have rows in the read model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from lifeline.clock import FieldClock
from lifeline.events import Cause, ProtoAggregate, from_timestamp
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.views import ViewRow

from lifeline_monitor.escalation.chains import Chains
from lifeline_monitor.escalation.model import Escalation, Notification

if TYPE_CHECKING:
    from lifeline.runtime import Runtime

S = pb.EscalationStatus
N = pb.NotificationStatus


def next_due(chain: pb.Escalation) -> tuple[datetime | None, timedelta]:
    """When a running chain's next step falls due on the field clock (kept on the read
    model, so the watch reads only the chains due, not every one running)."""
    running = chain.status == S.ESCALATION_STATUS_RUNNING and chain.HasField("next_due")
    return (from_timestamp(chain.next_due) if running else None), timedelta(0)


def rows_for(aggregate: ProtoAggregate) -> list[ViewRow]:
    if isinstance(aggregate, Escalation):
        chain = aggregate.view
        return [ViewRow("escalation", chain.warning_id, chain, status=S.Name(chain.status),
                        due=next_due(chain)[0])]
    if isinstance(aggregate, Notification):
        n = aggregate.view
        return [ViewRow("notification", f"{n.party}|{n.warning_id}", n,
                        status=N.Name(n.status), category=n.party)]
    return []


#: How often due steps are looked for (service time).
WATCH_SECONDS = 0.25


#: Something that follows monitor's warning events: (event field, event, cause, service
#: now) -> the aggregates to record with the event's tracking.
Move = Callable[[str, Any, Cause, datetime], Sequence[Any]]


def follow(rt: Runtime, field: FieldClock, *moves: Move) -> Callable[[str, Any], list[Any]]:
    """What the warning consumer records beside coupled risks (the chains' moves, the CAP
    feed), each caused by the warning event at its field time."""

    def also(name: str, event: Any) -> list[Any]:
        meta = event.meta
        occurred_at = from_timestamp(meta.occurred_at)
        if occurred_at <= rt.now() + timedelta(minutes=5):  # a clock far ahead moves nothing
            field.observe(occurred_at)
        cause = Cause(actor=meta.actor, via=meta.via, occurred_at=occurred_at,
                      correlation_id=event.warning_id,
                      causation_id=f"{meta.aggregate_id}/{meta.sequence}")
        return [a for move in moves for a in move(name, event, cause, rt.now())]

    return also


def field_clock(rt: Runtime, field: FieldClock,
                engine_now: Callable[[datetime], float | None]
                ) -> Callable[[], datetime | None]:
    """Now on the field clock steps fall due on: in production the service clock; in drills
    (`LIFELINE_FIELD_CLOCK=observed`) the latest field time monitor was told of (readings,
    warnings, acknowledgements); None before any."""

    def field_now() -> datetime | None:
        service_now = rt.now()
        told = field.now(timedelta(0), service_now)
        if not field.observed:
            return told
        read = engine_now(service_now)
        if read is not None:
            at = datetime.fromtimestamp(read, UTC)
            told = at if told is None or at > told else told
        return told

    return field_now


def watch(rt: Runtime, chains: Chains, field_now: Callable[[], datetime | None]) -> None:
    """Notify each chain's steps as they fall due on the field clock."""

    async def check() -> None:
        now = field_now()
        if now is None:
            return
        due = [c.warning_id for c in await rt.views.due(
            "escalation", pb.Escalation, service_now=rt.now(), field_now=now)]
        for warning_id in due:
            await rt.write(lambda w=warning_id: (  # type: ignore[misc]
                None, chains.record(chains.fire_due(w, now, rt.now()))),
                read_your_writes=True)  # the next check reads the view

    async def fill_due() -> None:
        # Chains projected before the read model kept their next step's time.
        await rt.views.fill_due("escalation", pb.Escalation, next_due)

    rt.on_start(fill_due)
    rt.every("monitor escalation chains", WATCH_SECONDS, check)
