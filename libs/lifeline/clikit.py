"""What the four operator CLIs share: finding the service, printing, failing clearly."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from lifeline import idempotency
from lifeline.common.v1 import common_pb2, parking_pb2, parking_pb2_grpc
from lifeline.grpcutil import client_credentials

Command = Callable[[argparse.Namespace, grpc.Channel], Any]


def default_state_dir() -> Path:
    return Path(os.environ.get("LIFELINE_STATE_DIR", ".lifeline"))


def service_address(service: str, given: str | None) -> str:
    """--addr, else LIFELINE_<SERVICE>_ADDR, else what `lifeline up` recorded."""
    if given:
        return given
    env = os.environ.get(f"LIFELINE_{service.upper()}_ADDR")
    if env:
        return env
    state_file = default_state_dir() / "state.json"
    try:
        state = json.loads(state_file.read_text())
        return str(state["services"][service]["address"])
    except (OSError, KeyError, ValueError):
        raise SystemExit(f"lifeline-{service}: no address; pass --addr HOST:PORT, set "
                         f"LIFELINE_{service.upper()}_ADDR, or run `lifeline up`") from None


class IdempotencyKey(grpc.UnaryUnaryClientInterceptor):
    """Sends a fresh idempotency key with every call; gRPC's own retries resend it, so a
    command retried after a dropped connection happens once."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), (idempotency.HEADER, str(uuid.uuid4()))]
        return continuation(details._replace(metadata=metadata), request)


#: Retry calls that never reached a service (UNAVAILABLE): safe, the key makes it once.
RETRY_CONFIG = json.dumps({"methodConfig": [{
    "name": [{}],
    "retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.2s", "maxBackoff": "2s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]})


def credentials(token: str | None, ca_file: str | None) -> grpc.ChannelCredentials:
    """--token, else LIFELINE_TOKEN, else the token `lifeline up` wrote; --ca, else
    LIFELINE_TLS_CA, else the CA `lifeline up` made; plaintext (loopback only) when
    LIFELINE_INSECURE_PLAINTEXT is set."""
    state = default_state_dir()
    token = token or os.environ.get("LIFELINE_TOKEN") or _read(state / "auth" / "token")
    ca_file = ca_file or os.environ.get("LIFELINE_TLS_CA")
    ca = Path(ca_file).read_bytes() if ca_file else _read_bytes(state / "tls" / "ca.pem")
    if ca is None and os.environ.get("LIFELINE_INSECURE_PLAINTEXT", "").lower() not in (
            "1", "true", "yes", "on"):
        raise SystemExit("no CA certificate to trust: pass --ca FILE, set LIFELINE_TLS_CA, "
                         "run `lifeline up`, or set LIFELINE_INSECURE_PLAINTEXT=true")
    return client_credentials(ca, token or None)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _read(path: Path) -> str | None:
    data = _read_bytes(path)
    return data.decode().strip() if data else None


def parser(service: str, description: str) -> tuple[argparse.ArgumentParser, Any]:
    p = argparse.ArgumentParser(prog=f"lifeline-{service}", description=description)
    p.add_argument("--addr", help=f"{service} gRPC address (default: LIFELINE_"
                                  f"{service.upper()}_ADDR or the running `lifeline up`)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--token", help="bearer token (default: LIFELINE_TOKEN or the token "
                                   "`lifeline up` wrote); you are recorded as its subject")
    p.add_argument("--ca", help="CA certificate to trust (default: LIFELINE_TLS_CA or the "
                                "CA `lifeline up` made)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help=f"run the {service} service (configured by environment)")
    _parking_parsers(sub)
    return p, sub


# ---- parked messages: the same three commands on every service's CLI ----


def _parking_parsers(sub: Any) -> None:
    sub.add_parser("parked", help="list the messages this service's consumers parked")
    sub.add_parser("retry-parked", help="apply a parking's waiting messages again, in order"
                   ).add_argument("id", help="the parking id `parked` shows")
    s = sub.add_parser("discard-parked", help="give up on the first waiting message of a "
                       "parking (the rest stay parked)")
    s.add_argument("id", help="the parking id `parked` shows")
    s.add_argument("--reason", default="", help="why (kept with the record)")


def _parking_stub(channel: grpc.Channel) -> parking_pb2_grpc.ParkingServiceStub:
    return parking_pb2_grpc.ParkingServiceStub(channel)


def _parkings(parkings: Sequence[parking_pb2.Parking]) -> Table:
    return Table(["id", "consumer", "aggregate", "version", "subject", "attempts", "parked",
                  "error"],
                 [[p.id, p.consumer, p.upstream_aggregate_id, m.version, m.subject,
                   m.attempts, when(m.parked_at), m.error[:80]]
                  for p in parkings for m in p.waiting])


def parked(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    found: list[parking_pb2.Parking] = []
    token = ""
    while True:
        page = _parking_stub(channel).ListParked(parking_pb2.ListParkedRequest(
            page=common_pb2.PageRequest(page_token=token)))
        found.extend(page.parkings)
        token = page.next_page_token
        if not token:
            return parking_pb2.ListParkedResponse(parkings=found) if args.json else \
                _parkings(found)


def retry_parked(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    answer = _parking_stub(channel).RetryParked(parking_pb2.RetryParkedRequest(id=args.id))
    if args.json:
        return answer
    left = len(answer.parking.waiting)
    return (f"applied {answer.applied}; {left} still parked"
            + (f" ({answer.parking.waiting[0].error})" if left else ""))


def discard_parked(args: argparse.Namespace, channel: grpc.Channel) -> Any:
    answer = _parking_stub(channel).DiscardParked(parking_pb2.DiscardParkedRequest(
        id=args.id, reason=args.reason))
    return answer if args.json else (f"discarded version {answer.discarded_version}; "
                                     f"{len(answer.parking.waiting)} still parked")


PARKING_COMMANDS: dict[str, Command] = {"parked": parked, "retry-parked": retry_parked,
                                        "discard-parked": discard_parked}


def run(service: str, p: argparse.ArgumentParser, commands: dict[str, Command],
        serve: Callable[[], None], argv: Sequence[str] | None = None,
        offline: Callable[[argparse.Namespace], Any] | None = None) -> None:
    """offline(args) runs a command that needs no service (checking a file) and answers
    NotImplemented for the others."""
    _accept_options_after_command(p)
    args = p.parse_args(argv)
    if args.command == "serve":
        serve()
        return
    if offline is not None:
        done = offline(args)
        if done is not NotImplemented:
            if done is not None:
                emit(done, args.json)
            return
    address = service_address(service, args.addr)
    with grpc.secure_channel(address, credentials(args.token, args.ca),
                             options=[("grpc.service_config", RETRY_CONFIG)]) as raw:
        channel = grpc.intercept_channel(raw, IdempotencyKey())
        try:
            result = {**PARKING_COMMANDS, **commands}[args.command](args, channel)
        except grpc.RpcError as error:
            code = error.code()
            detail = error.details()
            if code == grpc.StatusCode.UNAVAILABLE:
                detail = f"cannot reach lifeline-{service} at {address} ({detail})"
            print(f"lifeline-{service}: {code.name.lower()}: {detail}", file=sys.stderr)
            raise SystemExit(1) from None
    if result is not None:
        emit(result, args.json)


def _accept_options_after_command(p: argparse.ArgumentParser) -> None:
    """`lifeline-dispatch incidents --json` works as well as `--json incidents`."""
    for action in p._subparsers._group_actions if p._subparsers else ():
        for command in getattr(action, "choices", {}).values():
            command.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
            command.add_argument("--addr", default=argparse.SUPPRESS)
            command.add_argument("--token", default=argparse.SUPPRESS)
            command.add_argument("--ca", default=argparse.SUPPRESS)


def emit(result: Any, as_json: bool) -> None:
    """Print a Table, a message or a list of messages."""
    if isinstance(result, Table):
        print(json.dumps(result.records, indent=2) if as_json else result.render())
    elif isinstance(result, Message):
        print(json_format.MessageToJson(result) if as_json else _describe(result))
    else:
        print(result)


def _describe(message: Message) -> str:
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    lines: list[str] = []
    _flatten(data, "", lines)
    width = max((len(k) for k, _ in (line.split("\t", 1) for line in lines)), default=0)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in (line.split("\t", 1) for line in lines))


def _flatten(value: Any, prefix: str, lines: list[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else k, lines)
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}[{i}]", lines)
    else:
        text = ", ".join(map(str, value)) if isinstance(value, list) else value
        lines.append(f"{prefix}\t{text}")


class Table:
    def __init__(self, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        self.columns = list(columns)
        self.rows = [["" if v is None else str(v) for v in row] for row in rows]

    @property
    def records(self) -> list[dict[str, str]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def render(self) -> str:
        if not self.rows:
            return "(none)"
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in
                  enumerate(self.columns)]
        lines = ["  ".join(c.upper().ljust(w) for c, w in zip(self.columns, widths, strict=True))]
        lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in self.rows]
        return "\n".join(line.rstrip() for line in lines)


def when(ts: Timestamp) -> str:
    """A timestamp for people: UTC, to the second; empty when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S")


def timestamp(text: str) -> Timestamp:
    """Parse an ISO-8601 time given on the command line (UTC when no zone is given)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SystemExit(f"not an ISO-8601 time: {text!r} (e.g. 2026-07-20T14:05:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def enum_choice(enum: Any, prefix: str) -> dict[str, int]:
    """CLI spelling of a protobuf enum: GRADE_III -> iii, UNIT_STATUS_EN_ROUTE -> en_route."""
    return {name.removeprefix(prefix).lower(): number for name, number in enum.items()
            if not name.endswith("UNSPECIFIED")}
