"""Parked messages on every service's CLI: list them, retry a parking, discard its first
message."""


from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table

from lifeline.cli import render, times
from lifeline.cli.connection import connect
from lifeline.common.v1 import parking_pb2, parking_pb2_grpc


def add_parking_commands(app: typer.Typer, service: str) -> None:
    """`parked`, `retry-parked` and `discard-parked`, talking to `service`."""

    def stub() -> parking_pb2_grpc.ParkingServiceStub:
        return parking_pb2_grpc.ParkingServiceStub(connect(service))

    @app.command(help="List the messages this service's consumers parked (oldest first).")
    def parked(limit: Annotated[int, typer.Option(help=render.LIMIT_HELP)] = 0) -> None:
        def fetch(token: str) -> tuple[Sequence[parking_pb2.Parking], str]:
            answer = stub().ListParked(parking_pb2.ListParkedRequest(page=render.page(token)))
            return answer.parkings, answer.next_page_token

        def people(found: list[parking_pb2.Parking]) -> Table:
            grid = render.table("id", "consumer", "aggregate", "version", "subject",
                                "attempts", "parked", "error", caption=times.times_caption())
            for p in found:
                for m in p.waiting:
                    render.add_row(grid, p.id, p.consumer, p.upstream_aggregate_id,
                                   m.version, m.subject, m.attempts, times.when(m.parked_at),
                                   m.error)
            return grid
        render.show_list(render.pages(fetch, "parkings", limit), people)

    @app.command("retry-parked", help="Apply a parking's waiting messages again, in order.")
    def retry_parked(id: Annotated[str, typer.Argument(help="the parking id `parked` shows")]
                     ) -> None:
        answer = stub().RetryParked(parking_pb2.RetryParkedRequest(id=id))
        left = len(answer.parking.waiting)
        render.show(answer, lambda: f"applied {answer.applied}; {left} still parked"
                    + (f" ({answer.parking.waiting[0].error})" if left else ""))

    @app.command("discard-parked", help="Give up on the first waiting message of a parking "
                                        "(the rest stay parked).")
    def discard_parked(
        id: Annotated[str, typer.Argument(help="the parking id `parked` shows")],
        reason: Annotated[str, typer.Option(help="why (kept with the record)")] = "",
    ) -> None:
        answer = stub().DiscardParked(parking_pb2.DiscardParkedRequest(id=id, reason=reason))
        render.show(answer, lambda: f"discarded version {answer.discarded_version}; "
                    f"{len(answer.parking.waiting)} still parked")
