"""The hardened parser every CAP document from outside goes through, and the OASIS CAP 1.2
schema (shipped beside this package) it is checked against.

A document is data, never instructions to the parser: no DTD is loaded, no entity is
resolved, nothing is fetched from the network, the tree is bounded in size and depth, and a
document that carries a DOCTYPE at all (where entities are declared: an external entity
reads files, nested internal ones expand into gigabytes) is refused before it is parsed."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from lifeline.errors import InvalidArgument
from lxml import etree

NS = "urn:oasis:names:tc:emergency:cap:1.2"
#: An imported document's bound (the edge refuses bytes fields above 64 KiB too).
MAX_XML_BYTES = 64 * 1024
#: Elements nested deeper than this are refused (an alert's deepest, a geocode's value, is 4).
MAX_DEPTH = 16
DOCTYPE = re.compile(rb"<!DOCTYPE", re.IGNORECASE)


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
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True,
                           remove_pis=True)


def _has_doctype(xml: bytes) -> bool:
    # Dropping NULs makes UTF-16 and UTF-32 spellings of the ASCII keyword visible too.
    return DOCTYPE.search(xml) is not None or DOCTYPE.search(xml.replace(b"\0", b"")) is not None


def _depth(root: Any) -> int:
    deepest, stack = 0, [(root, 1)]
    while stack:
        element, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in element)
    return deepest


def read(xml: bytes) -> Any:
    """The root element of a document from outside, or INVALID_ARGUMENT naming the rule it
    breaks (size, DOCTYPE, well-formedness, depth)."""
    if not xml.strip():
        raise InvalidArgument("xml", "is required: a CAP 1.2 alert document")
    if len(xml) > MAX_XML_BYTES:
        raise InvalidArgument("xml", f"at most {MAX_XML_BYTES // 1024} KiB ({len(xml)} bytes)")
    if _has_doctype(xml):
        raise InvalidArgument("xml", "a DOCTYPE is refused (no DTDs or entities in a CAP "
                                     "alert): send the alert without it")
    try:
        root = etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as error:
        raise InvalidArgument("xml", f"not well-formed XML: {str(error)[:200]}") from None
    tree = root.getroottree()
    info = tree.docinfo
    if info.internalDTD is not None or info.system_url or info.public_id:
        raise InvalidArgument("xml", "a DOCTYPE is refused (no DTDs or entities in a CAP "
                                     "alert): send the alert without it")
    depth = _depth(root)
    if depth > MAX_DEPTH:
        raise InvalidArgument("xml", f"nested {depth} elements deep; a CAP alert needs at "
                                     f"most {MAX_DEPTH}")
    return root


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
