"""Generate the Python code of the protobuf contracts.

Usage: ``python scripts/gen_protos.py [--out DIR] [--check]``.

The contracts live under ``proto/``; their import paths (``procall/api/...``,
``procall/mesh/...``) become Python packages of the same name, written into the
repository root so that ``procall.api.chat.v1.chat_pb2`` imports directly. With
``--check`` the code is generated into a temporary directory and compared with
the committed files; any drift fails with the list of differing files.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GENERATED_PACKAGES = ("procall/api", "procall/mesh")
INIT_TEXT = '"""Generated protobuf code; do not edit (run `make proto`)."""\n'


def _proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))


def generate(out: Path) -> None:
    """Run protoc (grpcio-tools) over every contract, writing Python into ``out``."""
    bin_dir = Path(sys.executable).parent
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        *_proto_files(),
    ]
    subprocess.run(cmd, check=True)
    for package in GENERATED_PACKAGES:
        for directory in [out / package, *(p for p in (out / package).rglob("*") if p.is_dir())]:
            (directory / "__init__.py").write_text(INIT_TEXT)


def _files(base: Path) -> set[str]:
    found: set[str] = set()
    for package in GENERATED_PACKAGES:
        root = base / package
        if root.exists():
            found |= {
                str(p.relative_to(base))
                for p in root.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts
            }
    return found


def check() -> int:
    """Regenerate into a temporary directory and report drift from the committed code."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        expected, actual = _files(fresh), _files(ROOT)
        drift = sorted(expected ^ actual)
        drift += sorted(
            name
            for name in expected & actual
            if not filecmp.cmp(fresh / name, ROOT / name, shallow=False)
        )
    if drift:
        print("generated code is out of date (run `make proto`):", file=sys.stderr)
        for name in drift:
            print(f"  {name}", file=sys.stderr)
        return 1
    print("generated code is up to date")
    return 0


def main() -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if committed code drifted")
    args = parser.parse_args()
    if args.check:
        return check()
    for package in GENERATED_PACKAGES:
        shutil.rmtree(ROOT / package, ignore_errors=True)
    generate(ROOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
