"""lifeline-monitor's duty roster commands: `roster show [--post P] [--at T]`,
`roster load FILE`, `roster swap POST --to PERSON [--at T]` and
`roster cover POST --by PERSON --from T --until T`."""

from collections.abc import Callable, Sequence
from typing import Annotated

import typer
from lifeline.cli import errors, render, times
from lifeline.errors import InvalidArgument
from lifeline.monitor.v1 import monitor_pb2 as pb
from lifeline.monitor.v1 import monitor_pb2_grpc
from rich.table import Table

from lifeline_monitor import rosters

Stub = Callable[[], monitor_pb2_grpc.MonitorServiceStub]
Post = Annotated[str, typer.Argument(help="the post, e.g. xuhui/duty-officer")]
When = Annotated[str | None, typer.Option(
    metavar="TIME", help="ISO-8601; without a zone, in the city's zone")]
Reason = Annotated[str, typer.Option(help="why (kept in the record)")]


def on_duty_table(found: Sequence[pb.OnDuty]) -> Table:
    grid = render.table("post", "holder", "by", "since", "until", "then",
                        caption=times.times_caption())
    for on in found:
        render.add_row(grid, on.post, on.holder or render.cell("vacant", "bold red"), on.by,
                    times.when(on.since) if on.HasField("since") else "-",
                    times.when(on.until) if on.HasField("until") else "-", on.next_holder)
    return grid


def add_commands(app: typer.Typer, stub: Stub) -> None:
    roster = typer.Typer(help="Duty rosters: who holds each post when; swaps and covers.",
                         no_args_is_help=True)
    app.add_typer(roster, name="roster")

    @roster.command(help="Who holds each post now (or --at a time), and who takes over next.")
    def show(post: Annotated[str, typer.Option(help="only this post")] = "",
             at: When = None) -> None:
        request = pb.GetRosterRequest(post=post)
        if at:
            request.at.CopyFrom(times.timestamp(at))
        answer = stub().GetRoster(request)
        render.show_list(answer.on_duty, on_duty_table)

    @roster.command(help="Load posts and their shifts from a roster file, e.g. "
                         "rosters/xuhui.toml (swaps and covers recorded stay).")
    def load(file: Annotated[str, typer.Argument(help="the roster file")]) -> None:
        try:
            posts = rosters.read_roster(file)
        except InvalidArgument as error:
            errors.fail(str(error))
        answer = stub().LoadRoster(pb.LoadRosterRequest(posts=posts))
        render.show(answer, lambda: f"{len(posts)} posts, {answer.posts_changed} changed")

    @roster.command(help="Hand a post over: from --at (default now) PERSON holds it in "
                         "place of whoever is on shift, until that shift ends.")
    def swap(post: Post, to: Annotated[str, typer.Option(help="who takes over")],
             at: When = None, reason: Reason = "") -> None:
        request = pb.SwapDutyRequest(post=post, to=to, reason=reason)
        if at:
            request.at.CopyFrom(times.timestamp(at))
        on = stub().SwapDuty(request).on_duty
        render.show(on, lambda: on_duty_table([on]))

    @roster.command(help="PERSON holds a post from one time to another, whoever is on shift.")
    def cover(post: Post, by: Annotated[str, typer.Option(help="who covers")],
              from_: Annotated[str, typer.Option("--from", metavar="TIME",
                                                 help="ISO-8601 start")],
              until: Annotated[str, typer.Option(metavar="TIME", help="ISO-8601 end")],
              reason: Reason = "") -> None:
        request = pb.CoverDutyRequest(post=post, by=by, reason=reason,
                                      starts_at=times.timestamp(from_),
                                      ends_at=times.timestamp(until))
        on = stub().CoverDuty(request).on_duty
        render.show(on, lambda: on_duty_table([on]))
