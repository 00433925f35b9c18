"""The channels file: how monitor reaches each party (in order), the SMTP server, the SMS
and voice gateway's request templates, retries, and the acknowledgement links."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from string import Template
from typing import Any

from lifeline import settings

KINDS = ("webhook", "chat", "email", "sms", "voice")
FORMATS = ("json", "cap")
#: The shortest acknowledgement-link secret taken, in bytes.
MIN_SECRET = 32
#: What a gateway's request template may say.
PLACEHOLDERS = frozenset({"to", "text", "ack_url", "keyword", "warning_id"})


class ChannelsError(ValueError):
    """A channels file refused: which field, what is wrong."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"channels: {where}: {problem}")


@dataclass(frozen=True)
class Retry:
    """Tries per channel before falling back: exponential backoff with full jitter."""

    tries: int = 3
    #: Seconds before the second try; doubled for each later one, at most max_backoff.
    backoff: float = 0.5
    max_backoff: float = 8.0
    #: Seconds one try may take.
    timeout: float = 5.0


@dataclass(frozen=True)
class ChannelSpec:
    kind: str
    #: A URL (webhook, chat), an address (email) or a phone number (sms, voice).
    to: str
    retry: Retry
    #: webhook: the Standard Webhooks secret (whsec_...), and json or cap.
    secret: str = ""
    format: str = "json"
    #: Sent as well, whatever the others do (a copy to a chat room, a mail beside the
    #: pager); the others are tried in order until one delivers.
    also: bool = False


@dataclass(frozen=True)
class Smtp:
    host: str
    port: int = 587
    starttls: bool = True
    username: str = ""
    password: str = ""
    sender: str = "Lifeline <lifeline@localhost>"
    #: PEM file of the CA that signed the server's certificate (empty: the system's).
    ca_file: str = ""


@dataclass(frozen=True)
class Gateway:
    """An HTTP SMS and voice gateway: one request per message, built from a template."""

    sms_url: str = ""
    voice_url: str = ""
    #: Each value a template ($to, $text, $ack_url, $keyword, $warning_id).
    sms: dict[str, Template] = field(default_factory=dict)
    voice: dict[str, Template] = field(default_factory=dict)
    #: form (application/x-www-form-urlencoded) or json.
    encoding: str = "form"
    username: str = ""
    password: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    #: The Standard Webhooks secret the gateway signs inbound replies with.
    inbound_secret: str = ""


@dataclass(frozen=True)
class Acknowledgement:
    #: Signs the links; empty: a random key per start (links die with a restart).
    secret: str = ""
    #: Where people reach the endpoint (empty: its own listen address).
    base_url: str = ""
    link_minutes: float = 24 * 60


@dataclass(frozen=True)
class Channels:
    parties: dict[str, tuple[ChannelSpec, ...]] = field(default_factory=dict)
    smtp: Smtp | None = None
    gateway: Gateway | None = None
    ack: Acknowledgement = Acknowledgement()

    def of(self, party: str) -> tuple[ChannelSpec, ...]:
        return self.parties.get(party, ())

    def party_of_number(self, number: str) -> str | None:
        """The party an SMS number belongs to (a reply's sender)."""
        wanted = _digits(number)
        for party, specs in self.parties.items():
            if any(s.kind == "sms" and _digits(s.to) == wanted for s in specs):
                return party
        return None


def _digits(number: str) -> str:
    return "".join(c for c in number if c.isdigit())


def _secret(raw: dict[str, Any], name: str, where: str) -> str:
    """A secret written in the file, or named by `<name>_env` (an environment variable)."""
    variable = raw.get(f"{name}_env")
    if variable is None:
        return str(raw.get(name, ""))
    value = os.environ.get(str(variable), "")
    if not value:
        raise ChannelsError(f"{where}.{name}_env", f"{variable} is not set")
    return value


def _number(raw: dict[str, Any], name: str, default: float, low: float, high: float,
            where: str) -> float:
    value = raw.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) \
            or not low <= value <= high:
        raise ChannelsError(f"{where}.{name}", f"a number from {low:g} to {high:g}")
    return float(value)


def _retry(raw: dict[str, Any], base: Retry, where: str) -> Retry:
    return Retry(tries=int(_number(raw, "tries", base.tries, 1, 10, where)),
                 backoff=_number(raw, "backoff", base.backoff, 0, 60, where),
                 max_backoff=_number(raw, "max_backoff", base.max_backoff, 0, 600, where),
                 timeout=_number(raw, "timeout", base.timeout, 0.05, 120, where))


def _templates(raw: Any, where: str) -> dict[str, Template]:
    if not isinstance(raw, dict) or not raw:
        raise ChannelsError(where, "a table of request fields, e.g. "
                                   '{ To = "$to", Body = "$text" }')
    found = {}
    for key, value in raw.items():
        template = Template(str(value))
        unknown = set(template.get_identifiers()) - PLACEHOLDERS
        if unknown or not template.is_valid():
            raise ChannelsError(f"{where}.{key}", f"unknown placeholder "
                                                  f"{', '.join(sorted(unknown)) or '$'}; "
                                                  f"known: {', '.join(sorted(PLACEHOLDERS))}")
        found[str(key)] = template
    return found


def parse_channels(data: dict[str, Any]) -> Channels:
    retry = _retry(data.get("retry", {}), Retry(), "retry")
    smtp = None
    if "smtp" in data:
        raw = data["smtp"]
        if not raw.get("host"):
            raise ChannelsError("smtp.host", "is required")
        smtp = Smtp(host=str(raw["host"]), port=int(_number(raw, "port", 587, 1, 65535, "smtp")),
                    starttls=bool(raw.get("starttls", True)),
                    username=str(raw.get("username", "")),
                    password=_secret(raw, "password", "smtp"),
                    sender=str(raw.get("sender", Smtp.sender)),
                    ca_file=str(raw.get("ca_file", "")))
    gateway = None
    if "gateway" in data:
        raw = data["gateway"]
        encoding = raw.get("encoding", "form")
        if encoding not in ("form", "json"):
            raise ChannelsError("gateway.encoding", "form or json")
        gateway = Gateway(
            sms_url=str(raw.get("sms_url", "")), voice_url=str(raw.get("voice_url", "")),
            sms=_templates(raw["sms"], "gateway.sms") if "sms" in raw else {},
            voice=_templates(raw["voice"], "gateway.voice") if "voice" in raw else {},
            encoding=encoding, username=str(raw.get("username", "")),
            password=_secret(raw, "password", "gateway"),
            headers={str(k): str(v) for k, v in raw.get("headers", {}).items()},
            inbound_secret=_secret(raw, "inbound_secret", "gateway"))
    ack_raw = data.get("ack", {})
    secret = _secret(ack_raw, "secret", "ack")
    if secret and len(secret.encode()) < MIN_SECRET:
        raise ChannelsError("ack.secret", f"at least {MIN_SECRET} bytes (HMAC-SHA256's key "
                                          "length), e.g. from `openssl rand -base64 32`")
    ack = Acknowledgement(secret=secret,
                          base_url=str(ack_raw.get("base_url", "")).rstrip("/"),
                          link_minutes=_number(ack_raw, "link_minutes", 24 * 60, 1,
                                               7 * 24 * 60, "ack"))
    parties: dict[str, tuple[ChannelSpec, ...]] = {}
    for index, raw in enumerate(data.get("parties", [])):
        where = f"parties[{index}]"
        if not raw.get("id"):
            raise ChannelsError(f"{where}.id", "is required")
        specs = []
        for number, channel in enumerate(raw.get("channels", [])):
            here = f"{where}.channels[{number}]"
            kind = channel.get("kind")
            if kind not in KINDS:
                raise ChannelsError(f"{here}.kind", f"one of {', '.join(KINDS)}")
            to = str(channel.get("url") or channel.get("to") or "")
            if not to:
                raise ChannelsError(here, "url (webhook, chat) or to (email, sms, voice) "
                                          "is required")
            if kind in ("webhook", "chat") and not to.startswith(("https://", "http://")):
                raise ChannelsError(f"{here}.url", "an http(s) URL")
            if kind == "email" and smtp is None:
                raise ChannelsError(here, "an email channel needs [smtp]")
            if kind in ("sms", "voice") and (gateway is None or not getattr(gateway, kind)):
                raise ChannelsError(here, f"a {kind} channel needs [gateway] with {kind} "
                                          f"and {kind}_url")
            fmt = channel.get("format", "json")
            if fmt not in FORMATS:
                raise ChannelsError(f"{here}.format", f"one of {', '.join(FORMATS)}")
            specs.append(ChannelSpec(kind, to, _retry(channel, retry, here),
                                     _secret(channel, "secret", here), fmt,
                                     bool(channel.get("also", False))))
        parties[str(raw["id"])] = tuple(specs)
    return Channels(parties, smtp, gateway, ack)


def load_channels(path: str | Path | None) -> Channels:
    """The channels file at path (LIFELINE_CHANNELS); none: parties have their inbox only."""
    if not path:
        return Channels()
    try:
        return parse_channels(tomllib.loads(Path(path).read_text()))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise ChannelsError(str(path), str(error)) from None


#: The endpoint's listen address when LIFELINE_ACK_LISTEN is not set: a free loopback port.
DEFAULT_LISTEN = "127.0.0.1:0"


def from_env(service: str = "monitor") -> tuple[Channels, str]:
    """The channels file named by LIFELINE_CHANNELS and the endpoint's listen address
    (LIFELINE_ACK_LISTEN); a bad file stops the service with one line naming the field."""
    env = settings.load()
    try:
        channels = load_channels(env.channels)
    except ChannelsError as error:
        raise SystemExit(f"lifeline-{service}: LIFELINE_CHANNELS: {error}") from None
    listen = env.ack_listen.strip() or DEFAULT_LISTEN
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise SystemExit(f"lifeline-{service}: LIFELINE_ACK_LISTEN must be host:port "
                         f"(got {listen[:40]!r})")
    return channels, listen
