"""The local control plane's audit policy: only the operator namespace's writes and reads
are logged."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from stackforge_operator.devcluster.cluster import audit_policy_document, run_kubectl


def test_audit_policy_logs_only_writes_and_reads_by_the_operator_namespace() -> None:
    rules = audit_policy_document()["rules"]
    assert rules == [
        # Its writes of its own resources with what they wrote (a test that finds
        # one it did not expect says what it was).
        {"level": "Request", "userGroups": ["system:serviceaccounts:stackforge-system"],
         "verbs": ["create", "update", "patch", "delete", "deletecollection"],
         "resources": [{"group": "stackforge.io"}]},
        {"level": "Metadata", "userGroups": ["system:serviceaccounts:stackforge-system"],
         "verbs": ["create", "update", "patch", "delete", "deletecollection", "get", "list"]},
        # Everything else (watches, controllers, kwok's heartbeats): not logged.
        {"level": "None"},
    ]


def test_kubectl_keeps_its_discovery_cache_in_the_runs_directory(tmp_path: Path) -> None:
    # The default, ~/.kube/cache, gains a directory per host:port, and every
    # local cluster has a new port: it grew without end.
    binary = tmp_path / "controlplane"
    binary.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    binary.chmod(0o755)
    kubeconfig = tmp_path / "run" / "admin.kubeconfig"
    ran = run_kubectl(binary, kubeconfig, ["get", "pods"])
    cache = tmp_path / "run" / "kubectl-cache"
    assert ran.stdout.splitlines() == [
        "kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}", "get", "pods"]


def test_a_ctrl_c_during_the_clusters_stop_waits_until_the_host_is_back() -> None:
    """A second Ctrl-C cut stop() short between stopping the node and restoring
    the host: the host stayed changed. Now it acts once the block is done."""
    from stackforge_operator.devcluster.cluster import _signals_held

    finished = False
    # Python's own Ctrl-C (a run in the background may have inherited it ignored).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), _signals_held():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.1)  # delivered meanwhile: held, not raised
            finished = True
    finally:
        signal.signal(signal.SIGINT, previous)
    assert finished


def test_a_killed_runs_etcd_data_is_swept_and_a_live_ones_is_kept(tmp_path: Path) -> None:
    """etcd's data lives in RAM (/dev/shm) and only stop() removed it: every
    killed session left its clusters' data there for good. A live cluster's
    stays even while its etcd is down (the chaos tests kill it for a while)."""
    import subprocess
    import sys

    from stackforge_operator.devcluster.cluster import (
        etcd_dir_prefix,
        sweep_abandoned_etcd_dirs,
    )

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        abandoned = tmp_path / f"{etcd_dir_prefix(gone.pid)}abc"
        in_use = tmp_path / f"{etcd_dir_prefix(alive.pid)}def"
        own = tmp_path / f"{etcd_dir_prefix(os.getpid())}ghi"
        for directory in (abandoned, in_use, own):
            (directory / "member").mkdir(parents=True)
        assert sweep_abandoned_etcd_dirs(tmp_path) == [abandoned]
    finally:
        alive.kill()
        alive.wait()
    assert not abandoned.exists() and in_use.exists() and own.exists()


def test_a_signal_ignored_before_the_clusters_stop_stays_ignored_in_it() -> None:
    """dev's teardown ignores SIGINT: held instead, the restore's own programs
    (iptables-restore, umount), started meanwhile, took a Ctrl-C's default."""
    from stackforge_operator.devcluster.cluster import _signals_held

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _signals_held():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) != signal.SIG_DFL  # held
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_restarted_kubelet_that_exits_at_once_is_started_again_until_it_stays(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """containerd answers on its socket a moment before its CRI serves; a kubelet
    restarted then exits ("server is not initialized yet"), and the node stayed
    NotReady for good (a CI run's every later real-node test failed)."""
    import sys

    from stackforge_operator.devcluster import cluster
    from stackforge_operator.devcluster.processes import ManagedProcess

    monkeypatch.setattr(cluster, "SETTLE_SECONDS", 1.0)
    marker = tmp_path / "tried"
    program = ("import pathlib, sys, time\n"
               f"m = pathlib.Path({str(marker)!r})\n"
               "if not m.exists():\n"
               "    m.write_text('x'); sys.exit(1)  # the runtime is not serving yet\n"
               "time.sleep(60)\n")
    kubelet = ManagedProcess("kubelet", [sys.executable, "-c", program], tmp_path / "k.log")
    kubelet.start()
    told: list[str] = []
    try:
        cluster.keep_running(kubelet, time.monotonic() + 20, log=told.append)
        assert kubelet.running()
        assert told == ["kubelet exited at start-up; starting it again"]
    finally:
        kubelet.stop(timeout=5)
    never = ManagedProcess("kubelet", [sys.executable, "-c", "raise SystemExit(1)"],
                           tmp_path / "never.log")
    never.start()
    with pytest.raises(cluster.ControlPlaneError, match="kept exiting"):
        cluster.keep_running(never, time.monotonic() + 3)
