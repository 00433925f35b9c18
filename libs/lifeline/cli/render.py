"""How answers print: Rich tables for people (plain columns into a pipe), protobuf's
canonical JSON, NDJSON, paged lists and progress bars."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from rich import box
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from lifeline.cli.choices import enum_label
from lifeline.cli.errors import note
from lifeline.cli.session import options
from lifeline.cli.times import when
from lifeline.common.v1 import common_pb2

M = TypeVar("M", bound=Message)


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
    return options().json or options().ndjson


def show(message: Message, people: Callable[[], RenderableType | str | None]) -> None:
    """One answer: the message as JSON with --json (one line with --ndjson), else what
    `people` makes of it."""
    given = options()
    if given.ndjson:
        print_ndjson(message)
    elif given.json:
        print_json(as_dict(message))
    else:
        emit(people())


def show_list(items: Iterable[M], people: Callable[[list[M]], RenderableType | str],
              order: Callable[[M], Any] | None = None) -> None:
    """A list: one object a line as the pages come with --ndjson (the service's order),
    a JSON array with --json, else a table; `order` sorts both the way an operator reads
    them."""
    given = options()
    if given.ndjson:
        for item in items:
            print_ndjson(item)
        return
    listed = sorted(items, key=order) if order else list(items)
    if given.json:
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


#: Styles for warning levels and their kin, worst last.
LEVEL_STYLES: Mapping[str, str] = {"NONE": "dim", "BLUE": "bold blue",
                                   "YELLOW": "bold yellow", "ORANGE": "bold dark_orange",
                                   "RED": "bold red"}


def level_cell(level: int) -> Text:
    name = enum_label(common_pb2.WarningLevel, level, "WARNING_LEVEL_")
    return cell(name, LEVEL_STYLES.get(name))
