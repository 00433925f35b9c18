"""Live views a duty desk leaves open: a server stream (a snapshot, `caught_up`, then each
thing as it now is) drawn as a Rich table that changes in place, one line per change when
piped, or the stream's own messages as NDJSON."""

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.message import Message
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lifeline.cli import errors, render, times

T = TypeVar("T", bound=Message)
#: The stream ended in a way that asks the caller to watch again from a fresh snapshot.
RESTART = (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE)


class View(Generic[T]):
    """What a live view shows: the thing a message carries, its key, whether it has left
    the view (closed, cleared), how the table looks and sorts, and a change as one line."""

    def __init__(self, what: str, item: Callable[[Any], T], key: Callable[[T], str],
                 gone: Callable[[T], bool], draw: Callable[[list[T]], Table],
                 order: Callable[[T], Any], line: Callable[[T], str]) -> None:
        self.what, self.item, self.key, self.gone = what, item, key, gone
        self.draw, self.order, self.line = draw, order, line


def watch(view: View[T], open_stream: Callable[[], Any]) -> None:
    """Follow a watch until Ctrl-C, watching again (from a fresh snapshot) when the service
    ends it with RESOURCE_EXHAUSTED or UNAVAILABLE after it had answered."""
    answered = False

    def counted(call: Any) -> Iterator[Any]:
        nonlocal answered
        for message in call:
            answered = True
            yield message

    while True:
        call = open_stream()
        try:
            _follow(view, counted(call))
            return
        except grpc.RpcError as error:
            if error.code() not in RESTART or not answered:
                raise
            errors.note(f"the watch ended ({errors.one_line(error.details() or '')}); watching "
                        "again")
            time.sleep(1)
        except KeyboardInterrupt:
            return
        finally:
            call.cancel()


def _follow(view: View[T], messages: Iterator[Any]) -> None:
    """Draw a stream's messages until it ends."""
    if render.wants_json():
        for message in messages:
            render.print_ndjson(message)
        return
    rows: dict[str, T] = {}
    for message in messages:  # the snapshot, up to caught_up
        if message.caught_up:
            break
        _apply(view, rows, message)
    out = render.console()
    if not out.is_terminal:
        render.emit(_screen(view, rows, "snapshot"))
        for message in messages:
            _apply(view, rows, message)
            render.emit(f"{_now()}  {view.line(view.item(message))}")
        return
    with Live(_screen(view, rows, "watching"), console=out, auto_refresh=False) as live:
        for message in messages:
            _apply(view, rows, message)
            live.update(_screen(view, rows, f"{_now()} {view.line(view.item(message))}"),
                        refresh=True)


def _now() -> str:
    return datetime.now(times.zone()).strftime("%H:%M:%S")


def _apply(view: View[T], rows: dict[str, T], message: Any) -> None:
    item = view.item(message)
    if view.gone(item):
        rows.pop(view.key(item), None)
    else:
        rows[view.key(item)] = item


def _screen(view: View[T], rows: dict[str, T], last: str) -> Group:
    shown = sorted(rows.values(), key=view.order)
    return Group(view.draw(shown), Text(f"{len(shown)} {view.what}; last: {last} "
                                        "(Ctrl-C to stop)", style="dim"))
