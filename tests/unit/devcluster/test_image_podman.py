"""The image builder's private podman configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from stackforge_operator.devcluster import images
from stackforge_operator.devcluster.image_podman import Podman


def test_configuration_stays_in_the_cache(tmp_path: Path) -> None:
    # Any binary on PATH will do: nothing runs it here.
    podman = Podman(tmp_path, binary="sh")
    podman.prepare()
    env = podman.env()
    for variable in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
        assert Path(env[variable]).is_file()
        assert Path(env[variable]).is_relative_to(tmp_path)
    containers = Path(env["CONTAINERS_CONF"]).read_text()
    for setting in ('default_ulimits = []', 'runtime = "runc"', 'cgroup_manager = "cgroupfs"',
                    'events_logger = "file"', f'tmp_dir = "{tmp_path}/run/libpod"'):
        assert setting in containers
    assert f'graphroot = "{tmp_path}/storage"' in Path(env["CONTAINERS_STORAGE_CONF"]).read_text()
    registries = Path(env["CONTAINERS_REGISTRIES_CONF"]).read_text()
    assert "unqualified-search-registries = []" in registries
    assert podman.command("images")[:5] == [
        "sh", "--root", f"{tmp_path}/storage", "--runroot", f"{tmp_path}/run",
    ]  # fmt: skip

    before = {p: p.stat().st_mtime_ns for p in podman.config_dir.iterdir()}
    podman.prepare()
    assert {p: p.stat().st_mtime_ns for p in podman.config_dir.iterdir()} == before


def test_missing_podman_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(images.ImageBuildError, match="apt-get install podman"):
        Podman(tmp_path, binary="no-such-podman").prepare()


def test_cache_dir_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(images.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert images.default_cache_dir() == tmp_path / "xdg" / "stackforge" / "images"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert images.default_cache_dir() == tmp_path / "home" / ".cache" / "stackforge" / "images"
    monkeypatch.setenv(images.CACHE_ENV, str(tmp_path / "mine"))
    assert images.default_cache_dir() == tmp_path / "mine"
