from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from stackforge_operator.devcluster import binary, build_cache


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv(build_cache.CACHE_ENV, str(root))
    return root


def test_keys_change_with_any_input_and_its_boundaries() -> None:
    assert build_cache.key(["a", "b"]) == build_cache.key(["a", b"b"])
    assert build_cache.key(["ab", "c"]) != build_cache.key(["a", "bc"])
    assert build_cache.key(["go1.26.0", "x"]) != build_cache.key(["go1.26.1", "x"])


def test_a_stored_program_is_fetched_whole_and_replaces_older_builds(
        tmp_path: Path, cache: Path) -> None:
    built = tmp_path / "built"
    built.write_bytes(b"\x7fELF program")
    built.chmod(0o755)
    assert not build_cache.fetch("k1", "prog", tmp_path / "out" / "prog")
    build_cache.store("k1", "prog", built)
    build_cache.store("k1", "other", built)
    assert build_cache.fetch("k1", "prog", tmp_path / "out" / "prog")
    fetched = tmp_path / "out" / "prog"
    assert fetched.read_bytes() == b"\x7fELF program"
    assert fetched.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["prog"]  # no partial file
    # A new build of the same program takes the old one's place; others stay.
    build_cache.store("k2", "prog", built)
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()) == [
        "k1/other", "k2/prog"]


def test_a_fresh_clone_takes_the_control_plane_from_the_cache_without_building(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    go = shutil.which("go")
    # .ci/run requires Go (it builds the control plane); the key names its version.
    assert go is not None, "the Go toolchain is not on the PATH"
    module = tmp_path / "module"
    module.mkdir()
    # Not a buildable module: a build attempt would fail the test.
    (module / "main.go").write_text("package main\nthis does not compile\n")
    (module / "go.mod").write_text("module example.test/cp\n")
    monkeypatch.setenv(binary.MODULE_ENV, str(module))
    program = tmp_path / "prebuilt"
    program.write_bytes(b"cached control plane")
    build_cache.store(binary.cache_key(module, go), "controlplane", program)

    target = tmp_path / "clone" / "bin" / "controlplane"
    assert binary.ensure_binary(target, log=False) == target
    assert target.read_bytes() == b"cached control plane"
    assert not binary.is_stale(target, module)
    # Another source is another key: that one is built (and here fails).
    (module / "main.go").write_text("package main\nstill not compiling\n")
    target.unlink()
    with pytest.raises(binary.ControlPlaneBuildError):
        binary.ensure_binary(target, log=False)
