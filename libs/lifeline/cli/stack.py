"""`lifeline` command: run the local stack in the background, inspect it, play the demo."""

import contextlib
import json
import re
import secrets
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from lifeline import devstack, processes
from lifeline.cli import connection, errors, render, session, times
from lifeline.cli.app import run
from lifeline.cli.connection import environment
from lifeline.identity.dev import DevAuthority, local_user
from lifeline.identity.nats import LISTENS_TO, OBSERVER, server_config
from lifeline.identity.tls import write_private
from lifeline.identity.tokens import parse_ttl

app = typer.Typer(name="lifeline", help="Lifeline's local stack: NATS, PostgreSQL and the four "
                                        "services on this machine, and the demo.",
                  no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  epilog="Exit status: 0 done, 1 failed (one line on stderr), 2 a usage error.")

StateDir = Annotated[Path, typer.Option(
    envvar="LIFELINE_STATE_DIR", metavar="DIR",
    help="where state.json, logs and data live (default: $LIFELINE_STATE_DIR or ./.lifeline)")]
DEFAULT_STATE = Path(".lifeline")


def _components(state: dict[str, Any], health: bool) -> list[dict[str, Any]]:
    """One row per component of a recorded state; health probes services via gRPC."""
    rows: list[dict[str, Any]] = []
    ca_file = DevAuthority(Path(state["state_dir"])).ca_file
    ca = ca_file.read_bytes() if state.get("secure") and ca_file.exists() else None
    for name in ("nats", "postgres"):
        info = state.get(name, {})
        embedded = info.get("embedded", False)
        running = processes.is_running(info.get("pid")) if embedded else None
        url = info.get("url") and re.sub(r"(://[^:/@]*:)[^@/]+@", r"\1***@", info["url"])
        row = {"component": name, "address": url, "pid": info.get("pid"),
               "state": "external" if not embedded else "running" if running else "stopped"}
        if health:
            row["health"] = None  # gRPC health applies to services only
        rows.append(row)
    for name, info in state.get("services", {}).items():
        running = processes.is_running(info.get("pid"))
        row = {"component": name, "address": info.get("address"), "pid": info.get("pid"),
               "state": "running" if running else "stopped"}
        if health:
            row["health"] = devstack.check_health(info["address"], ca) if running else "-"
        rows.append(row)
    if console := state.get("console"):
        running = processes.is_running(console.get("pid"))
        row = {"component": "console", "address": console.get("url"), "pid": console.get("pid"),
               "state": "running" if running else "stopped"}
        if health:
            row["health"] = devstack.console_health(console["url"], ca) if running else "-"
        rows.append(row)
    return rows


STATE_STYLES = {"running": "green", "stopped": "bold red", "SERVING": "green"}


def _rows_table(rows: list[dict[str, Any]]) -> Table:
    columns = list(rows[0])
    grid = render.table(*columns)
    for r in rows:
        render.add_row(grid, *(render.cell("-" if r.get(c) is None else r.get(c),
                                     STATE_STYLES.get(str(r.get(c)))) for c in columns))
    return grid


@app.command(help="Start NATS, PostgreSQL and the services in the background.")
def up(state_dir: StateDir = DEFAULT_STATE) -> None:
    state = devstack.read_state(state_dir)
    if state and devstack.state_pids(state):
        errors.fail(f"already up in {state_dir}; run `lifeline down` first")
    env = environment()
    stack = devstack.Stack(state_dir, nats_url=env.nats_url, database_url=env.database_url,
                           console=True)
    try:
        with render.progress("starting NATS, PostgreSQL, the four services and the console", None):
            stack.start()  # stops whatever it started if it fails
        stack.write_state()
    except Exception as e:
        stack.stop()
        errors.fail(f"{str(e).splitlines()[0] if str(e) else type(e).__name__}")
    render.emit(_rows_table(_components(stack.to_state(), health=False)))
    auth = DevAuthority(stack.state_dir)
    render.emit(f"TLS and tokens on: CA {auth.ca_file}; your token (7 days, all roles but "
             f"department) {auth.token_file}, used by the CLIs;\nmore with `lifeline token "
             f"--role ROLE --name NAME`. logs: {stack.state_dir / 'logs'}; stop with "
             "`lifeline down`")
    if stack.console is not None:
        render.emit(f"console: {stack.console.url} — sign in with the link `lifeline login-link` "
                 "prints")


@app.command(help="Stop everything `lifeline up` started.")
def down(state_dir: StateDir = DEFAULT_STATE) -> None:
    lines = devstack.stop_from_state(state_dir)
    render.emit("\n".join(lines) if lines else "nothing running")


@app.command(help="Show components, addresses, pids and health.")
def status(state_dir: StateDir = DEFAULT_STATE,
           as_json: Annotated[bool, typer.Option("--json", help="a JSON array, one object "
                                                                "per component")] = False,
           ) -> None:
    state = devstack.read_state(state_dir)
    rows = _components(state, health=True) if state else []
    if as_json:
        render.print_json(rows)
    elif not rows:
        render.emit(f"nothing running (no state in {state_dir})")
    else:
        render.emit(_rows_table(rows))


@app.command(help="Print a bearer token signed by the running stack's key.")
def token(
    role: Annotated[list[str], typer.Option(
        help="a role from the role matrix (repeat for several): viewer, sensor-gateway, "
        "call-taker, operator, department, commander, evaluator, admin")],
    name: Annotated[str, typer.Option(help="the person or system the token names; recorded "
                                           "as the actor of what it does")],
    department: Annotated[str, typer.Option(help="the department (needed by the department "
                                                 "role)")] = "",
    ttl: Annotated[str, typer.Option(help="how long it is valid, e.g. 30m, 8h, 7d")] = "8h",
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    auth = DevAuthority(state_dir)
    if not auth.signing_key.exists():
        errors.fail(f"no signing key in {auth.auth_dir}; run `lifeline up` first")
    try:
        render.emit(auth.token(name, role, department=department, ttl=parse_ttl(ttl)))
    except ValueError as e:
        errors.fail(str(e))


@app.command("login-link", help="Print a one-time console sign-in link (valid for 10 minutes) "
                                 "for a person with these roles.")
def login_link(
    role: Annotated[list[str], typer.Option(help="a role from the role matrix (repeat for "
                                                 "several)")] = ["operator", "commander"],  # noqa: B006
    name: Annotated[str, typer.Option(help="the person; recorded as the actor of what they "
                                           "do from the console")] = "",
    department: Annotated[str, typer.Option(help="their department (for the department and "
                                                 "crew roles)")] = "",
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    state = devstack.read_state(state_dir)
    console = state.get("console") if state else None
    if not console:
        errors.fail(f"no console running in {state_dir}; run `lifeline up` first")
    auth = DevAuthority(state_dir)
    try:
        token = auth.token(name or local_user(), role, department=department)
    except ValueError as e:
        errors.fail(str(e))
    render.emit(f"{console['url']}/signin#token={token}")


@app.command("nats-auth", help="Print nats-server users and permissions, one user per "
                               "service (deploy/k8s).")
def nats_auth(passwords: Annotated[Path, typer.Option(
        metavar="FILE", help="JSON file {user: password} for monitor, dispatch, resources, "
        "review and observer; made with new passwords if missing")],
        state_dir: StateDir = DEFAULT_STATE) -> None:
    if not passwords.exists():
        users = {name: secrets.token_urlsafe(24) for name in [*LISTENS_TO, OBSERVER]}
        write_private(passwords, json.dumps(users, indent=2).encode())
        errors.note(f"lifeline nats-auth: wrote new passwords to {passwords}")
    render.emit(server_config(passwords=json.loads(passwords.read_text())))


@app.command("migrate-events", help="Rewrite events stored as JSON in the binary form, for "
                                    "each service's store (optional: they load as they are).")
def migrate_events(
    database_url: Annotated[str | None, typer.Option(
        metavar="URL", help="default: $DATABASE_URL, else `lifeline up`'s")] = None,
    state_dir: StateDir = DEFAULT_STATE,
) -> None:
    from lifeline.encoding import reencode_json_rows
    from lifeline.store import ServiceApplication

    url = database_url or environment().database_url
    if not url:
        try:
            url = json.loads((state_dir / "state.json").read_text())["postgres"]["url"]
        except (OSError, KeyError, ValueError):
            errors.fail("no database; pass --database-url, set DATABASE_URL, or "
                     "run it beside `lifeline up`")
    for service in devstack.Stack.SERVICES:
        store = type(f"{service.title()}Store", (ServiceApplication,), {"name": service})(url)
        try:
            render.emit(f"{service}: {reencode_json_rows(store)} events rewritten in binary")
        finally:
            store.close()


@app.command(help="Publish a service's events to its NATS stream again, from an outbox "
                  "position on: after rebuilding a NATS cluster or restoring a stream. The "
                  "running service's relay does it, before newer events; consumers "
                  "recognise what they already took. Needs a token with the admin role.")
def republish(
    service: Annotated[str, typer.Option(help="whose events: monitor, dispatch, resources or "
                                              "review")],
    from_position: Annotated[int, typer.Option(
        "--from", metavar="POSITION", min=0,
        help="the first outbox position (a notification id); default: from the start")] = 0,
    addr: Annotated[str | None, typer.Option(
        metavar="HOST:PORT", help="the service's address (default: $LIFELINE_<SERVICE>_ADDR, "
        "else `lifeline up`'s)")] = None,
    token: Annotated[str | None, typer.Option(
        help="bearer token (default: $LIFELINE_TOKEN, else `lifeline up`'s)")] = None,
    ca: Annotated[str | None, typer.Option(
        metavar="FILE", help="CA certificate to trust (default: $LIFELINE_TLS_CA, else "
        "`lifeline up`'s)")] = None,
) -> None:
    import grpc

    from lifeline.common.v1 import parking_pb2, parking_pb2_grpc

    if service not in devstack.Stack.SERVICES:
        errors.fail(f"unknown service {service!r}; one of {', '.join(devstack.Stack.SERVICES)}")
    address = connection.service_address(service, addr)
    with grpc.secure_channel(address, connection.credentials(token, ca)) as channel:
        try:
            answer = parking_pb2_grpc.OutboxServiceStub(channel).Republish(
                parking_pb2.RepublishRequest(from_position=from_position), timeout=10)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                errors.fail(f"cannot reach lifeline-{service} at {address} ({error.details()})")
            errors.fail(f"{error.code().name.lower()}: {errors.one_line(error.details() or '')}")
    if answer.through_position < answer.from_position:
        render.emit(f"{service} has no events from position {answer.from_position} on: "
                 "nothing to republish")
    else:
        render.emit(f"republishing {service}'s events {answer.from_position}.."
                 f"{answer.through_position} to {answer.stream}")


@app.command(help="Play a scenario on a fresh stack, print its replay and evaluation, stop "
                  "everything.")
def demo(scenario: Annotated[Path | None, typer.Option(
        metavar="FILE", help="scenario file (default: the underpass flood)")] = None,
         speed: Annotated[float, typer.Option(
             min=0, help="field time runs this many times faster than the clock, so the "
             "console can be watched (0: as fast as the services answer)")] = 0,
         stay: Annotated[bool, typer.Option(
             help="keep the stack and the console up after the evaluation, until Ctrl-C")
         ] = False) -> None:
    from lifeline.cli import views
    from lifeline.review.v1 import review_pb2
    from lifeline.scenario import SCENARIOS, Player, Scenario

    played_scenario = Scenario.load(scenario or SCENARIOS / "underpass_flood.toml")
    # Field times read in the scenario's own city: its narration, replay and evaluation.
    given = session.options()
    if played_scenario.timezone and not given.tz:
        given.tz = played_scenario.timezone
    env = environment()
    nats_url, database_url = env.nats_url, env.database_url
    # On shared servers earlier runs' sensors and units exist: give this run its own ids.
    tag = secrets.token_hex(3) if (nats_url or database_url) else ""
    state_dir = Path(tempfile.mkdtemp(prefix="lifeline-demo-"))
    say = render.emit
    say(f"== {played_scenario.name} (field times in {times.zone_name()})")
    started = time.monotonic()
    try:
        with render.progress("starting NATS, PostgreSQL, the four services and the console",
                          None):
            # The scenario's field time drives deadlines, not the wall clock.
            stack = devstack.Stack(state_dir, nats_url=nats_url, database_url=database_url,
                                   extra_env={"LIFELINE_FIELD_CLOCK": "observed"}, console=True)
            stack.start()
        try:
            say(f"started NATS, PostgreSQL, the four services and the console in "
                f"{time.monotonic() - started:.1f}s")
            link = stack.sign_in_link(local_user(), "operator", "commander")
            say(f"console: {link.split('/signin')[0]}\nsign in (one-time link, 10 minutes): "
                f"{link}")
            player = Player(stack.addresses(), stack, tag=tag, say=say)
            try:
                played = time.monotonic()
                incident_id = player.play(played_scenario, speed=speed)
                field = played_scenario.steps[-1].at if played_scenario.steps else 0
                say(f"\nplayed {field} of field time in {time.monotonic() - played:.1f}s")
                steps = list(player.review.ReplayIncident(
                    review_pb2.ReplayIncidentRequest(incident_id=incident_id)))
                evaluation = player.review.EvaluateIncident(
                    review_pb2.EvaluateIncidentRequest(incident_id=incident_id)).evaluation
            finally:
                player.close()
            say(f"\n== Replayed timeline of incident {incident_id} (from review)")
            render.emit(views.replay_table(steps))
            say("\n== Evaluation (field time)")
            render.emit(views.evaluation_table(evaluation))
            if stay:
                say("\nthe stack and the console stay up (Ctrl-C stops everything)")
                with contextlib.suppress(KeyboardInterrupt):
                    signal.pause()
            say("\nstopping ...")
        finally:
            stack.stop()
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    say("done: every process stopped")


def main(argv: list[str] | None = None) -> None:
    """The `lifeline` console script."""
    run(app, "", argv)
