from __future__ import annotations

import os
from pathlib import Path

import pytest

from stackforge_operator.devcluster import binary


def _touch(path: Path, mtime: float) -> None:
    path.write_text("x")
    os.utime(path, (mtime, mtime))


def test_missing_binary_is_stale(tmp_path: Path) -> None:
    _touch(tmp_path / "main.go", 1000)
    assert binary.is_stale(tmp_path / "bin" / "controlplane", tmp_path)


def test_binary_older_than_any_source_is_stale(tmp_path: Path) -> None:
    built = tmp_path / "controlplane"
    _touch(built, 2000)
    _touch(tmp_path / "main.go", 1000)
    _touch(tmp_path / "go.sum", 1000)
    assert not binary.is_stale(built, tmp_path)
    _touch(tmp_path / "go.mod", 3000)
    assert binary.is_stale(built, tmp_path)


def test_binary_without_sources_is_used_as_is(tmp_path: Path) -> None:
    built = tmp_path / "controlplane"
    _touch(built, 1000)
    assert not binary.is_stale(built, tmp_path / "no-module-here")


def test_environment_overrides_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(binary.BINARY_ENV, str(tmp_path / "cp"))
    monkeypatch.setenv(binary.MODULE_ENV, str(tmp_path / "module"))
    assert binary.default_binary_path() == tmp_path / "cp"
    assert binary.module_dir() == tmp_path / "module"


def test_default_module_is_the_repository_go_module() -> None:
    assert (binary.module_dir() / "go.mod").read_text().startswith("module ")


def test_missing_binary_without_module_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(binary.MODULE_ENV, str(tmp_path / "absent"))
    with pytest.raises(binary.ControlPlaneBuildError, match="no Go module"):
        binary.ensure_binary(tmp_path / "controlplane", log=False)
