"""The layer contracts (.importlinter, drawn in libs/README.md) hold, and they have teeth: a
copy of the code with a kernel module importing gRPC, a service importing the developer
tooling and an adapter importing the runtime breaks exactly the contracts that forbid it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"
LINT = str(Path(sys.executable).parent / "lint-imports")
PACKAGES = {"lifeline": ROOT / "libs" / "lifeline",
            **{f"lifeline_{s}": ROOT / "services" / s / f"lifeline_{s}"
               for s in ("monitor", "dispatch", "resources", "review")}}


def lint(path: Path | None = None) -> tuple[int, dict[str, str]]:
    """lint-imports' exit status and each contract's verdict (KEPT or BROKEN), by name;
    with path, on the copy of the packages there."""
    env = {**os.environ, "COLUMNS": "200"}  # a contract's verdict on its name's line
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    done = subprocess.run([LINT, "--config", str(CONFIG), "--no-cache"], cwd=path or ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    verdicts = dict(re.findall(r"^(.+?) (KEPT|BROKEN)\b", done.stdout, re.M))
    return done.returncode, verdicts


def contract_names() -> list[str]:
    return re.findall(r"^name = (.+)$", CONFIG.read_text(), re.M)


def test_every_contract_is_kept() -> None:
    code, verdicts = lint()
    assert verdicts == {name: "KEPT" for name in contract_names()}
    assert code == 0


def test_a_broken_contract_fails_the_check(tmp_path: Path) -> None:
    for name, source in PACKAGES.items():
        shutil.copytree(source, tmp_path / name,
                        ignore=shutil.ignore_patterns("__pycache__", "shipped"))
    with (tmp_path / "lifeline" / "clock.py").open("a") as kernel:
        kernel.write("\nimport grpc  # noqa\n")
    with (tmp_path / "lifeline_review" / "cli.py").open("a") as service:
        service.write("\nimport lifeline.devstack  # noqa\n")
    with (tmp_path / "lifeline" / "views.py").open("a") as adapter:
        adapter.write("\nimport lifeline.runtime  # noqa\n")
    code, verdicts = lint(tmp_path)
    assert code != 0
    broken = {name for name, verdict in verdicts.items() if verdict == "BROKEN"}
    assert broken == {
        "The domain kernel imports no gRPC, NATS, PostgreSQL or OpenTelemetry",
        "No service imports the developer tooling",
        "Floors: a module imports only its own floor and the floors below",
        "No import cycle in libs/lifeline",
    }
