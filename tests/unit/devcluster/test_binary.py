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


def test_the_kwok_module_is_fetched_when_the_module_cache_lacks_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A control-plane binary up to date from the build cache needs no module
    source, but the kwok stages are read from kwok's: with a module cache that
    lacks it, `go list` named no directory and the cluster could not start."""
    import shutil
    import subprocess

    if shutil.which("go") is None:
        pytest.fail("the Go toolchain is needed (.ci/run checks for it)")
    real_cache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                                check=True).stdout.strip()
    proxy = Path(real_cache) / "cache" / "download"
    if not (proxy / "sigs.k8s.io" / "kwok").is_dir():
        binary.kwok_source_dir()  # fills the real cache (from the proxy) first
    # An empty module cache, fed from the real one's downloads: no network.
    empty = tmp_path / "modcache"
    monkeypatch.setenv("GOMODCACHE", str(empty))
    monkeypatch.setenv("GOPROXY", f"file://{proxy}")
    monkeypatch.setenv("GONOSUMDB", "*")
    try:
        found = binary.kwok_source_dir()
        assert found.is_relative_to(empty), found
        assert (found / "kustomize" / "stage").is_dir(), found
    finally:
        # Go makes its module cache read-only.
        subprocess.run(["chmod", "-R", "u+w", str(empty)], check=False)
        shutil.rmtree(empty, ignore_errors=True)
