"""The breaking-change check of the contracts bites: `make lint` runs it against the
committed image of the published contracts (contracts/published.binpb)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUF = ROOT / ".venv" / "bin" / "buf"
IMAGE = ROOT / "contracts" / "published.binpb"


def _breaking(proto_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "breaking", "--against", str(IMAGE)],
        cwd=proto_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def proto_copy(tmp_path: Path) -> Path:
    if not BUF.exists():
        pytest.skip("buf is installed by `make setup`")
    target = tmp_path / "proto"
    shutil.copytree(ROOT / "proto", target)
    return target


def test_the_contracts_match_the_published_image(proto_copy: Path) -> None:
    result = _breaking(proto_copy)
    assert result.returncode == 0, result.stdout + result.stderr


def test_removing_a_published_field_is_refused(proto_copy: Path) -> None:
    chat = proto_copy / "procall" / "api" / "chat" / "v1" / "chat.proto"
    text = chat.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    # drop the first field of the first message: a published field disappears
    index = next(i for i, line in enumerate(lines) if line.strip().startswith("string "))
    del lines[index]
    chat.write_text("".join(lines), encoding="utf-8")
    result = _breaking(proto_copy)
    assert result.returncode != 0
    assert "chat.proto" in result.stdout + result.stderr


def test_adding_a_field_is_not_breaking(proto_copy: Path) -> None:
    chat = proto_copy / "procall" / "api" / "chat" / "v1" / "chat.proto"
    text = chat.read_text(encoding="utf-8")
    head, sep, tail = text.rpartition("}")
    chat.write_text(head + "  // A field added later.\n  string added_later = 999;\n" + sep + tail)
    result = _breaking(proto_copy)
    assert result.returncode == 0, result.stdout + result.stderr
