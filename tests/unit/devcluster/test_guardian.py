"""The guardian's decision (devcluster/node/guardian.py): released, it touches
nothing; at end-of-file (its launcher gone), it restores the host as recorded.
The restore itself runs for real in tests/host/test_node_killed.py."""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any

import pytest

from stackforge_operator.devcluster.node import guardian, hoststate

BEFORE = hoststate.HostState(
    sysctls={"kernel.panic": "0"}, nft_tables={}, iptables_saves={}, links=frozenset(),
    ipsets=frozenset(), netns=frozenset(), mounts=(), cgroups=frozenset(), directories={},
    node_processes=frozenset())


def _stream(tail: bytes) -> io.BytesIO:
    state = pickle.dumps((BEFORE, "/run/x/node"))
    return io.BytesIO(struct.pack(">Q", len(state)) + state + tail)


@pytest.fixture
def restores(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    done: list[tuple[Any, ...]] = []

    def restore(*args: Any) -> list[str]:
        done.append(("restore", *args))
        return ["sysctl kernel.panic"]

    monkeypatch.setattr(hoststate, "kill_node_processes", lambda *a: done.append(("kill", *a)))
    monkeypatch.setattr(hoststate, "restore", restore)
    return done


def test_released_it_touches_nothing(restores: list[tuple[Any, ...]]) -> None:
    assert guardian.guard(_stream(guardian.RELEASED), io.StringIO()) is None
    assert restores == []


def test_its_launcher_gone_it_restores_the_recorded_host_and_says_what_differs(
        restores: list[tuple[Any, ...]]) -> None:
    log = io.StringIO()
    assert guardian.guard(_stream(b""), log) == ["sysctl kernel.panic"]
    assert restores == [("restore", BEFORE, "/run/x/node")]
    assert "host not restored: sysctl kernel.panic" in log.getvalue()


def test_a_launcher_gone_before_it_sent_the_state_leaves_nothing_to_do(
        restores: list[tuple[Any, ...]]) -> None:
    state = pickle.dumps((BEFORE, "/run/x/node"))
    cut = struct.pack(">Q", len(state)) + state[:10]
    assert guardian.guard(io.BytesIO(cut), io.StringIO()) is None
    assert restores == []


def test_the_host_lock_is_held_until_the_launcher_and_its_guardian_let_go(
        tmp_path: Any) -> None:
    """A node started while a killed one's guardian restored the host recorded the
    leftovers as the host's own, and had its own rules wiped by that restore."""
    import os
    import subprocess
    import sys

    lock = tmp_path / "realnode.lock"
    held = guardian.hold_host(lock)
    # The guardian's copy of the descriptor keeps it after the launcher's goes.
    keeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                              pass_fds=(held,))
    os.close(held)
    try:
        with pytest.raises(guardian.HostBusyError, match="being restored by its guardian"):
            guardian.hold_host(lock)
    finally:
        keeper.kill()
        keeper.wait()
    os.close(guardian.hold_host(lock))
