"""What the five operator CLIs share: finding the service, who you are, how answers print
(Rich tables, protobuf's canonical JSON, NDJSON), field times in the city's zone, and how a
failure reads (one line on stderr)."""

import difflib
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich import box
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

# Typer vendors Click; its exceptions are what a usage error raises.
from typer._click.exceptions import ClickException

from lifeline.common.v1 import common_pb2, parking_pb2, parking_pb2_grpc

if TYPE_CHECKING:
    from lifeline.settings import Environment

M = TypeVar("M", bound=Message)

#: Exit codes, as docs/cli.md documents them.
EXIT_FAILED = 1  # the service refused or could not be reached; a file was wrong
EXIT_USAGE = 2  # the command line was wrong (Click's convention)
EXIT_PIPE_CLOSED = 1  # the reader went away (`| head`): quietly, as Typer does


class Failure(Exception):
    """A failure the operator can act on: printed as one line, exit 1."""


def fail(message: str) -> NoReturn:
    raise Failure(message)


# ---- options every service CLI takes, before or after the command ----


@dataclass
class Options:
    addr: str | None = None
    token: str | None = None
    ca: str | None = None
    json: bool = False
    ndjson: bool = False
    tz: str | None = None


OPTIONS = Options()
_FLAGS = {"--json", "--ndjson"}
_VALUED = {"--addr", "--token", "--ca", "--tz"}


def hoist_options(args: Sequence[str]) -> list[str]:
    """`lifeline-dispatch incidents --json` works as well as `--json incidents`: the
    options every command shares move in front of the command."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in _FLAGS or (arg.split("=", 1)[0] in _VALUED and "=" in arg):
            front.append(arg)
        elif arg in _VALUED:
            front.extend(args[i:i + 2])
            i += 1
        else:
            rest.append(arg)
        i += 1
    return front + rest


def service_app(service: str, description: str) -> typer.Typer:
    """A service's CLI with its shared options and commands: serve, parked, retry-parked,
    discard-parked."""
    app = typer.Typer(name=f"lifeline-{service}", help=description, no_args_is_help=True,
                      rich_markup_mode="rich", pretty_exceptions_enable=False,
                      context_settings={"help_option_names": ["-h", "--help"]},
                      epilog="The options above also go after the command "
                             "(`incidents --json`). Exit status: 0 done, 1 refused or "
                             "failed (one line on stderr), 2 a usage error.")
    upper = service.upper()

    @app.callback()
    def options(
        addr: Annotated[str | None, typer.Option(
            metavar="HOST:PORT", help=f"{service}'s gRPC address (default: "
            f"LIFELINE_{upper}_ADDR, else what `lifeline up` recorded)")] = None,
        as_json: Annotated[bool, typer.Option(
            "--json", help="print the API's answer in protobuf's canonical JSON (a list as "
            "a JSON array; times in UTC)")] = False,
        ndjson: Annotated[bool, typer.Option(
            "--ndjson", help="lists and live views: one JSON object a line, as they come")
        ] = False,
        token: Annotated[str | None, typer.Option(
            metavar="TOKEN", help="bearer token (default: LIFELINE_TOKEN, else the token "
            "`lifeline up` wrote); you are recorded as its subject")] = None,
        ca: Annotated[str | None, typer.Option(
            metavar="FILE", help="CA certificate to trust (default: LIFELINE_TLS_CA, else "
            "the CA `lifeline up` made)")] = None,
        tz: Annotated[str | None, typer.Option(
            metavar="ZONE", help="time zone field times are shown in, and times given "
            "without a zone are read in, e.g. Asia/Shanghai (default: LIFELINE_TIMEZONE, "
            "else UTC)")] = None,
    ) -> None:
        given = {"addr": addr, "json": as_json, "ndjson": ndjson, "token": token, "ca": ca,
                 "tz": tz}
        for name, value in given.items():
            if value:
                setattr(OPTIONS, name, value)

    @app.command(help=f"Run the {service} service (configured by its environment; see "
                      "docs/configuration.md).")
    def serve() -> None:
        from importlib import import_module

        from lifeline.runtime import serve_forever

        bootstrap = import_module(f"lifeline_{service}.bootstrap")
        serve_forever(service, bootstrap.build)

    _parking_commands(app)
    return app


def run(app: typer.Typer, service: str, argv: Sequence[str] | None = None) -> None:
    """Run a CLI (a service's, or `lifeline` itself when service is ""): one line on stderr
    and exit 1 when the service refuses or something fails, exit 2 with one line for a
    usage error, quiet when the reader of stdout goes away."""
    global OPTIONS
    OPTIONS = Options()
    prog = f"lifeline-{service}" if service else "lifeline"
    args = list(sys.argv[1:] if argv is None else argv)
    code = 0
    try:
        command = typer.main.get_command(app)
        code = command.main(hoist_options(args) if service else args, prog_name=prog,
                            standalone_mode=False) or 0
    except ClickException as error:
        where = error.ctx.command_path if getattr(error, "ctx", None) else prog  # type: ignore[attr-defined]
        say_error(f"{where}: {one_line(error.format_message())} (--help for usage)")
        code = error.exit_code
    except Failure as error:
        say_error(f"{prog}: {one_line(str(error))}")
        code = EXIT_FAILED
    except grpc.RpcError as error:
        say_error(f"{prog}: {rpc_error(error, service)}")
        code = EXIT_FAILED
    except BrokenPipeError:
        code = pipe_closed()
    except (OSError, RuntimeError) as error:  # a file that cannot be written, a stack that
        say_error(f"{prog}: {one_line(str(error)) or type(error).__name__}")  # will not start
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = 130
    finally:
        _close_channel()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = pipe_closed()
    if code:
        raise SystemExit(code)


def pipe_closed() -> int:
    """The reader of our output went away: stop without a traceback (Python's advice: point
    stdout at devnull so the interpreter's last flush does not fail too)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return EXIT_PIPE_CLOSED


def one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def say_error(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def note(line: str) -> None:
    """Something about the output (it stopped at --limit ...) for the person, not the
    script: stderr."""
    print(line, file=sys.stderr, flush=True)


def rpc_error(error: grpc.RpcError, service: str) -> str:
    code = error.code()
    detail = error.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        detail = f"cannot reach lifeline-{service} at {_CONNECTION.get('address')} ({detail})"
    return f"{code.name.lower()}: {one_line(detail)}"


# ---- the connection: address, TLS, identity, idempotency, retries ----


def environment() -> "Environment":
    """The settings of this process (lifeline.settings), every variable checked."""
    from lifeline import settings  # not at import: `--help` and completion stay quick

    return settings.load()


def default_state_dir() -> Path:
    return environment().state_dir


def service_address(service: str, given: str | None) -> str:
    """--addr, else LIFELINE_<SERVICE>_ADDR, else what `lifeline up` recorded."""
    if given:
        return given
    env = environment().address_of(service)
    if env:
        return env
    state_file = default_state_dir() / "state.json"
    try:
        state = json.loads(state_file.read_text())
        return str(state["services"][service]["address"])
    except (OSError, KeyError, ValueError):
        fail(f"no address; pass --addr HOST:PORT, set LIFELINE_{service.upper()}_ADDR, or "
             "run `lifeline up`")


class IdempotencyKey(grpc.UnaryUnaryClientInterceptor):
    """Sends a fresh idempotency key with every call; gRPC's own retries resend it, so a
    command retried after a dropped connection happens once."""

    def __init__(self) -> None:
        from lifeline import idempotency  # not at import: `--help` and completion stay quick

        self.header = idempotency.HEADER

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        metadata = [*(details.metadata or ()), (self.header, str(uuid.uuid4()))]
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
    from lifeline.grpcutil import client_credentials

    env = environment()
    state = env.state_dir
    token = token or env.token or _read(state / "auth" / "token")
    ca_file = ca_file or env.tls_ca
    try:
        ca = Path(ca_file).read_bytes() if ca_file else _read_bytes(state / "tls" / "ca.pem")
    except OSError as error:
        fail(f"cannot read the CA certificate {ca_file}: {error.strerror}")
    if ca is None and not env.insecure_plaintext:
        fail("no CA certificate to trust: pass --ca FILE, set LIFELINE_TLS_CA, run "
             "`lifeline up`, or set LIFELINE_INSECURE_PLAINTEXT=true")
    return client_credentials(ca, token or None)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _read(path: Path) -> str | None:
    data = _read_bytes(path)
    return data.decode().strip() if data else None


_CONNECTION: dict[str, Any] = {}


def connect(service: str) -> grpc.Channel:
    """The channel to a service, opened on first use and closed when the command ends."""
    if "channel" not in _CONNECTION:
        address = service_address(service, OPTIONS.addr)
        raw = grpc.secure_channel(address, credentials(OPTIONS.token, OPTIONS.ca),
                                  options=[("grpc.service_config", RETRY_CONFIG)])
        _CONNECTION.update(address=address, raw=raw,
                           channel=grpc.intercept_channel(raw, IdempotencyKey()))
    channel: grpc.Channel = _CONNECTION["channel"]
    return channel


def _close_channel() -> None:
    raw = _CONNECTION.pop("raw", None)
    _CONNECTION.clear()
    if raw is not None:
        raw.close()


# ---- output ----


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Into a pipe or a file: no wrapping, so a row stays one line for grep and awk.
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 100_000
    return Console(file=stream, width=width, highlight=False, soft_wrap=False)


def console() -> Console:
    return _console()


#: Columns of running text: on a narrow terminal they keep room for a few words a line (the
#: others wrap at their spaces, a time as date over hour).
PROSE = {"instruction", "what", "error", "reason", "value", "from / why not", "move-up",
         "where", "sensors", "subject", "address", "description"}


def table(*columns: str, caption: str | None = None) -> Table:
    """A table that fits the terminal (running text wraps, nothing is cut), plain columns
    when piped."""
    out = console()
    grid = Table(box=box.SIMPLE_HEAD if out.is_terminal else None, pad_edge=False,
                 show_edge=False, header_style="bold", caption=caption,
                 caption_justify="left", collapse_padding=True)
    for name in columns:
        grid.add_column(name.upper(), overflow="fold",
                        min_width=20 if name in PROSE and out.is_terminal else None)
    return grid


def cell(value: Any, style: str | None = None) -> Text:
    """A cell as plain text: a bracket in an instruction is text, never Rich markup."""
    return Text("" if value is None else str(value), style=style or "")


def add_row(grid: Table, *values: Any, style: str | None = None) -> None:
    grid.add_row(*(v if isinstance(v, Text) else cell(v) for v in values), style=style)


def emit(renderable: RenderableType | str | None) -> None:
    """Print a table or a line for people."""
    if renderable is None:
        return
    out = console()
    if isinstance(renderable, str):
        sys.stdout.write(renderable + "\n")
    elif out.is_terminal:
        out.print(renderable)
    else:  # piped: the table's columns without the padding after the last one
        with out.capture() as captured:
            out.print(renderable)
        sys.stdout.write("".join(line.rstrip() + "\n"
                                 for line in captured.get().splitlines()))
    sys.stdout.flush()  # a line said is seen, also through a pipe (the demo narrates)


def as_dict(message: Message) -> dict[str, Any]:
    """Protobuf's canonical JSON: camelCase keys, zero values included, enums by name,
    times in UTC (RFC 3339); 64-bit integers are numbers, as the other integers (the
    mapping writes them as strings but reads either; a count is a number to jq), unless
    beyond 2^53, where a JSON number stops being exact."""
    data = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    _numbers(message.DESCRIPTOR, data)
    return data


_INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
          FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}


def _number(text: Any) -> Any:
    value = int(text)
    return value if abs(value) <= 2**53 else text


def _numbers(descriptor: Any, data: dict[str, Any]) -> None:
    for field in descriptor.fields:
        if field.json_name not in data:
            continue
        value = data[field.json_name]
        kind = field.message_type
        if kind is not None and kind.GetOptions().map_entry:
            entry = kind.fields_by_name["value"]
            if entry.message_type is not None:
                for item in value.values():
                    _numbers(entry.message_type, item)
            elif entry.type in _INT64:
                data[field.json_name] = {k: _number(v) for k, v in value.items()}
        elif kind is not None and not kind.full_name.startswith("google.protobuf."):
            for item in value if field.is_repeated else [value]:
                _numbers(kind, item)
        elif kind is None and field.type in _INT64:
            data[field.json_name] = ([_number(v) for v in value] if field.is_repeated
                                     else _number(value))


def describe(message: Message) -> Table:
    """Any message for people: one row per field (nested fields dotted), times in the
    city's zone."""
    grid = table("field", "value")
    for key, value in _flatten(message, ""):
        add_row(grid, key, value)
    return grid


def _flatten(message: Message, prefix: str) -> Iterator[tuple[str, str]]:
    for field, value in message.ListFields():
        name = f"{prefix}{field.name}"
        kind = field.message_type
        if kind is not None and kind.GetOptions().map_entry:
            entry = kind.fields_by_name["value"]
            for key in sorted(value):
                if entry.message_type is not None:
                    yield from _flatten(value[key], f"{name}[{key}].")
                else:
                    yield f"{name}[{key}]", _scalar(entry, value[key])
        elif kind is not None and kind.full_name == "google.protobuf.Timestamp":
            yield name, when(value)
        elif kind is not None and field.is_repeated:
            for n, item in enumerate(value):
                yield from _flatten(item, f"{name}[{n}].")
        elif kind is not None:
            yield from _flatten(value, f"{name}.")
        elif field.is_repeated:
            yield name, ", ".join(_scalar(field, v) for v in value)
        else:
            yield name, _scalar(field, value)


def _scalar(field: Any, value: Any) -> str:
    if field.enum_type is not None:
        return str(field.enum_type.values_by_number[value].name)
    if isinstance(value, bytes):
        return f"{len(value)} bytes"
    return str(value)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def print_ndjson(message: Message) -> None:
    sys.stdout.write(json.dumps(as_dict(message), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def wants_json() -> bool:
    return OPTIONS.json or OPTIONS.ndjson


def show(message: Message, people: Callable[[], RenderableType | str | None]) -> None:
    """One answer: the message as JSON with --json (one line with --ndjson), else what
    `people` makes of it."""
    if OPTIONS.ndjson:
        print_ndjson(message)
    elif OPTIONS.json:
        print_json(as_dict(message))
    else:
        emit(people())


def show_list(items: Iterable[M], people: Callable[[list[M]], RenderableType | str],
              order: Callable[[M], Any] | None = None) -> None:
    """A list: one object a line as the pages come with --ndjson (the service's order),
    a JSON array with --json, else a table; `order` sorts both the way an operator reads
    them."""
    if OPTIONS.ndjson:
        for item in items:
            print_ndjson(item)
        return
    listed = sorted(items, key=order) if order else list(items)
    if OPTIONS.json:
        print_json([as_dict(i) for i in listed])
    else:
        emit(people(listed) if listed else "(none)")


def pages(fetch: Callable[[str], tuple[Sequence[M], str]], what: str, limit: int = 0
          ) -> Iterator[M]:
    """Every item of a paged list (fetch(page_token) -> (items, next_page_token)), or the
    first `limit`, saying on stderr when more were left."""
    token, count = "", 0
    while True:
        items, token = fetch(token)
        for item in items:
            if limit and count == limit:
                note(f"stopped at --limit {limit} {what}; more exist (--limit 0 for all)")
                return
            count += 1
            yield item
        if not token:
            return


def page(token: str, size: int = 0) -> common_pb2.PageRequest:
    return common_pb2.PageRequest(page_token=token, page_size=size)


LIMIT_HELP = "show at most this many (0: all; the list pages through the service)"


@contextmanager
def progress(description: str, total: float | None) -> Iterator[Callable[[float], None]]:
    """A progress bar on stderr for long work (only when stderr is a terminal); yields
    advance(amount)."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=_console(stderr=True), transient=True,
                   disable=not sys.stderr.isatty())
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda amount: bar.advance(task, amount)


# ---- time: the city's zone for people, UTC in JSON ----


def zone() -> tzinfo:
    name = OPTIONS.tz or environment().timezone
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        fail(f"--tz / LIFELINE_TIMEZONE: {name!r} is not a time zone (e.g. Asia/Shanghai)")


def zone_name() -> str:
    return str(zone())


def when(ts: Timestamp) -> str:
    """A field time for people: in the city's zone, to the second; empty when unset."""
    if not ts.seconds and not ts.nanos:
        return ""
    return ts.ToDatetime(tzinfo=UTC).astimezone(zone()).strftime("%Y-%m-%d %H:%M:%S")


def times_caption() -> str:
    return f"times in {zone_name()}"


def timestamp(text: str) -> Timestamp:
    """An ISO-8601 time given on the command line (in the city's zone when none is given)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO-8601 time: {text!r} (e.g. "
                                 "2026-07-20T14:05:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone())
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


# ---- choices: enums and the names the system knows ----


def enum_choice(enum: Any, prefix: str) -> dict[str, int]:
    """CLI spelling of a protobuf enum: GRADE_III -> iii, UNIT_STATUS_EN_ROUTE -> en_route."""
    return {name.removeprefix(prefix).lower(): number for name, number in enum.items()
            if not name.endswith("UNSPECIFIED")}


def choice(names: Iterable[str]) -> Callable[[str], str]:
    """A parser accepting one of names, refusing others with the closest ones."""
    known = sorted(names)

    def parse(value: str) -> str:
        if value in known:
            return value
        close = difflib.get_close_matches(value, known, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(known)}"
                                 if not close else f"{value!r}: {hint}(one of "
                                 f"{', '.join(known)})")
    return parse


def completer(names: Iterable[str] | Callable[[], Iterable[str]]
              ) -> Callable[[str], list[str]]:
    """Shell completion from a list of names (or a function giving them)."""
    def complete(incomplete: str) -> list[str]:
        try:
            found = names() if callable(names) else names
        except Exception:  # completion never fails the shell: no names, no suggestions
            return []
        return sorted(n for n in found if n.startswith(incomplete))
    return complete


def known_names(stub: Callable[[], Any], kind: int) -> Callable[[str], list[str]]:
    """Shell completion from the names a service knows (ListKnownNames: hazards, unit kinds,
    departments); nothing when it cannot be asked."""
    def names() -> list[str]:
        from lifeline.common.v1 import names_pb2

        request = names_pb2.ListKnownNamesRequest(kind=cast(Any, kind))
        answer = stub().ListKnownNames(request, timeout=3)
        return [name for known in answer.known for name in known.names]
    return completer(names)


NEW_NAMES_HELP = ("take names nobody knows yet (a hazard, unit kind or department new to "
                  "the city); without it a misspelt name is refused with the closest known")


def enum_option(enum: Any, prefix: str, help: str, *decls: str, **more: Any) -> Any:
    """A typer.Option taking an enum's CLI spelling, with completion and the choices in
    its help."""
    names = enum_choice(enum, prefix)
    return typer.Option(*decls, parser=choice(names), autocompletion=completer(names),
                        metavar="|".join(names), help=help, **more)


def enum_argument(enum: Any, prefix: str, help: str, exclude: Iterable[str] = ()) -> Any:
    names = [n for n in enum_choice(enum, prefix) if n not in set(exclude)]
    return typer.Argument(parser=choice(names), autocompletion=completer(names),
                          metavar="|".join(names), help=help)


def enum_value(enum: Any, prefix: str, name: str | None) -> int:
    return enum_choice(enum, prefix)[name] if name else 0


def enum_label(enum: Any, value: int, prefix: str) -> str:
    return str(enum.Name(value)).removeprefix(prefix) if value else ""


#: Styles for warning levels and their kin, worst last.
LEVEL_STYLES: Mapping[str, str] = {"NONE": "dim", "BLUE": "bold blue",
                                   "YELLOW": "bold yellow", "ORANGE": "bold dark_orange",
                                   "RED": "bold red"}


def level_cell(level: int) -> Text:
    name = enum_label(common_pb2.WarningLevel, level, "WARNING_LEVEL_")
    return cell(name, LEVEL_STYLES.get(name))


# ---- parked messages: the same three commands on every service's CLI ----


def _parking_commands(app: typer.Typer) -> None:
    service = (app.info.name or "").removeprefix("lifeline-")

    def stub() -> parking_pb2_grpc.ParkingServiceStub:
        return parking_pb2_grpc.ParkingServiceStub(connect(service))

    @app.command(help="List the messages this service's consumers parked (oldest first).")
    def parked(limit: Annotated[int, typer.Option(help=LIMIT_HELP)] = 0) -> None:
        def fetch(token: str) -> tuple[Sequence[parking_pb2.Parking], str]:
            answer = stub().ListParked(parking_pb2.ListParkedRequest(page=page(token)))
            return answer.parkings, answer.next_page_token

        def people(found: list[parking_pb2.Parking]) -> Table:
            grid = table("id", "consumer", "aggregate", "version", "subject", "attempts",
                         "parked", "error", caption=times_caption())
            for p in found:
                for m in p.waiting:
                    add_row(grid, p.id, p.consumer, p.upstream_aggregate_id, m.version,
                            m.subject, m.attempts, when(m.parked_at), m.error)
            return grid
        show_list(pages(fetch, "parkings", limit), people)

    @app.command("retry-parked", help="Apply a parking's waiting messages again, in order.")
    def retry_parked(id: Annotated[str, typer.Argument(help="the parking id `parked` shows")]
                     ) -> None:
        answer = stub().RetryParked(parking_pb2.RetryParkedRequest(id=id))
        left = len(answer.parking.waiting)
        show(answer, lambda: f"applied {answer.applied}; {left} still parked"
             + (f" ({answer.parking.waiting[0].error})" if left else ""))

    @app.command("discard-parked", help="Give up on the first waiting message of a parking "
                                        "(the rest stay parked).")
    def discard_parked(
        id: Annotated[str, typer.Argument(help="the parking id `parked` shows")],
        reason: Annotated[str, typer.Option(help="why (kept with the record)")] = "",
    ) -> None:
        answer = stub().DiscardParked(parking_pb2.DiscardParkedRequest(id=id, reason=reason))
        show(answer, lambda: f"discarded version {answer.discarded_version}; "
             f"{len(answer.parking.waiting)} still parked")
