"""What the four operator CLIs share: finding the service, printing, failing clearly."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from lifeline.edge import ACTOR_METADATA

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


class ActorMetadata(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                    grpc.StreamUnaryClientInterceptor):
    """Sends who is acting with every call (the services record it as the actor)."""

    def __init__(self, actor: str) -> None:
        self.actor = actor

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), (ACTOR_METADATA, self.actor)]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def parser(service: str, description: str) -> tuple[argparse.ArgumentParser, Any]:
    p = argparse.ArgumentParser(prog=f"lifeline-{service}", description=description)
    p.add_argument("--addr", help=f"{service} gRPC address (default: LIFELINE_"
                                  f"{service.upper()}_ADDR or the running `lifeline up`)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--as", dest="actor", default=os.environ.get("LIFELINE_ACTOR") or _user(),
                   help="who is acting (recorded on every event)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help=f"run the {service} service (configured by environment)")
    return p, sub


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "operator"


def run(service: str, p: argparse.ArgumentParser, commands: dict[str, Command],
        serve: Callable[[], None], argv: Sequence[str] | None = None) -> None:
    _accept_options_after_command(p)
    args = p.parse_args(argv)
    if args.command == "serve":
        serve()
        return
    address = service_address(service, args.addr)
    with grpc.insecure_channel(address) as raw:
        channel = grpc.intercept_channel(raw, ActorMetadata(args.actor))
        try:
            result = commands[args.command](args, channel)
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
            command.add_argument("--as", dest="actor", default=argparse.SUPPRESS)


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
