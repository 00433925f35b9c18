"""The four operator CLIs as people run them: console scripts in subprocesses, talking to a
running stack found through LIFELINE_<SERVICE>_ADDR."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from lifeline.devstack import Stack, free_port
from lifeline.identity.dev import LOCAL_USER_ROLES
from lifeline.scenario import wait_until

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


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
    return values


def cli(env: dict[str, str], service: str, *args: str, ok: bool = True
        ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([str(BIN / f"lifeline-{service}"), *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    if ok:
        assert done.returncode == 0, f"lifeline-{service} {args}: {done.stderr}"
    return done


def tag() -> str:
    return uuid.uuid4().hex[:8]


def register_sensor(env: dict[str, str], sensor_id: str, *extra: str,
                    thresholds: tuple[str, ...] = ("0.2", "0.4", "0.6", "0.8"),
                    ok: bool = True) -> subprocess.CompletedProcess[str]:
    return cli(env, "monitor", *extra, "register", sensor_id, "--kind", "water_level",
               "--hazard", "urban_flooding", "--lat", "31.2304", "--lon", "121.4737",
               "--unit", "m", "--thresholds", *thresholds, ok=ok)


def test_sensors_as_a_table_and_as_json(env: dict[str, str]) -> None:
    sensor_id = f"cli-gauge-{tag()}"
    registered = register_sensor(env, sensor_id)
    assert sensor_id in registered.stdout

    table = cli(env, "monitor", "sensors").stdout.splitlines()
    header = table[0]
    assert "ID" in header and "THRESHOLDS" in header
    row = next(line for line in table[1:] if line.startswith(sensor_id))
    assert "0.2/0.4/0.6/0.8" in row and "NONE" in row

    for args in (("--json", "sensors"), ("sensors", "--json")):
        records = json.loads(cli(env, "monitor", *args).stdout)
        assert isinstance(records, list)
        mine = [r for r in records if r["id"] == sensor_id]
        assert len(mine) == 1, args
        assert mine[0]["hazard"] == "urban_flooding"

    shown = json.loads(cli(env, "monitor", "sensor", sensor_id, "--json").stdout)
    assert shown["id"] == sensor_id
    assert shown["direction"] == "DIRECTION_HIGHER_IS_WORSE"


def test_a_refused_request_is_one_clear_line_and_exit_1(env: dict[str, str]) -> None:
    sensor_id = f"cli-bad-{tag()}"
    done = register_sensor(env, sensor_id, thresholds=("0.8", "0.6", "0.4", "0.2"), ok=False)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("lifeline-monitor: invalid_argument:"), lines
    assert "thresholds" in lines[0]
    assert "Traceback" not in done.stderr
    assert done.stdout == ""

    missing = cli(env, "monitor", "sensor", sensor_id, ok=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"lifeline-monitor: not_found: sensor {sensor_id!r} not found"]

    twice = f"cli-twice-{tag()}"
    register_sensor(env, twice)
    again = register_sensor(env, twice, ok=False)
    assert again.returncode == 1
    assert again.stderr.startswith("lifeline-monitor: already_exists:")
    assert "Traceback" not in again.stderr


def test_an_unreachable_service_says_so(env: dict[str, str]) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    for args in (("--addr", nowhere, "sensors"), ("sensors", "--addr", nowhere)):
        done = cli(env, "monitor", *args, ok=False)
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("lifeline-monitor: unavailable: cannot reach "
                                   f"lifeline-monitor at {nowhere}"), lines
        assert "Traceback" not in done.stderr

    unset = {k: v for k, v in env.items() if k != "LIFELINE_DISPATCH_ADDR"}
    done = cli(unset, "dispatch", "incidents", ok=False)
    assert done.returncode != 0
    assert "no address" in done.stderr and "LIFELINE_DISPATCH_ADDR" in done.stderr
    assert "Traceback" not in done.stderr


def test_report_declare_show_and_replay(env: dict[str, str]) -> None:
    description = f"underpass flooded {tag()}"
    reported = json.loads(cli(env, "dispatch", "--json", "report", "urban_flooding",
                              "--lat", "31.2304", "--lon", "121.4737",
                              "--description", description).stdout)
    incident_id = reported["id"]
    assert reported["state"] == "INCIDENT_STATE_WARNING"
    assert reported["reporter"] == "cli-tester"  # the acting user reported it

    declared = cli(env, "dispatch", "declare", incident_id, "--category", "natural_disaster",
                   "--type", "urban_flooding", "--grade", "iii", "--reason", "water rising")
    header, *rows = declared.stdout.splitlines()
    assert header.split()[:3] == ["ID", "STATE", "HAZARD"]
    assert rows[0].startswith(incident_id) and "urban_flooding" in rows[0]

    shown = json.loads(cli(env, "dispatch", "incident", incident_id, "--json").stdout)
    assert shown["id"] == incident_id
    assert shown["state"] in ("INCIDENT_STATE_DECLARED", "INCIDENT_STATE_RESPONDING")
    assert shown["grade"] == "GRADE_III"
    assert shown["description"] == description
    listed = json.loads(cli(env, "dispatch", "incidents", "--json").stdout)
    assert incident_id in {i["id"] for i in listed}

    refused = cli(env, "dispatch", "dismiss", incident_id, ok=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith("lifeline-dispatch: failed_precondition: "
                                     "dismiss-from-warning:"), refused.stderr

    def replayed() -> str | None:
        done = cli(env, "review", "replay", incident_id, ok=False)
        if done.returncode == 0 and "declared" in done.stdout:
            return done.stdout
        assert done.returncode == 0 or "not_found" in done.stderr, done.stderr
        return None

    replay = wait_until(replayed, "review to keep the declared incident").splitlines()
    assert replay[0].count("STATE AFTER") == 1
    assert replay[0].split()[:2] == ["#", "FIELD"]
    assert replay[1].split()[:1] == ["1"] and "reported" in replay[1]
    assert "cli-tester" in replay[1] and replay[1].rstrip().endswith("WARNING")
    declared_row = next(line for line in replay if " declared " in line)
    assert "DECLARED" in declared_row

    history = cli(env, "review", "history", "export", incident_id).stdout.splitlines()
    events = [json.loads(line) for line in history]
    assert "reported" in events[0] and "declared" in events[1]
    assert events[0]["reported"]["meta"]["actor"] == "cli-tester"
    evaluation = cli(env, "review", "evaluate", incident_id).stdout
    assert "MEASURE" in evaluation and "warning -> declared" in evaluation


def test_help_lists_the_commands() -> None:
    done = subprocess.run([str(BIN / "lifeline-dispatch"), "--help"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "report", "declare", "dismiss", "contain", "recover",
                    "recovered", "close", "incident", "incidents"):
        assert command in done.stdout, command
    for service in ("monitor", "resources", "review"):
        shown = subprocess.run([str(BIN / f"lifeline-{service}"), "--help"],
                               capture_output=True, text=True, timeout=60, check=False)
        assert shown.returncode == 0 and f"lifeline-{service}" in shown.stdout
