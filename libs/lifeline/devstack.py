"""The local stack for development and tests: embedded NATS and PostgreSQL
(`lifeline.embedded`) and the four Lifeline services as subprocesses, and its state file.

Used by the `lifeline` CLI (detached mode, pids recorded in `<state_dir>/state.json`),
by `make run` and by the pytest fixtures (attached mode, `with Stack(...) as stack:`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lifeline.embedded import EmbeddedNats, EmbeddedPostgres, stop_postgres
from lifeline.grpcutil import channel_options, client_credentials
from lifeline.identity.dev import DevAuthority
from lifeline.identity.nats import OBSERVER
from lifeline.processes import (
    cmdline_has,
    free_port,
    is_running,
    log_tail,
    poll_until,
    stop_popen,
    terminate_pids,
)

STATE_FILE = "state.json"


class ServiceProcess:
    """One Lifeline service: `python -m lifeline_<name> serve` on a fixed loopback port."""

    def __init__(self, name: str, listen: str, log_path: Path, env: dict[str, str],
                 ca_pem: bytes | None = None, health: str = "") -> None:
        self.name = name
        self.listen = listen
        #: The plaintext health port (LIFELINE_HEALTH_LISTEN), where a standby answers.
        self.health = health
        self.log_path = log_path
        self.env = env
        self.ca_pem = ca_pem
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env, "LIFELINE_LISTEN": self.listen, "PYTHONUNBUFFERED": "1"}
        if self.health:
            env["LIFELINE_HEALTH_LISTEN"] = self.health
        with self.log_path.open("ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} starting {self.name} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"lifeline_{self.name}", "serve"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self, timeout: float = 10) -> None:
        stop_popen(self.proc, timeout)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def leads(self) -> bool:
        """Whether this replica leads: only the leader listens on the service port."""
        return (self.proc is not None and self.proc.poll() is None
                and check_health(self.listen, self.ca_pem) != "UNREACHABLE")

    def wait_healthy(self, timeout: float = 30, *, standby: bool = False) -> None:
        """Wait until it serves; a standby replica, until its health port says it is
        ready to take over."""
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        proc = self.proc
        address, ca_pem = (self.health, None) if standby else (self.listen, self.ca_pem)

        def serving() -> bool:
            if proc.poll() is not None:
                return True  # reported below
            return check_health(address, ca_pem) == "SERVING"

        ok = poll_until(time.monotonic() + timeout, serving, interval=0.1)
        if proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with code {proc.returncode} before becoming "
                f"healthy (log: {self.log_path})\n" + log_tail(self.log_path)
            )
        if not ok:
            raise RuntimeError(
                f"{self.name} not SERVING on {address} after {timeout:g} s "
                f"(log: {self.log_path})\n" + log_tail(self.log_path)
            )


class ConsoleProcess(ServiceProcess):
    """The web console (`python -m lifeline_console serve`): HTTPS on its own port, a client
    of the four services; ready once its watches of them are live."""

    def __init__(self, listen: str, log_path: Path, env: dict[str, str], ca_pem: bytes) -> None:
        super().__init__("console", listen, log_path,
                         {**env, "LIFELINE_CONSOLE_LISTEN": listen}, ca_pem)

    @property
    def url(self) -> str:
        return f"https://{self.listen}"

    def status(self) -> str:
        """SERVING once every watch is live, CONNECTING before, or UNREACHABLE."""
        return console_health(self.url, self.ca_pem)

    def wait_healthy(self, timeout: float = 30, *, standby: bool = False) -> None:
        if self.proc is None:
            raise RuntimeError("the console was never started")
        proc = self.proc
        ok = poll_until(time.monotonic() + timeout,
                   lambda: proc.poll() is not None or self.status() == "SERVING", interval=0.1)
        if proc.poll() is not None or not ok:
            why = (f"exited with code {proc.returncode}" if proc.poll() is not None
                   else f"not SERVING at {self.url} after {timeout:g} s")
            raise RuntimeError(f"console {why} (log: {self.log_path})\n" + log_tail(self.log_path))


def console_health(url: str, ca_pem: bytes | None, timeout: float = 1.0) -> str:
    import ssl

    context = ssl.create_default_context(cadata=ca_pem.decode() if ca_pem else None)
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout, context=context) as resp:
            body = resp.read()
    except urllib.error.HTTPError as refused:  # 503 while its watches connect
        body = refused.read()
    except (OSError, urllib.error.URLError):
        return "UNREACHABLE"
    try:
        status: str = json.loads(body)["status"]
    except (ValueError, KeyError):
        return "UNREACHABLE"
    return status


def check_health(address: str, ca_pem: bytes | None, timeout: float = 1.0) -> str:
    """One gRPC health probe (TLS trusting ca_pem, plaintext when None): SERVING,
    NOT_SERVING, ... or UNREACHABLE."""
    try:
        with grpc.secure_channel(address, client_credentials(ca_pem)) as channel:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
    except grpc.RpcError:
        return "UNREACHABLE"
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))


class Stack:
    """NATS + PostgreSQL (embedded unless URLs are given) + the four services."""

    SERVICES = ("monitor", "dispatch", "resources", "review")

    def __init__(
        self,
        state_dir: Path,
        *,
        nats_url: str | None = None,
        database_url: str | None = None,
        extra_env: dict[str, str] | None = None,
        dbname: str = "lifeline",
        secure: bool = True,
        replicas: int = 1,
        console: bool = False,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.nats_url = nats_url
        self.database_url = database_url
        self.extra_env = dict(extra_env or {})
        self.dbname = dbname
        #: Secure (the default): TLS and tokens on gRPC, a user per service on NATS.
        #: Insecure only when asked for (a baseline to measure security against).
        self.authority = DevAuthority(self.state_dir) if secure else None
        self.nats: EmbeddedNats | None = None
        self.postgres: EmbeddedPostgres | None = None
        #: Each service's replicas: the first started leads, the others stand by.
        self.replicas = replicas
        self.services: dict[str, list[ServiceProcess]] = {}
        #: The web console, when asked for (secure stacks only: it signs people in).
        self.console: ConsoleProcess | None = None
        if console and self.authority is None:
            raise ValueError("the console runs on a secure stack only (it signs people in)")
        self._with_console = console

    def start(self) -> Stack:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            if self.authority is not None:
                self.authority.ensure()
            if self.nats_url is None:
                self.nats = EmbeddedNats(self.state_dir / "nats", self.authority)
                self.nats_url = self.nats.start()
            if self.database_url is None:
                self.postgres = EmbeddedPostgres(self.state_dir / "postgres")
                self.postgres.start()
                self.postgres.create_database(self.dbname)
                self.database_url = self.postgres.dsn(self.dbname)
            env = {**self.extra_env, "NATS_URL": self.nats_url, "DATABASE_URL": self.database_url}
            for name in self.SERVICES:
                self.services[name] = [ServiceProcess(
                    name, f"127.0.0.1:{free_port()}",
                    self.state_dir / "logs" / f"{name}{f'-{n}' if n else ''}.log",
                    {**env, **self._security_env(name)}, self.ca_pem,
                    health=f"127.0.0.1:{free_port()}" if self.replicas > 1 else "")
                    for n in range(self.replicas)]
                self.services[name][0].start()
            for replicas in self.services.values():
                replicas[0].wait_healthy()
            for replicas in self.services.values():  # standbys once the leaders lead
                for standby in replicas[1:]:
                    standby.start()
                for standby in replicas[1:]:
                    standby.wait_healthy(standby=True)
            if self._with_console:
                self.start_console()
        except BaseException:
            self.stop()
            raise
        return self

    def start_console(self) -> ConsoleProcess:
        assert self.authority is not None and self.ca_pem is not None
        env = {**self.extra_env, **self.authority.console_env(),
               **{f"LIFELINE_{name.upper()}_ADDR": self.address(name) for name in self.services}}
        self.console = ConsoleProcess(f"127.0.0.1:{free_port()}",
                                      self.state_dir / "logs" / "console.log", env, self.ca_pem)
        self.console.start()
        self.console.wait_healthy()
        return self.console

    def sign_in_link(self, name: str, *roles: str, department: str = "") -> str:
        """A one-time console sign-in URL for name with these roles (fresh for 10 minutes)."""
        if self.console is None:
            raise RuntimeError("this stack runs no console")
        return f"{self.console.url}/signin#token={self.token(name, *roles, department=department)}"

    def _security_env(self, service: str) -> dict[str, str]:
        if self.authority is None:
            return {"LIFELINE_INSECURE_PLAINTEXT": "true", "LIFELINE_AUTH": "off"}
        env = self.authority.service_env(service)
        if self.nats is None:  # an external NATS has users of its own, if any
            for key in ("LIFELINE_NATS_USER", "LIFELINE_NATS_PASSWORD", "LIFELINE_NATS_CA"):
                env.pop(key)
        return env

    @property
    def ca_pem(self) -> bytes | None:
        return self.authority.ca_file.read_bytes() if self.authority else None

    def token(self, name: str, *roles: str, department: str = "") -> str:
        """A bearer token for name with these roles, signed by this stack's key."""
        if self.authority is None:
            return ""
        return self.authority.token(name, roles, department=department)

    def channel(self, service: str, token: str = "") -> grpc.Channel:
        """A client channel to one service (its leader), over TLS, sending token with every
        call; it does not retry, so a test sees each answer as it was given."""
        address = self.address(service)
        return grpc.secure_channel(address, client_credentials(self.ca_pem, token),
                                   options=channel_options(address, retry=False))

    def nats_login(self, user: str = OBSERVER) -> dict[str, str]:
        """Keyword arguments for lifeline.bus.connect as one of this stack's NATS users."""
        if self.authority is None or self.nats is None:
            return {}
        return self.authority.nats_login(user)

    def processes(self) -> list[ServiceProcess]:
        found = [svc for replicas in self.services.values() for svc in replicas]
        return [self.console, *found] if self.console else found

    def stop(self) -> None:
        for svc in self.processes():
            if svc.proc and svc.proc.poll() is None:
                svc.proc.terminate()  # all at once, then wait: shutdown in parallel
        for svc in self.processes():
            svc.stop()
        if self.nats:
            self.nats.stop()
        if self.postgres:
            self.postgres.stop()

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def service(self, name: str) -> ServiceProcess:
        """The service's process (with replicas, the one leading now)."""
        try:
            replicas = self.services[name]
        except KeyError:
            raise KeyError(f"unknown service {name!r}; expected one of {self.SERVICES}") from None
        if len(replicas) > 1:
            for svc in replicas:
                if svc.leads():
                    return svc
        return replicas[0]

    def address(self, name: str) -> str:
        """A gRPC target for the service: with replicas, all their addresses (a channel
        connects to the one that leads, and moves when another takes over)."""
        replicas = self.services[name]
        if len(replicas) == 1:
            return replicas[0].listen
        return "ipv4:" + ",".join(svc.listen for svc in replicas)

    def addresses(self) -> dict[str, str]:
        return {name: self.address(name) for name in self.services}

    def restart_service(self, name: str) -> None:
        svc = self.service(name)
        svc.stop()
        svc.start()
        svc.wait_healthy()

    def kill9(self, name: str) -> None:
        self.service(name).kill9()

    def restart_nats(self) -> None:
        if self.nats is None:
            raise RuntimeError("NATS is external (NATS_URL was given); cannot restart it")
        self.nats.restart()

    def to_state(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "secure": self.authority is not None,
            "nats": {
                "url": self.nats_url,
                "pid": self.nats.pid if self.nats else None,
                "embedded": self.nats is not None,
            },
            "postgres": {
                "url": self.database_url,
                "pid": self.postgres.pid if self.postgres else None,
                "pgdata": str(self.postgres.pgdata) if self.postgres else None,
                "embedded": self.postgres is not None,
            },
            "services": {
                n: {"address": self.address(n), "pid": r[0].pid, "log": str(r[0].log_path),
                    "replicas": [{"address": s.listen, "pid": s.pid} for s in r]}
                for n, r in self.services.items()
            },
            "console": ({"url": self.console.url, "pid": self.console.pid,
                         "log": str(self.console.log_path)} if self.console else None),
        }

    def write_state(self, path: Path | None = None) -> Path:
        path = Path(path) if path else self.state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_state(), indent=2) + "\n")
        tmp.replace(path)
        return path


def read_state(state_dir: Path) -> dict[str, Any] | None:
    path = Path(state_dir) / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise RuntimeError(
            f"{path} is corrupt ({e}); stop leftover processes by hand, then delete it"
        ) from None
    return state


def state_pids(state: dict[str, Any]) -> list[int]:
    """All recorded pids (services, NATS, PostgreSQL) that are still running."""
    pids = [r.get("pid") for s in state.get("services", {}).values()
            for r in s.get("replicas", [s])]
    pids += [state.get(k, {}).get("pid") for k in ("nats", "postgres")]
    return [p for p in pids if is_running(p)]


def stop_from_state(state_dir: Path) -> list[str]:
    """Stop what `lifeline up` left running in `state_dir`; returns human-readable lines."""
    state = read_state(state_dir)
    if state is None:
        return []
    lines: list[str] = []
    services: dict[str, Any] = state.get("services", {})
    pids = {f"{n}{f' replica {i + 1}' if i else ''}": (n, r.get("pid"))
            for n, s in services.items() for i, r in enumerate(s.get("replicas", [s]))}
    if console := state.get("console"):
        pids["console"] = ("console", console.get("pid"))
    running = {k: p for k, (n, p) in pids.items()
               if is_running(p) and cmdline_has(p, f"lifeline_{n}")}
    terminate_pids(list(running.values()), timeout=10)
    for name, (_, pid) in pids.items():
        lines.append(
            f"stopped {name} (pid {pid})" if name in running else f"{name} was not running"
        )
    nats = state.get("nats", {})
    if nats.get("embedded"):
        pid = nats.get("pid")
        if is_running(pid) and cmdline_has(pid, "nats-server"):
            terminate_pids([pid], timeout=5)
            lines.append(f"stopped nats (pid {pid})")
        else:
            lines.append("nats was not running")
    pg = state.get("postgres", {})
    if pg.get("embedded") and pg.get("pgdata"):
        stopped = stop_postgres(Path(pg["pgdata"]))
        lines.append(
            f"stopped postgres (pid {pg.get('pid')})" if stopped else "postgres was not running"
        )
    (Path(state_dir) / STATE_FILE).unlink(missing_ok=True)
    return lines
