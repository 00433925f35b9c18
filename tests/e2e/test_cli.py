"""The five operator CLIs as people and scripts run them, talking to a running stack found
through LIFELINE_<SERVICE>_ADDR. Every command is run for its table and for its --json, and
every --json is parsed and checked, field by field, against the proto message it prints.

Where they run: most commands run in this process (`cli()`), through the console script's
own `main(argv)` (the same `lifeline.cli.app.run`: option hoisting, exit codes, one-line
errors), with the test's environment as os.environ, stdout and stderr captured and stdin
fed; a console script costs about a second of CPU in Python's start and imports, and this
module runs a few hundred commands. What only a real process shows stays a subprocess of
the installed console script: the entry points themselves (one plain command per service,
its table compared with the in-process one), output into a pipe that closes (`| head`), live
views that stream until stopped (`watch`, `inbox --follow`), and the shell's completion
protocol run as the shell runs it (`complete()`)."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from lifeline import settings
from lifeline.common.v1 import parking_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2
from lifeline.identity.dev import LOCAL_USER_ROLES
from lifeline.incident.v1 import incident_pb2
from lifeline.monitor.v1 import monitor_pb2
from lifeline.plans import default_library, load_plan
from lifeline.processes import free_port
from lifeline.resources.v1 import resources_pb2
from lifeline.review.v1 import review_pb2
from lifeline.scenario import wait_until

from tests.e2e import publish_undecodable

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
#: Inside the Xujiahui cell of the demo grid (grid officer wang-fang).
LAT, LON = "31.1955", "121.4373"
#: Exit status of a usage error (Click's convention; docs/cli.md says so).
USAGE = 2


@pytest.fixture(scope="module")
def stack(module_stack: Stack) -> Stack:
    return module_stack


@pytest.fixture(scope="module")
def env(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    for name in stack.SERVICES:
        values[f"LIFELINE_{name.upper()}_ADDR"] = stack.address(name)
    # No `lifeline up` state to fall back on: only the addresses above count.
    values["LIFELINE_STATE_DIR"] = str(tmp_path_factory.mktemp("cli-state"))
    values["LIFELINE_TOKEN"] = stack.token("cli-tester", *LOCAL_USER_ROLES)
    values["LIFELINE_TLS_CA"] = str(stack.authority.ca_file)  # type: ignore[union-attr]
    values["LIFELINE_TIMEZONE"] = "Asia/Shanghai"
    return values


def cli(env: dict[str, str], service: str, *args: str, ok: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`lifeline-<service> args...` with env as its environment, run in this process (see
    the module's docstring); its exit status and output as subprocess.run gives them."""
    done = in_process(env, service, list(args), stdin)
    if ok:
        assert done.returncode == 0, f"lifeline-{service} {args}: {done.stderr}"
        assert done.stderr == "" or "--limit" in done.stderr, done.stderr
    return done


def console_script(env: dict[str, str], service: str, *args: str,
                   stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The same, as the installed console script in a process of its own."""
    return subprocess.run([str(BIN / f"lifeline-{service}"), *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


def in_process(env: dict[str, str], service: str, args: list[str], stdin: str | None
               ) -> subprocess.CompletedProcess[str]:
    """What the console script does (`lifeline_<service>.cli:main`), in this process: for
    the call, os.environ is env, stdin reads the given text, stdout and stderr are captured
    (not terminals: tables print as into a pipe), SystemExit is the exit status; nothing of
    one call (options, the channel, what was read from the environment) is left for the
    next, whatever it raised."""
    main = importlib.import_module(f"lifeline_{service}.cli").main
    out, err = io.StringIO(), io.StringIO()
    feed = io.TextIOWrapper(io.BytesIO((stdin or "").encode()), encoding="utf-8")
    saved = dict(os.environ)
    code: int | str | None = 0
    with _ONE_AT_A_TIME:
        _forget_between_commands()
        real_stdin, sys.stdin = sys.stdin, feed
        os.environ.clear()
        os.environ.update(env)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(args)
                except SystemExit as exit_:
                    code = exit_.code
                    if code is not None and not isinstance(code, int):
                        print(code, file=sys.stderr)  # as the interpreter does
        finally:
            os.environ.clear()
            os.environ.update(saved)
            sys.stdin = real_stdin
            _forget_between_commands()
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess([f"lifeline-{service}", *args], returncode,
                                       out.getvalue(), err.getvalue())


#: os.environ and the standard streams are the process's: one command at a time.
_ONE_AT_A_TIME = threading.Lock()


def _forget_between_commands() -> None:
    """What a fresh process would not have: the settings read once from the environment, and
    the plan library read once from LIFELINE_PLANS (`review rehearse`). A run's options and
    channel live on its own Typer context."""
    settings.load.cache_clear()
    default_library.cache_clear()


def tag() -> str:
    return uuid.uuid4().hex[:8]


# ---- --json checked against the proto ----

INT64 = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
         FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}
FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}


def typed(data: Any, descriptor: Descriptor, where: str = "$") -> None:
    """data is descriptor's message in canonical JSON: camelCase keys it defines, every field
    without presence printed even when zero, and each value of its field's JSON type."""
    assert isinstance(data, dict), f"{where}: {type(data).__name__}, not an object"
    names = {f.json_name: f for f in descriptor.fields}
    unknown = set(data) - set(names)
    assert not unknown, f"{where}: {sorted(unknown)} are not fields of {descriptor.full_name}"
    for name, field in names.items():
        if name not in data:
            assert field.message_type is not None or field.has_presence, \
                f"{where}.{name} missing: zero values must be printed"
            continue
        value = data[name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            assert isinstance(value, dict), f"{where}.{name}: a map is an object"
            entry = field.message_type.fields_by_name["value"]
            for key, item in value.items():
                _typed_value(entry, item, f"{where}.{name}[{key}]")
        elif field.is_repeated:
            assert isinstance(value, list), f"{where}.{name}: a repeated field is an array"
            for n, item in enumerate(value):
                _typed_value(field, item, f"{where}.{name}[{n}]")
        else:
            _typed_value(field, value, f"{where}.{name}")


def _typed_value(field: FieldDescriptor, value: Any, where: str) -> None:
    if field.message_type is not None:
        full = field.message_type.full_name
        if full in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
            assert isinstance(value, str), where
            assert value.endswith("Z" if full.endswith("Timestamp") else "s"), (where, value)
        elif not full.startswith("google.protobuf."):
            typed(value, field.message_type, where)
    elif field.enum_type is not None:
        assert value in field.enum_type.values_by_name, f"{where}: {value!r} is no enum name"
    elif field.type == FieldDescriptor.TYPE_BOOL:
        assert isinstance(value, bool), f"{where}: {value!r} is not a boolean"
    elif field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES):
        assert isinstance(value, str), f"{where}: {value!r} is not a string"
    elif field.type in FLOATS:
        assert isinstance(value, int | float) and not isinstance(value, bool), \
            f"{where}: {value!r} is not a number"
    else:  # every integer, 64-bit ones too: numbers a script can add up
        assert isinstance(value, int) and not isinstance(value, bool), \
            f"{where}: {value!r} is not an integer"


def as_json(env: dict[str, str], service: str, *args: str, message: Any,
            many: bool = False, stdin: str | None = None) -> Any:
    """Run a command with --json, parse it and check it is message (a list of them when
    many)."""
    data = json.loads(cli(env, service, *args, "--json", stdin=stdin).stdout)
    for item in data if many else [data]:
        typed(item, message.DESCRIPTOR)
    if many:
        assert isinstance(data, list)
    return data


def table(env: dict[str, str], service: str, *args: str, stdin: str | None = None
          ) -> list[str]:
    """A command's table, as lines; the header is the first."""
    out = cli(env, service, *args, stdin=stdin).stdout
    assert "{" not in out.splitlines()[0], out
    return out.splitlines()


# ---- monitor ----


def test_monitor_commands_as_tables_and_json(env: dict[str, str], tmp_path: Path) -> None:
    hazard = "urban_flooding"
    first, second = f"cli-gauge-{tag()}", f"cli-gauge-{tag()}"
    loaded = table(env, "monitor", "load-grid", str(ROOT / "grids" / "xuhui.toml"))
    assert loaded[0].split()[:2] == ["DISTRICTS", "CELLS"]
    as_json(env, "monitor", "load-grid", str(ROOT / "grids" / "xuhui.toml"),
            message=monitor_pb2.LoadGridResponse)

    registered = table(env, "monitor", "register", first, "--kind", "water_level",
                       "--hazard", hazard, "--lat", LAT, "--lon", LON, "--unit", "m",
                       "--thresholds", "0.2", "0.4", "0.6", "0.8", "--on-delay", "0s")
    assert registered[1].startswith(first) and "0.2/0.4/0.6/0.8" in registered[1]
    shown = as_json(env, "monitor", "register", second, "--kind", "water_level", "--hazard",
                    hazard, "--lat", "31.2304", "--lon", "121.4737", "--unit", "m",
                    "--thresholds", "-1", "0", "1", "2", "--valid-range", "-5", "5",
                    message=monitor_pb2.Sensor)
    assert shown["thresholds"] == {"blue": -1.0, "yellow": 0.0, "orange": 1.0, "red": 2.0}
    assert shown["direction"] == "DIRECTION_HIGHER_IS_WORSE"

    listed = table(env, "monitor", "sensors")
    assert listed[0].split()[:2] == ["ID", "KIND"]
    assert any(line.startswith(first) for line in listed)
    sensors = as_json(env, "monitor", "sensors", message=monitor_pb2.Sensor, many=True)
    assert {first, second} <= {s["id"] for s in sensors}
    assert table(env, "monitor", "sensor", first)[1].startswith(first)
    assert as_json(env, "monitor", "sensor", first, message=monitor_pb2.Sensor)["id"] == first

    # A negative reading is a value, not an option.
    quiet = as_json(env, "monitor", "read", second, "-1.5",
                    message=monitor_pb2.IngestReadingsResponse)
    assert quiet["accepted"] == 1 and quiet["warnings"] == []
    raised = table(env, "monitor", "read", first, "0.7", "--at", "2026-07-20T07:10:00")
    assert "ORANGE" in raised[1] and "2026-07-20 07:10:00" in raised[1]  # the city's time
    assert raised[-1] == "times in Asia/Shanghai"
    answer = as_json(env, "monitor", "read", second, "1.5",
                     message=monitor_pb2.IngestReadingsResponse)
    assert answer["warnings"][0]["level"] == "WARNING_LEVEL_ORANGE"
    warning_id = answer["warnings"][0]["id"]

    warnings = as_json(env, "monitor", "warnings", "--hazard", hazard,
                       message=monitor_pb2.Warning, many=True)
    mine = [w for w in warnings if w["id"] == warning_id]
    assert mine and mine[0]["raisedAt"].endswith("Z")  # UTC in JSON
    assert table(env, "monitor", "warnings", "--status", "active")[0].split()[:3] == [
        "ID", "LEVEL", "STATUS"]
    assert warning_id in table(env, "monitor", "warning", warning_id)[1]
    as_json(env, "monitor", "warning", warning_id, message=monitor_pb2.Warning)
    first_warning = next(w["id"] for w in as_json(
        env, "monitor", "warnings", message=monitor_pb2.Warning, many=True)
        if first in w["sensorLevels"])
    assert "ACKNOWLEDGED" in table(env, "monitor", "ack", first_warning)[1]
    acked = as_json(env, "monitor", "ack", warning_id, message=monitor_pb2.Warning)
    assert acked["status"] == "WARNING_STATUS_ACKNOWLEDGED"

    cell = table(env, "monitor", "cell", "--lat", LAT, "--lon", LON)
    assert any("wang-fang" in line for line in cell)
    as_json(env, "monitor", "cell", "--lat", LAT, "--lon", LON,
            message=monitor_pb2.GridCell)
    assert table(env, "monitor", "precision")[0].split()[:2] == ["BY", "KEY"]
    as_json(env, "monitor", "precision", message=monitor_pb2.GetPrecisionResponse)

    assert any("shelving.reason" in line for line in table(
        env, "monitor", "shelve", first, "--for", "1h", "--reason", "cleaning"))
    as_json(env, "monitor", "unshelve", first, message=monitor_pb2.Sensor)
    as_json(env, "monitor", "shelve", second, "--for", "30m", "--reason", "cleaning",
            message=monitor_pb2.Sensor)
    table(env, "monitor", "unshelve", second, "--reason", "clean")

    csv_file = tmp_path / "gauges.csv"
    csv_file.write_text("id,kind,hazard,lat,lon,unit,blue,yellow,orange,red\n"
                        f"cli-csv-{tag()},rainfall,{hazard},{LAT},{LON},mm/h,10,20,30,50\n")
    assert table(env, "monitor", "import-sensors", str(csv_file))[1].split() == ["1", "0"]
    imported = as_json(env, "monitor", "import-sensors", str(csv_file),
                       message=monitor_pb2.RegisterSensorsResponse)
    assert imported["registered"] == 0 and len(imported["existing"]) == 1

    inbox = table(env, "monitor", "inbox", "--party", "wang-fang")
    assert inbox[0].split()[:2] == ["WARNING", "LEVEL"]
    as_json(env, "monitor", "inbox", "--party", "wang-fang", "--all",
            message=monitor_pb2.PartyNotification, many=True)
    assert any("step" in line for line in table(env, "monitor", "escalation", first_warning))
    as_json(env, "monitor", "escalation", first_warning, message=monitor_pb2.Escalation)

    assert cli(env, "monitor", "cap", first_warning).stdout.startswith("<?xml")
    alerts = as_json(env, "monitor", "cap", first_warning, message=monitor_pb2.CapAlert,
                     many=True)
    assert alerts
    yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    bureau = (ROOT / "tests" / "data" / "cap" / "gas_leak_geocode.xml").read_text().replace(
        "2031-09-01", yesterday)
    table(env, "monitor", "cap", "import", "-", stdin=bureau)
    as_json(env, "monitor", "cap", "import", "-", stdin=bureau,
            message=monitor_pb2.ImportCapAlertResponse)

    assert table(env, "monitor", "parked") == ["(none)"]  # nothing parked here
    as_json(env, "monitor", "parked", message=parking_pb2.Parking, many=True)


# ---- dispatch: the whole lifecycle, once as tables and once as JSON ----


def lifecycle(env: dict[str, str], stack: Stack, json_: bool) -> str:
    """Report an incident and take it to reviewed, each step printed as a table or as
    JSON; the incident's id."""
    def step(*args: str, message: Any = incident_pb2.Incident, many: bool = False,
             who: dict[str, str] = env) -> Any:
        if json_:
            return as_json(who, "dispatch", *args, message=message, many=many)
        return table(who, "dispatch", *args)

    if json_:
        incident_id = step("report", "gas_leak", "--lat", LAT, "--lon", LON,
                           "--description", "smell of gas, 3rd floor")["id"]
    else:
        reported = step("report", "gas_leak", "--lat", LAT, "--lon", LON)
        incident_id = reported[1].split()[0]
        assert reported[0].split()[:3] == ["ID", "STATE", "HAZARD"]
        assert "WARNING" in reported[1]
    step("declare", incident_id, "--category", "accident_disaster", "--type", "gas_leak",
         "--grade", "iv", "--reason", "confirmed by the crew")
    step("regrade", incident_id, "--grade", "iii", "--reason", "two floors evacuated")
    issued = step("order", incident_id, "--department", "fire", "--instruction",
                  "Ventilate stairwell B [north side]", "--life-safety", "--ack", "10")
    if json_:
        order = issued["orders"][-1]["id"]
        assert issued["orders"][-1]["instruction"] == "Ventilate stairwell B [north side]"
    else:
        assert issued[0].split()[:2] == ["ORDER", "STATUS"]
        assert "Ventilate stairwell B [north side]" in issued[1]  # full text, no markup
        order = issued[1].split()[0]
    step("ack-order", incident_id, order)
    step("progress", incident_id, order, "--percent", "50", "--note", "fans running")
    step("complete-order", incident_id, order)
    step("verify-order", incident_id, order)
    orders = step("orders", incident_id, message=incident_pb2.Order, many=True)
    ids = ([o["id"] for o in orders] if json_ else
           [line.split()[0] for line in orders[1:-1]])
    for other in ids:
        if other != order:
            step("cancel-order", incident_id, other, "--reason", "done by the fire crew")
    step("situation", incident_id, "--injured", "2", "--evacuated", "40", "--text",
         "two treated for smoke")
    step("contain", incident_id, "--reason", "leak closed")
    step("recover", incident_id)
    task = step("task", incident_id, "--kind", "assessment", "--owner", "gas-company",
                "--description", "Check every riser in the building")
    task_id = task["recoveryTasks"][-1]["id"] if json_ else "T-1"
    step("task-done", incident_id, task_id)
    step("recovered", incident_id)
    step("release", incident_id)
    successor = {**env, "LIFELINE_TOKEN": stack.token("duty-officer-sun", "commander")}
    step("handover", incident_id, "duty-officer-sun")
    closed = step("close", incident_id, who=successor)
    if json_:
        assert closed["state"] == "INCIDENT_STATE_CLOSED"
    else:
        assert "CLOSED" in closed[1]
    step("reviewed", incident_id, "--summary", "ventilation took 20 minutes")
    return incident_id


def test_dispatch_commands_as_tables_and_json(env: dict[str, str], stack: Stack) -> None:
    shown = lifecycle(env, stack, json_=False)
    as_json_id = lifecycle(env, stack, json_=True)

    detail = table(env, "dispatch", "incident", shown)
    assert detail[1].startswith(shown) and "CLOSED" in detail[1]
    full = as_json(env, "dispatch", "incident", as_json_id, message=incident_pb2.Incident)
    assert full["state"] == "INCIDENT_STATE_CLOSED" and full["reviewed"]
    mine = next(o for o in full["orders"] if o["department"] == "fire" and o["percent"])
    assert mine["percent"] == 100  # a number, not "100"
    listed = as_json(env, "dispatch", "incidents", message=incident_pb2.Incident, many=True)
    assert {shown, as_json_id} <= {i["id"] for i in listed}
    assert table(env, "dispatch", "incidents", "--state", "closed")[0].split()[:2] == [
        "ID", "STATE"]
    # A warning to dismiss: the one command a closed incident cannot show.
    warned = as_json(env, "dispatch", "report", "urban_flooding", "--lat", LAT, "--lon", LON,
                     message=incident_pb2.Incident)["id"]
    dismissed = as_json(env, "dispatch", "dismiss", warned, "--reason", "a burst pipe",
                        message=incident_pb2.Incident)
    assert dismissed["state"] == "INCIDENT_STATE_DISMISSED"
    other = as_json(env, "dispatch", "report", "urban_flooding", "--lat", LAT, "--lon", LON,
                    message=incident_pb2.Incident)["id"]
    assert "DISMISSED" in table(env, "dispatch", "dismiss", other)[1]
    assert table(env, "dispatch", "parked") == ["(none)"]  # nothing parked here
    as_json(env, "dispatch", "parked", message=parking_pb2.Parking, many=True)


def test_active_and_worst_incidents_come_first(env: dict[str, str]) -> None:
    mild = as_json(env, "dispatch", "report", "gas_leak", "--lat", LAT, "--lon", LON,
                   message=incident_pb2.Incident)["id"]
    worst = as_json(env, "dispatch", "report", "gas_leak", "--lat", LAT, "--lon", LON,
                    message=incident_pb2.Incident)["id"]
    cli(env, "dispatch", "declare", mild, "--category", "accident_disaster", "--type",
        "gas_leak", "--grade", "iv")
    cli(env, "dispatch", "declare", worst, "--category", "accident_disaster", "--type",
        "gas_leak", "--grade", "i")
    listed = [i["id"] for i in as_json(env, "dispatch", "incidents",
                                        message=incident_pb2.Incident, many=True)]
    assert listed.index(worst) < listed.index(mild)
    rows = [line.split()[0] for line in table(env, "dispatch", "incidents")[1:-1]]
    assert rows.index(worst) < rows.index(mild)

    # One page at a time, all of them; or as many as asked, saying so.
    limited = cli(env, "dispatch", "incidents", "--limit", "1", "--json")
    assert len(json.loads(limited.stdout)) == 1
    assert limited.stderr.strip() == ("stopped at --limit 1 incidents; more exist "
                                      "(--limit 0 for all)")
    lines = cli(env, "dispatch", "incidents", "--ndjson").stdout.splitlines()
    assert len(lines) == len(listed)
    for line in lines:
        typed(json.loads(line), incident_pb2.Incident.DESCRIPTOR)


# ---- resources ----


def test_resources_commands_as_tables_and_json(env: dict[str, str], stack: Stack,
                                               tmp_path: Path) -> None:
    unit, other, depot = f"pump-{tag()}", f"pump-{tag()}", f"depot-{tag()}"
    registered = table(env, "resources", "register", unit, "--kind", "pump_truck",
                       "--department", "water", "--lat", LAT, "--lon", LON, "--crew", "3")
    assert registered[1].startswith(unit) and "AVAILABLE" in registered[1]
    as_json(env, "resources", "register", other, "--kind", "pump_truck", "--department",
            "water", "--lat", "31.19", "--lon", "121.44", "--capability", "rescue_team",
            message=resources_pb2.Unit)
    assert table(env, "resources", "units", "--kind", "pump_truck")[0].split()[:2] == [
        "ID", "KIND"]
    units = as_json(env, "resources", "units", message=resources_pb2.Unit, many=True)
    assert {unit, other} <= {u["id"] for u in units}
    assert table(env, "resources", "unit", unit)[1].startswith(unit)
    as_json(env, "resources", "unit", unit, message=resources_pb2.Unit)
    assert "OUT_OF_SERVICE" in table(env, "resources", "status", unit, "out_of_service")[1]
    back = as_json(env, "resources", "status", unit, "available", message=resources_pb2.Unit)
    assert back["status"] == "UNIT_STATUS_AVAILABLE"

    fleet = tmp_path / "fleet.csv"
    fleet.write_text("id,kind,department,lat,lon,capabilities,crew\n"
                     f"{unit},pump_truck,water,{LAT},{LON},,3\n"
                     f"imported-{tag()},ambulance,medical,{LAT},{LON},rescue_team;pump_truck,2\n")
    assert table(env, "resources", "import-units", str(fleet))[1].split() == ["1", "1"]
    imported = as_json(env, "resources", "import-units", str(fleet),
                       message=resources_pb2.RegisterUnitsResponse)
    assert imported["registered"] == 0 and len(imported["existing"]) == 2

    made = table(env, "resources", "depot", "register", depot, "sandbags=900:bag",
                 "--department", "water", "--lat", LAT, "--lon", LON, "--name", "Store")
    assert made[1].startswith(depot) and "sandbags" in made[1]
    as_json(env, "resources", "depot", "restock", depot, "sandbags=100:bag",
            message=resources_pb2.Depot)
    assert "1000" in table(env, "resources", "depot", "show", depot)[1]
    as_json(env, "resources", "depot", "show", depot, message=resources_pb2.Depot)
    assert any(line.startswith(depot) for line in table(env, "resources", "depot", "list"))
    as_json(env, "resources", "depot", "list", message=resources_pb2.Depot, many=True)
    table(env, "resources", "depot", "restock", depot, "life_jackets=20:piece")

    recommended = table(env, "resources", "recommend", "pump_truck", "--lat", LAT,
                        "--lon", LON)
    assert recommended[0].split()[:2] == ["RANK", "UNIT"]
    as_json(env, "resources", "recommend", "pump_truck=2", "--lat", LAT, "--lon", LON,
            message=resources_pb2.RecommendUnitsResponse)

    # A flood declared here asks for a pump truck and sandbags: explain and use read it.
    incident = as_json(env, "dispatch", "report", "urban_flooding", "--lat", LAT, "--lon",
                       LON, message=incident_pb2.Incident)["id"]
    cli(env, "dispatch", "declare", incident, "--category", "natural_disaster", "--type",
        "urban_flooding", "--grade", "iii")

    def reserved() -> dict[str, Any] | None:
        found = json.loads(cli(env, "dispatch", "incident", incident, "--json").stdout)
        held = [r for r in found["materialsReserved"] if r["depotId"] == depot]
        return held[0] if held and found["units"] else None

    reservation = wait_until(reserved, "the flood's sandbags reserved at the depot")
    explained = cli(env, "resources", "explain", reservation["requestId"]).stdout
    assert "RANK" in explained and "travel time" in explained
    as_json(env, "resources", "explain", reservation["requestId"],
            message=resources_pb2.RequestAnswered)
    used = table(env, "resources", "use", depot, incident, "consumed", "sandbags=10:bag")
    assert used[1].startswith(depot)
    as_json(env, "resources", "use", depot, incident, "returned", "sandbags=5:bag",
            message=resources_pb2.Depot)

    # No coverage requirements configured (test_routing configures some): no rows.
    assert table(env, "resources", "coverage") == ["(none)"]
    assert as_json(env, "resources", "coverage", message=resources_pb2.Coverage,
                   many=True) == []
    assert table(env, "resources", "parked") == ["(none)"]  # nothing parked here
    as_json(env, "resources", "parked", message=parking_pb2.Parking, many=True)


# ---- review ----


def test_review_commands_as_tables_and_json(env: dict[str, str], stack: Stack,
                                            tmp_path: Path) -> None:
    incident, second = (as_json(env, "dispatch", "report", "gas_leak", "--lat", LAT, "--lon",
                                LON, "--at", "2026-07-20T06:00:00",
                                message=incident_pb2.Incident)["id"] for _ in range(2))
    for reported in (incident, second):
        cli(env, "dispatch", "declare", reported, "--category", "accident_disaster", "--type",
            "gas_leak", "--grade", "iv", "--at", "2026-07-20T06:10:00")

    def kept() -> list[str] | None:
        # The whole history so far: resources has answered the declaration (its units or
        # shortfalls recorded by dispatch) and review holds every event dispatch has.
        found = json.loads(cli(env, "dispatch", "incident", incident, "--json").stdout)
        if not (found.get("units") or found.get("shortfalls")):
            return None
        done = cli(env, "review", "replay", incident, ok=False)
        steps = [line for line in done.stdout.splitlines() if line[:1].isdigit()]
        return done.stdout.splitlines() if len(steps) == int(found["version"]) else None

    replay = wait_until(kept, "review to keep the declared incident")
    assert replay[0].split()[:3] == ["#", "FIELD", "TIME"] and "STATE AFTER" in replay[0]
    # The field time as the city reads it, and the zone named; UTC in the JSON.
    assert replay[1].split()[1:3] == ["2026-07-20", "06:00:00"] and "reported" in replay[1]
    assert replay[-1] == "field times in Asia/Shanghai"
    steps = as_json(env, "review", "replay", incident, message=review_pb2.ReplayStep,
                    many=True)
    assert steps[0]["event"]["reported"]["meta"]["occurredAt"] == "2026-07-19T22:00:00Z"

    shown = table(env, "review", "history", "show", incident)
    assert shown[0].split()[:3] == ["#", "FIELD", "TIME"]
    as_json(env, "review", "history", "show", incident, message=incident_pb2.IncidentEvent,
            many=True)
    exported = cli(env, "review", "history", "export", incident).stdout.splitlines()
    for line in exported:  # the interchange form: the fields set, as histories always had
        json_format.Parse(line, incident_pb2.IncidentEvent())
    path = tmp_path / "history.ndjson"
    assert cli(env, "review", "history", "export", incident, "-o", str(path)).stdout == (
        f"wrote {len(exported)} events to {path}\n")
    written = json.loads(cli(env, "review", "history", "export", incident, "-o", str(path),
                             "--json").stdout)
    assert written == {"incidentId": incident, "events": len(exported), "file": str(path)}
    assert "chain holds" in cli(env, "review", "history", "verify", str(path)).stdout
    assert json.loads(cli(env, "review", "history", "verify", str(path), "--json").stdout
                      )["chainHolds"] is True
    assert "imported" in cli(env, "review", "history", "import", str(path)).stdout
    wait_until(lambda: cli(env, "review", "history", "show", second, ok=False).stdout.count(
        "declared") or None, "review to keep the second incident")
    cli(env, "review", "history", "export", second, "-o", str(path))
    as_json(env, "review", "history", "import", str(path),
            message=review_pb2.ImportHistoryResponse)

    evaluation = table(env, "review", "evaluate", incident)
    assert evaluation[0].split() == ["MEASURE", "VALUE"]
    evaluated = as_json(env, "review", "evaluate", incident, message=review_pb2.Evaluation)
    assert evaluated["events"] == len(exported)  # a count is a number
    assert evaluated["unitsShort"] >= 0 and "responseTimeMet" in evaluated  # zeros printed
    assert any(line.startswith(incident) for line in table(env, "review", "histories"))
    as_json(env, "review", "histories", message=review_pb2.HistorySummary, many=True)
    assert "incidents; within" in cli(env, "review", "report", "--hazard", "gas_leak").stdout
    as_json(env, "review", "report", "--hazard", "gas_leak",
            message=review_pb2.IncidentsEvaluation)
    at = "2026-07-20T06:05:00"
    assert any("WARNING" in line for line in table(env, "review", "as-of", incident,
                                                   "--at", at))
    as_json(env, "review", "as-of", incident, "--at", at,
            message=review_pb2.GetIncidentAsOfResponse)
    assert "active incidents" in cli(env, "review", "city", "--at", at).stdout
    as_json(env, "review", "city", "--at", at, message=review_pb2.GetCityAsOfResponse)

    plan = load_plan(ROOT / "plans" / "gas_leak.toml")
    revised = tmp_path / "gas_leak.toml"
    revised.write_text(plan.path.read_text().replace(
        f"version = {plan.version}\n", f"version = {plan.version + 1}\n", 1))
    proposed = as_json(env, "review", "revision", "propose", "gas_leak", "--file",
                       str(revised), "--reason", "faster ventilation", "--incident", incident,
                       "--finding", "ventilation_minutes=20/15:minutes",
                       message=review_pb2.PlanRevision)
    other = {**env, "LIFELINE_TOKEN": stack.token("evaluator-sun", "evaluator")}
    assert any("accepted" in line for line in table(other, "review", "revision", "accept",
                                                    proposed["id"], "--reason", "agreed"))
    as_json(env, "review", "revision", "show", proposed["id"], message=review_pb2.PlanRevision)
    assert any("revision" in line for line in table(env, "review", "revision", "show",
                                                    proposed["id"]))
    again = tmp_path / "again.toml"
    again.write_text(revised.read_text() + "# proposed once more\n")
    second = cli(env, "review", "revision", "propose", "gas_leak", "--file", str(again),
                 "--reason", "again").stdout
    second_id = next(line.split()[1] for line in second.splitlines()
                     if line.startswith("revision"))
    as_json(other, "review", "revision", "reject", second_id, "--reason", "one is enough",
            message=review_pb2.PlanRevision)
    out = tmp_path / "plans" / "gas_leak.toml"
    out.parent.mkdir()
    assert "wrote gas_leak" in cli(env, "review", "revision", "export", proposed["id"], "-o",
                                   str(out)).stdout
    as_json(env, "review", "revision", "export", proposed["id"], "-o", str(out),
            message=review_pb2.PlanRevision)
    assert table(env, "review", "revisions", "--plan", "gas_leak")[0].split()[:2] == [
        "REVISION", "PLAN"]
    as_json(env, "review", "revisions", message=review_pb2.PlanRevision, many=True)
    assert table(env, "review", "parked") == ["(none)"]  # nothing parked here
    as_json(env, "review", "parked", message=parking_pb2.Parking, many=True)


# ---- failures, usage, pipes ----


def test_a_refused_request_is_one_clear_line_and_exit_1(env: dict[str, str]) -> None:
    sensor_id = f"cli-bad-{tag()}"
    done = cli(env, "monitor", "register", sensor_id, "--kind", "water_level", "--hazard",
               "urban_flooding", "--lat", LAT, "--lon", LON, "--unit", "m", "--thresholds",
               "0.8", "0.6", "0.4", "0.2", ok=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("lifeline-monitor: invalid_argument:"), lines
    assert "thresholds" in lines[0]
    assert done.stdout == ""

    missing = cli(env, "monitor", "sensor", sensor_id, ok=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"lifeline-monitor: not_found: sensor {sensor_id!r} not found"]


@pytest.mark.parametrize(("service", "args", "says"), [
    ("monitor", ("read", "rain-1"), "Missing argument 'value'"),
    ("monitor", ("read", "rain-1", "lots"), "Invalid value for 'value'"),
    ("dispatch", ("incidents", "--bogus"), "No such option: --bogus"),
    ("dispatch", ("declare", "I-1", "--category", "natural_disaster", "--type", "x",
                  "--grade", "v"), "did you mean iv?"),
    ("dispatch", ("launch",), "No such command 'launch'"),
    ("resources", ("depot", "register", "D-1", "sandbags", "--department", "water",
                   "--lat", "1", "--lon", "2"), "write NAME=QUANTITY:UNIT"),
    ("review", ("rehearse",), "give either --histories DIR or --generate SPEC"),
])
def test_a_usage_error_is_one_line_and_exit_2(env: dict[str, str], service: str,
                                              args: tuple[str, ...], says: str) -> None:
    done = cli(env, service, *args, ok=False)
    assert done.returncode == USAGE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"lifeline-{service}") and says in lines[0], lines[0]
    assert lines[0].endswith("(--help for usage)")
    assert done.stdout == ""


def test_an_unreachable_service_says_so(env: dict[str, str]) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    for args in (("--addr", nowhere, "sensors"), ("sensors", "--addr", nowhere)):
        done = cli(env, "monitor", *args, ok=False)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("lifeline-monitor: unavailable: cannot reach "
                                   f"lifeline-monitor at {nowhere}"), lines

    unset = {k: v for k, v in env.items() if k != "LIFELINE_DISPATCH_ADDR"}
    done = cli(unset, "dispatch", "incidents", ok=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "lifeline-dispatch: no address; pass --addr HOST:PORT, set LIFELINE_DISPATCH_ADDR, "
        "or run `lifeline up`"]


def test_piping_into_head_ends_quietly(env: dict[str, str]) -> None:
    incident = as_json(env, "dispatch", "report", "gas_leak", "--lat", LAT, "--lon", LON,
                       message=incident_pb2.Incident)["id"]
    for _ in range(3):
        cli(env, "dispatch", "situation", incident, "--injured", "1", "--text", "x" * 4000)
    for args in (("review", "history", "export", incident), ("dispatch", "incidents"),
                 ("dispatch", "--help")):
        wait_until(lambda: cli(env, "review", "history", "show", incident, ok=False
                               ).returncode == 0 or None, "review to keep the incident")
        writer = subprocess.Popen([str(BIN / f"lifeline-{args[0]}"), *args[1:]], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        head = subprocess.run(["head", "-c", "10"], stdin=writer.stdout, capture_output=True,
                              timeout=60, check=True)
        assert writer.stdout is not None and writer.stderr is not None
        writer.stdout.close()  # as the shell does: only head holds the pipe
        assert writer.wait(timeout=60) in (0, 1)
        assert len(head.stdout) == 10
        assert writer.stderr.read() == b"", args  # no BrokenPipeError traceback


# ---- the console scripts themselves ----


def _made(env: dict[str, str], service: str) -> tuple[str, ...]:
    """Something of service's to show (made in process), as the command showing it."""
    if service == "dispatch":
        return ("incident", as_json(env, "dispatch", "report", "gas_leak", "--lat", LAT,
                                    "--lon", LON, message=incident_pb2.Incident)["id"])
    if service == "monitor":
        sensor = f"cli-script-{tag()}"
        cli(env, "monitor", "register", sensor, "--kind", "water_level", "--hazard",
            "urban_flooding", "--lat", "31.25", "--lon", "121.50", "--unit", "m",
            "--thresholds", "0.2", "0.4", "0.6", "0.8")
        return ("sensor", sensor)
    if service == "resources":  # of a kind nobody asks for: no incident takes it meanwhile
        unit = f"drone-{tag()}"
        cli(env, "resources", "register", unit, "--kind", f"drone_{tag()}", "--department",
            "police", "--lat", LAT, "--lon", LON, "--new-names")
        return ("unit", unit)
    incident = as_json(env, "dispatch", "report", "gas_leak", "--lat", LAT, "--lon", LON,
                       message=incident_pb2.Incident)["id"]
    wait_until(lambda: "reported" in cli(env, "review", "history", "show", incident,
                                         ok=False).stdout or None, "review to keep it")
    return ("history", "show", incident)


@pytest.mark.parametrize("service", ["dispatch", "monitor", "resources", "review"])
def test_each_console_script_prints_what_the_command_prints_in_process(
        env: dict[str, str], service: str) -> None:
    """The installed entry point, in a process of its own as people run it, into a pipe:
    the same table, exit status and (empty) stderr as the in-process runs the rest of
    this module checks."""
    args = _made(env, service)
    real = console_script(env, service, *args)
    assert (real.returncode, real.stderr) == (0, ""), real.stderr
    assert len(real.stdout.splitlines()) >= 2, real.stdout  # a header and a row at least
    here = cli(env, service, *args)
    assert (here.returncode, here.stdout, here.stderr) == (
        real.returncode, real.stdout, real.stderr)


# ---- live views ----


class Lines:
    """Reads a process's stdout on a thread of its own."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        self.stdout = process.stdout
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stdout:
            self.lines.put(line)

    def until(self, wanted: Any, what: str, timeout: float = 30.0, parse: bool = True
              ) -> Any:
        """The first line wanted(...) accepts: parsed as JSON, or the text when not parse."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise AssertionError(f"no {what} within {timeout:g} s") from None
            message = json.loads(line) if parse else line
            if wanted(message):
                return message


@pytest.fixture
def watching(env: dict[str, str]) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def watch(service: str, *args: str) -> Lines:
        process = subprocess.Popen([str(BIN / f"lifeline-{service}"), "watch", "--ndjson",
                                    *args], env=env, stdout=subprocess.PIPE, text=True)
        started.append(process)
        return Lines(process)

    yield watch
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def test_dispatch_watch_shows_a_new_incident(
        env: dict[str, str], watching: Any) -> None:
    follow = watching("dispatch")
    follow.until(lambda m: m.get("caughtUp"), "end of the snapshot")
    description = f"gas in the stairwell {tag()}"
    subprocess.run([str(BIN / "lifeline-dispatch"), "report", "gas_leak", "--lat", LAT,
                    "--lon", LON, "--description", description], env=env, check=True,
                   capture_output=True, timeout=60)
    message = follow.until(
        lambda m: m.get("incident", {}).get("description") == description, "the new incident")
    typed(message, dispatch_pb2.WatchIncidentsResponse.DESCRIPTOR)
    assert message["incident"]["state"] == "INCIDENT_STATE_WARNING"


def test_monitor_watch_shows_a_raised_warning(env: dict[str, str], watching: Any) -> None:
    sensor = f"cli-watch-{tag()}"
    cli(env, "monitor", "register", sensor, "--kind", "water_level", "--hazard",
        "urban_flooding", "--lat", "31.25", "--lon", "121.50", "--unit", "m",
        "--thresholds", "0.2", "0.4", "0.6", "0.8")
    follow = watching("monitor", "--hazard", "urban_flooding")
    follow.until(lambda m: m.get("caughtUp"), "end of the snapshot")
    cli(env, "monitor", "read", sensor, "0.9")
    message = follow.until(lambda m: sensor in m.get("warning", {}).get("sensorLevels", {}),
                              "the raised warning")
    typed(message, monitor_pb2.WatchWarningsResponse.DESCRIPTOR)
    assert message["warning"]["level"] == "WARNING_LEVEL_RED"


# ---- names the system knows ----


def complete(env: dict[str, str], service: str, *words: str) -> list[str]:
    """What the shell would offer for the last word (Typer's bash completion protocol)."""
    prog = f"lifeline-{service}"
    done = subprocess.run([str(BIN / prog)], env={
        **env, f"_{prog.upper().replace('-', '_')}_COMPLETE": "complete_bash",
        "COMP_WORDS": " ".join([prog, *words]), "COMP_CWORD": str(len(words))},
        capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split()


def test_hazards_unit_kinds_and_departments_complete_from_the_services(
        env: dict[str, str]) -> None:
    assert "urban_flooding" in complete(env, "dispatch", "report", "urban_")
    assert "fire" in complete(env, "dispatch", "order", "I-1", "--department", "fi")
    assert "urban_flooding" in complete(env, "monitor", "register", "s", "--hazard", "urb")
    assert "police_car" in complete(env, "resources", "register", "u", "--kind", "pol")
    assert complete(env, "dispatch", "declare", "I-1", "--grade", "i") == [
        "i", "ii", "iii", "iv"]
    # A service out of reach offers nothing, quietly.
    away = {**env, "LIFELINE_DISPATCH_ADDR": f"127.0.0.1:{free_port()}"}
    assert complete(away, "dispatch", "report", "urban_") == []


def test_a_misspelt_name_is_refused_with_the_closest_and_a_new_one_taken_when_asked(
        env: dict[str, str]) -> None:
    unit = f"car-{tag()}"
    register = ("register", unit, "--department", "police", "--lat", LAT, "--lon", LON)
    refused = cli(env, "resources", *register, "--kind", "polic_car", ok=False)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        "lifeline-resources: invalid_argument: kind: unit kind 'polic_car' is not known; "
        "did you mean 'police_car'?"]
    kind = f"drone_{tag()}"
    taken = as_json(env, "resources", *register, "--kind", kind, "--new-names",
                    message=resources_pb2.Unit)
    assert taken["kind"] == kind
    assert kind in complete(env, "resources", "units", "--kind", "drone_")


# ---- road closures and move-ups: refused on a stack without LIFELINE_ROADS / _COVERAGE ----


@pytest.mark.parametrize(("args", "says"), [
    (("close-road", "xjh-underpass", "--reason", "flooded, 0.6 m"),
     "failed_precondition: road-graph-loaded: no road graph is loaded (set LIFELINE_ROADS"),
    (("reopen-road", "xjh-underpass"),
     "failed_precondition: road-graph-loaded: no road graph is loaded (set LIFELINE_ROADS"),
    (("accept-moveup", "xujiahui-pump/1"), "not_found: move-up 'xujiahui-pump/1' not found"),
    (("decline-moveup", "xujiahui-pump/1", "--reason", "needed here"),
     "not_found: move-up 'xujiahui-pump/1' not found"),
])
def test_roads_and_move_ups_without_a_graph_or_requirements_are_refused_in_one_line(
        env: dict[str, str], args: tuple[str, ...], says: str) -> None:
    """The module's stack loads no road graph and no coverage requirements (test_routing
    runs these commands against a stack that does): the table and the --json form are
    refused alike, one line naming the rule, exit 1, nothing on stdout."""
    for extra in ((), ("--json",)):
        done = cli(env, "resources", *args, *extra, ok=False)
        assert done.returncode == 1, done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"lifeline-resources: {says}"), lines
        assert done.stdout == ""


# ---- review rehearse: in process, nothing live ----


def test_rehearse_prints_measures_per_variant_and_json_of_the_evaluation(
        env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "day.toml"
    spec.write_text("incidents = 6\nseed = 3\nfleet = 4\n[hazards]\nurban_flooding = 1\n")
    fleet = tmp_path / "fleet.toml"
    shown = table(env, "review", "rehearse", "--generate", str(spec), "--write-fleet",
                  str(fleet))
    assert shown[0].split() == ["MEASURE", "BASELINE"]
    assert shown[1].split() == ["incidents", "6"]
    assert any(line.startswith("units sent") for line in shown)
    answer = json.loads(cli(env, "review", "rehearse", "--generate", str(spec), "--units",
                            str(fleet), "--variant", f"units={fleet}", "--json").stdout)
    assert [o["variant"] for o in answer] == ["baseline", "variant 1"]
    for outcome in answer:
        assert set(outcome) == {"variant", "evaluation"}
        typed(outcome["evaluation"], review_pb2.IncidentsEvaluation.DESCRIPTOR)
        assert outcome["evaluation"]["incidents"] == 6  # a count is a number


# ---- monitor inbox --follow ----


def test_inbox_follow_prints_what_waits_then_each_change_as_it_comes(
        env: dict[str, str]) -> None:
    cli(env, "monitor", "load-grid", str(ROOT / "grids" / "xuhui.toml"))
    sensor = f"cli-stadium-{tag()}"
    cli(env, "monitor", "register", sensor, "--kind", "water_level", "--hazard",
        "urban_flooding", "--lat", "31.1830", "--lon", "121.4370", "--unit", "m",
        "--thresholds", "0.2", "0.4", "0.6", "0.8", "--on-delay", "0s")
    warning = as_json(env, "monitor", "read", sensor, "0.9",
                      message=monitor_pb2.IngestReadingsResponse)["warnings"][0]["id"]
    party = "chen-hao"  # the Shanghai Stadium cell's grid officer
    wait_until(lambda: any(n["warningId"] == warning for n in json.loads(cli(
        env, "monitor", "inbox", "--party", party, "--json").stdout)),
        "the stadium's warning in its officer's inbox")

    started = [subprocess.Popen(
        [str(BIN / "lifeline-monitor"), "inbox", "--party", party, "--follow", *form],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for form in (("--ndjson",), ())]
    try:
        ndjson, people = (Lines(p) for p in started)
        first = ndjson.until(lambda m: True, "the inbox's first line")
        typed(first, monitor_pb2.PartyNotification.DESCRIPTOR)
        assert (first["warningId"], first["party"]) == (warning, party)
        assert first["status"] == "NOTIFICATION_STATUS_WAITING"
        header = people.until(lambda line: True, "the inbox table", parse=False)
        assert header.split()[:2] == ["WARNING", "LEVEL"]
        row = people.until(lambda line: warning in line, "the warning's row", parse=False)
        assert row.split()[1:3] == ["RED", "Shanghai"] and row.split()[-1] == "waiting"

        cli(env, "monitor", "ack", warning)
        acked = ndjson.until(lambda m: m["warningId"] == warning and m["status"] ==
                             "NOTIFICATION_STATUS_ACKNOWLEDGED", "the acknowledgement")
        typed(acked, monitor_pb2.PartyNotification.DESCRIPTOR)
        line = people.until(lambda text: "acknowledged" in text,
                            "the acknowledgement as a line", parse=False)
        assert line.startswith(f"{warning}  RED  Shanghai Stadium")
        assert line.rstrip().endswith("acknowledged by cli-tester")
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=30)


# ---- parked messages: retried and discarded (last: it leaves poison in the streams) ----


def test_a_parked_message_is_retried_and_discarded_as_tables_and_json(
        env: dict[str, str], stack: Stack) -> None:
    """Two undecodable messages of one incident, as if dispatch had published them: review
    and monitor each park both. Review's parking is handled as tables, monitor's as JSON;
    dispatch and resources refuse a parking they do not hold."""
    poisoned = str(uuid.uuid4())

    publish_undecodable(stack, poisoned)

    def parking(service: str) -> str | None:
        found = json.loads(cli(env, service, "parked", "--json").stdout)
        mine = [p for p in found if p["upstreamAggregateId"] == poisoned]
        return mine[0]["id"] if mine and [m["version"] for m in mine[0]["waiting"]] == [
            1, 2] else None

    held = wait_until(lambda: parking("review"), "review to park both messages", 60)
    listed = table(env, "review", "parked")
    assert any(held in line and "DecodeError" in line for line in listed), listed
    retried = table(env, "review", "retry-parked", held)
    assert retried[0].startswith("applied 0; 2 still parked (") and "DecodeError" in retried[0]
    assert table(env, "review", "discard-parked", held, "--reason", "forged") == [
        "discarded version 1; 1 still parked"]
    assert table(env, "review", "discard-parked", held) == [
        "discarded version 2; 0 still parked"]
    assert poisoned not in cli(env, "review", "parked").stdout

    held = wait_until(lambda: parking("monitor"), "monitor to park both messages", 60)
    again = as_json(env, "monitor", "retry-parked", held,
                    message=parking_pb2.RetryParkedResponse)
    assert again["applied"] == 0 and [m["version"] for m in again["parking"]["waiting"]] == [
        1, 2]
    for version, left in ((1, 1), (2, 0)):
        dropped = as_json(env, "monitor", "discard-parked", held, "--reason", "forged",
                          message=parking_pb2.DiscardParkedResponse)
        assert dropped["discardedVersion"] == version
        assert len(dropped["parking"]["waiting"]) == left

    unknown = str(uuid.uuid4())
    for service in ("dispatch", "resources"):
        for args in (("retry-parked", unknown), ("discard-parked", unknown, "--json")):
            done = cli(env, service, *args, ok=False)
            assert done.returncode == 1 and done.stdout == ""
            assert done.stderr.splitlines() == [
                f"lifeline-{service}: not_found: parking {unknown!r} not found"]
