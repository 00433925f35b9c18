"""`lifeline` command: run the local stack in the background and inspect it.

To add a subcommand, write `_cmd_<name>(args) -> int` (and optionally a function adding
its arguments) and register both in COMMANDS.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lifeline import devstack
from lifeline.identity.dev import DevAuthority
from lifeline.identity.nats import LISTENS_TO, OBSERVER, server_config
from lifeline.identity.tls import write_private
from lifeline.identity.tokens import parse_ttl

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _components(state: dict[str, Any], health: bool) -> list[dict[str, Any]]:
    """One row per component of a recorded state; health probes services via gRPC."""
    rows: list[dict[str, Any]] = []
    ca_file = DevAuthority(Path(state["state_dir"])).ca_file
    ca = ca_file.read_bytes() if state.get("secure") and ca_file.exists() else None
    for name in ("nats", "postgres"):
        info = state.get(name, {})
        embedded = info.get("embedded", False)
        running = devstack.is_running(info.get("pid")) if embedded else None
        url = info.get("url") and re.sub(r"(://[^:/@]*:)[^@/]+@", r"\1***@", info["url"])
        row = {
            "component": name,
            "address": url,
            "pid": info.get("pid"),
            "state": "external" if not embedded else "running" if running else "stopped",
        }
        if health:
            row["health"] = None  # gRPC health applies to services only
        rows.append(row)
    for name, info in state.get("services", {}).items():
        running = devstack.is_running(info.get("pid"))
        row = {
            "component": name,
            "address": info.get("address"),
            "pid": info.get("pid"),
            "state": "running" if running else "stopped",
        }
        if health:
            row["health"] = devstack.check_health(info["address"], ca) if running else "-"
        rows.append(row)
    return rows


def _print_rows(rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    print(
        _table(
            [[c.upper() for c in cols]]
            + [["-" if r.get(c) is None else str(r.get(c)) for c in cols] for r in rows]
        )
    )


def _cmd_up(args: argparse.Namespace) -> int:
    state_dir: Path = args.state_dir
    state = devstack.read_state(state_dir)
    if state and devstack.state_pids(state):
        print(f"lifeline: already up in {state_dir}; run `lifeline down` first", file=sys.stderr)
        return 1
    stack = devstack.Stack(
        state_dir,
        nats_url=os.environ.get("NATS_URL") or None,
        database_url=os.environ.get("DATABASE_URL") or None,
    )
    try:
        stack.start()  # stops whatever it started if it fails
        stack.write_state()
    except Exception as e:
        stack.stop()
        print(
            f"lifeline up: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
            file=sys.stderr,
        )
        return 1
    _print_rows(_components(stack.to_state(), health=False))
    auth = DevAuthority(stack.state_dir)
    print(f"TLS and tokens on: CA {auth.ca_file}; your token (7 days, all roles but "
          f"department) {auth.token_file}, used by the CLIs;\nmore with `lifeline token "
          f"--role ROLE --name NAME`. logs: {stack.state_dir / 'logs'}; stop with "
          "`lifeline down`")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    """Print a bearer token signed by the running stack's key."""
    auth = DevAuthority(args.state_dir)
    if not auth.signing_key.exists():
        print(f"lifeline token: no signing key in {auth.auth_dir}; run `lifeline up` first",
              file=sys.stderr)
        return 1
    try:
        print(auth.token(args.name, args.role, department=args.department,
                         ttl=parse_ttl(args.ttl)))
    except ValueError as e:
        print(f"lifeline token: {e}", file=sys.stderr)
        return 1
    return 0


def _cmd_nats_auth(args: argparse.Namespace) -> int:
    """Print the nats-server authorization block for the services' users (deploy/k8s)."""
    path: Path = args.passwords
    if not path.exists():
        users = {name: secrets.token_urlsafe(24) for name in [*LISTENS_TO, OBSERVER]}
        write_private(path, json.dumps(users, indent=2).encode())
        print(f"lifeline nats-auth: wrote new passwords to {path}", file=sys.stderr)
    print(server_config(passwords=json.loads(path.read_text())))
    return 0


def _cmd_migrate_events(args: argparse.Namespace) -> int:
    """Rewrite events stored as JSON (before events were stored binary) in the binary form,
    for each service's store; optional, since JSON rows load as they are."""
    from lifeline.events import reencode_json_rows
    from lifeline.store import ServiceApplication

    url = args.database_url or os.environ.get("DATABASE_URL")
    if not url:
        try:
            url = json.loads((args.state_dir / "state.json").read_text())["postgres"]["url"]
        except (OSError, KeyError, ValueError):
            print("lifeline migrate-events: no database; pass --database-url, set "
                  "DATABASE_URL, or run it beside `lifeline up`", file=sys.stderr)
            return 1
    for service in devstack.Stack.SERVICES:
        app = type(f"{service.title()}Store", (ServiceApplication,), {"name": service})(url)
        try:
            print(f"{service}: {reencode_json_rows(app)} events rewritten in binary")
        finally:
            app.close()
    return 0


def _migrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database-url", help="default: $DATABASE_URL, else `lifeline up`'s")


def _nats_auth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--passwords", type=Path, required=True,
                   help="JSON file {user: password} for monitor, dispatch, resources, review "
                        "and observer; made with new passwords if missing")


def _token_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", action="append", required=True,
                   help="a role from the role matrix (repeat for several): viewer, "
                        "sensor-gateway, call-taker, operator, department, commander, "
                        "evaluator, admin")
    p.add_argument("--name", required=True, help="the person or system the token names; "
                                                 "recorded as the actor of what it does")
    p.add_argument("--department", default="", help="the department (needed by the "
                                                    "department role)")
    p.add_argument("--ttl", default="8h", help="how long it is valid, e.g. 30m, 8h, 7d "
                                               "(default 8h)")


def _cmd_down(args: argparse.Namespace) -> int:
    lines = devstack.stop_from_state(args.state_dir)
    print("\n".join(lines) if lines else "nothing running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = devstack.read_state(args.state_dir)
    if state is None:
        print("[]" if args.json else f"nothing running (no state in {args.state_dir})")
        return 0
    rows = _components(state, health=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _print_rows(rows)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Start a fresh stack, play a scenario, print the replayed timeline and evaluation,
    stop everything."""
    import secrets
    import shutil
    import tempfile

    from lifeline.incident import text
    from lifeline.review.v1 import review_pb2
    from lifeline.scenario import SCENARIOS, Player, Scenario

    scenario = Scenario.load(args.scenario or SCENARIOS / "underpass_flood.toml")
    nats_url = os.environ.get("NATS_URL") or None
    database_url = os.environ.get("DATABASE_URL") or None
    # On shared servers earlier runs' sensors and units exist: give this run its own ids.
    tag = secrets.token_hex(3) if (nats_url or database_url) else ""
    state_dir = Path(tempfile.mkdtemp(prefix="lifeline-demo-"))
    print(f"== {scenario.name}")
    print("starting NATS, PostgreSQL and the four services ...", flush=True)
    started = time.monotonic()
    try:
        # The scenario's field time drives deadlines, not the wall clock.
        with devstack.Stack(state_dir, nats_url=nats_url, database_url=database_url,
                            extra_env={"LIFELINE_FIELD_CLOCK": "observed"}) as stack:
            print(f"   up in {time.monotonic() - started:.1f}s")
            player = Player(stack.addresses(), stack, tag=tag,
                            say=lambda line: print(line, flush=True))
            try:
                played = time.monotonic()
                incident_id = player.play(scenario)
                field = scenario.steps[-1].at if scenario.steps else 0
                print(f"\nplayed {field} of field time in {time.monotonic() - played:.1f}s")
                steps = list(player.review.ReplayIncident(
                    review_pb2.ReplayIncidentRequest(incident_id=incident_id)))
                evaluation = player.review.EvaluateIncident(
                    review_pb2.EvaluateIncidentRequest(incident_id=incident_id)).evaluation
            finally:
                player.close()
            print(f"\n== Replayed timeline of incident {incident_id} (from review)")
            print(text.replay_table(steps).render())
            print("\n== Evaluation (field time)")
            print(text.evaluation_table(evaluation).render())
            print("\nstopping ...", flush=True)
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    print("done: every process stopped")
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenario", type=Path, help="scenario file (default: the underpass flood)")


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")


COMMANDS: dict[str, tuple[str, Run, Configure | None]] = {
    "up": ("start NATS, PostgreSQL and the services in the background", _cmd_up, None),
    "down": ("stop everything `lifeline up` started", _cmd_down, None),
    "status": ("show components, addresses, pids and health", _cmd_status, _status_args),
    "demo": ("play the rainstorm scenario on a fresh stack, print its replay, stop",
             _cmd_demo, _demo_args),
    "token": ("print a bearer token signed by the running stack's key", _cmd_token,
              _token_args),
    "nats-auth": ("print nats-server users and permissions, one user per service",
                  _cmd_nats_auth, _nats_auth_args),
    "migrate-events": ("rewrite events stored as JSON in the binary form (optional: they "
                       "load as they are)", _cmd_migrate_events, _migrate_args),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lifeline", description="Lifeline local stack")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    default_dir = Path(os.environ.get("LIFELINE_STATE_DIR") or ".lifeline")
    for name, (help_text, run, configure) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--state-dir",
            type=Path,
            default=default_dir,
            help="where state.json, logs and data live "
            "(default: $LIFELINE_STATE_DIR or ./.lifeline)",
        )
        if configure:
            configure(p)
        p.set_defaults(run=run)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.run(args)
    except (RuntimeError, OSError) as e:
        print(f"lifeline {args.command}: {e}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
