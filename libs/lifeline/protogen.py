"""Generate the Python stubs for protos/ (run as `make proto`).

The stubs are committed so that installing Lifeline needs no protoc; a unit test
regenerates them into a temporary folder and fails when they differ from the committed ones.
"""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"


def proto_files() -> list[Path]:
    return sorted(PROTOS.rglob("*.proto"))


def generate(out_dir: Path) -> list[Path]:
    """Write *_pb2.py, *_pb2.pyi and *_pb2_grpc.py for every proto under out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    plugin = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
    ]
    if plugin:
        args += [f"--plugin=protoc-gen-mypy={plugin}", f"--mypy_out={out_dir}"]
    args += [str(p.relative_to(PROTOS)) for p in proto_files()]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the message above")
    # Every folder on the way needs an __init__.py to be importable as a package.
    for proto in proto_files():
        folder = out_dir / proto.relative_to(PROTOS).parent
        while folder != out_dir:
            (folder / "__init__.py").touch()
            folder = folder.parent
    return sorted(p for p in out_dir.rglob("*_pb2*.py*"))


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "libs"
    written = generate(out)
    print(f"generated {len(written)} files under {out}")


if __name__ == "__main__":
    main()
