"""The OASIS CAP 1.2 schema (shipped beside this package) and the hardened parser every
document from outside goes through."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from lifeline.errors import InvalidArgument
from lxml import etree

NS = "urn:oasis:names:tc:emergency:cap:1.2"


@cache
def _schema_source() -> bytes:
    return resources.files("lifeline_monitor").joinpath("CAP-v1.2.xsd").read_bytes()


_validators = threading.local()


def schema() -> etree.XMLSchema:
    """The OASIS CAP 1.2 schema (shipped with monitor), one validator per thread: lxml
    keeps a validator's error log on the instance and clears it at each validation, so a
    validator shared with a worker thread that checks an outgoing alert could lose the
    error of an incoming one between `validate` and reading it."""
    validator: etree.XMLSchema | None = getattr(_validators, "schema", None)
    if validator is None:
        source = etree.fromstring(_schema_source(), _parser())
        validator = _validators.schema = etree.XMLSchema(source)
    return validator


def _parser() -> etree.XMLParser:
    # No DTDs, no entities, no network: an alert is data, never instructions to the parser.
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, remove_comments=True)


def cap_time(when: datetime) -> str:
    """CAP's dateTime: seconds and an explicit offset, never 'Z'."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def check(root: Any) -> None:
    """Refuse a document the OASIS schema refuses, naming the element."""
    validator = schema()
    if validator.validate(root):
        return
    error = validator.error_log.last_error  # type: ignore[attr-defined]
    message = str(error.message).replace(f"{{{NS}}}", "")
    path = "/".join(step.split(":")[-1] for step in (error.path or "").split("/") if step)
    raise InvalidArgument("xml", f"not a valid CAP 1.2 alert: {path or 'alert'} (line "
                                 f"{error.line}): {message[:300]}")
