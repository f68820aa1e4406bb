"""Atomic writes: a failure never leaves a finished-looking output."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.atomic import atomic_write, atomic_write_text, staged_directory


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")

    def boom(handle: object) -> None:
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_staged_directory_replaces_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_directory(target) as staging:
        (staging / "one").write_text("1")
    with staged_directory(target) as staging:
        (staging / "two").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["two"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_clear_first_removes_stale_output_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with staged_directory(target) as staging:
        (staging / "stale").write_text("old result")
    with pytest.raises(RuntimeError), staged_directory(target, clear_first=True):
        raise RuntimeError("stage failed")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
