"""Session-wide cluster, per-test namespaces, and the operator in two forms."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from stackforge_operator.devcluster import LocalCluster
from stackforge_operator.devcluster.binary import default_binary_path
from stackforge_operator.devcluster.operator_process import OperatorProcess
from stackforge_operator.devcluster.ports import free_port
from stackforge_operator.devcluster.processes import processes_mentioning
from tests.support import crds, durations, operator_identity
from tests.support.clusters import (
    PROVIDERS,
    ClusterHandle,
    kind_handle,
    kubeconfig_handle,
    local_handle,
)

_startup_report: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stackforge")
    group.addoption(
        "--cluster-provider",
        choices=PROVIDERS,
        default=os.environ.get("STACKFORGE_CLUSTER_PROVIDER", "local"),
        help="where cluster tests run: the built local control plane (default), "
        "kind (needs Docker and pytest-kind), or an existing --kubeconfig",
    )
    group.addoption(
        "--kubeconfig", default=None, help="kubeconfig for --cluster-provider=kubeconfig"
    )


# Tests that start a real node, judge the host's state, or run podman containers (whose
# mounts the host-state check would see): with `-n 2`, one worker runs all of them, one
# after another in collection order (dev's own nodes, then the host checks, then the
# images, then the session's real node), while the other runs the rest, module by module.
HOST_GLOBAL = (
    "tests/cluster/test_localrun.py::test_dev_shows_the_example_tenant_ready_on_running_pods",
    # podman's containers and builds (mounts, cgroups); the other image tests run
    # host programs only (PostgreSQL servers on loopback, shell scripts).
    "tests/host/", "tests/images/test_images.py", "tests/realnode/")
# Last of them: it kills the real-node cluster's API server and etcd, and after an
# etcd restart the test cluster's own controllers have been seen silent for minutes
# (docs/reliability.md); whatever it leaves broken then breaks no other test.
HOST_GLOBAL_LAST = "tests/realnode/test_control_plane_outage.py"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        # The main process names the kubectl tally (read at the summary); the
        # workers it starts next inherit the name.
        tally = Path(tempfile.mkdtemp(prefix="stackforge-kubectl-")) / "calls"
        os.environ[durations.KUBECTL_TALLY_ENV] = str(tally)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's module-by-module scheduling, with the host-global tests as one unit.

    (Not `--dist loadgroup`: its group marks are applied by renaming test ids, which
    this pytest ignores; the groups silently split.)
    """
    # pytest-xdist ships no type information.
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    # Units in collection order (the host-global one first: see modifyitems), not
    # largest first.
    config.option.loadscopereorder = False

    class HostGlobalFirst(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(HOST_GLOBAL):
                return "host-global"
            scope: str = super()._split_scope(nodeid)
            return scope

    return HostGlobalFirst(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in item.nodeid:
            item.add_marker(pytest.mark.cluster)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # The host-global tests are the longest chain: first in the queue, so that
        # one worker starts on them at once while the other takes everything else.
        # (A stable sort: their own order stays.)
        items.sort(key=lambda item: (not item.nodeid.startswith(HOST_GLOBAL),
                                     item.nodeid.startswith(HOST_GLOBAL_LAST)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _startup_report:
        terminalreporter.write_line(line)
    # The chaos tests' figures (record_property("chaos", ...)): workers' too.
    figures = [f"{report.nodeid}: {value}"
               for report in terminalreporter.stats.get("passed", [])
               for key, value in getattr(report, "user_properties", []) if key == "chaos"]
    if figures:
        terminalreporter.write_sep("=", "chaos figures")
        for line in figures:
            terminalreporter.write_line(line)
    spent = durations.summary(report for reports in terminalreporter.stats.values()
                              for report in reports)
    tally = os.environ.get(durations.KUBECTL_TALLY_ENV)
    kubectl = durations.kubectl_summary(Path(tally)) if tally else None
    if spent:
        terminalreporter.write_sep("=", "seconds per worker and per part of the suite")
        for line in [*spent, *([kubectl] if kubectl else [])]:
            terminalreporter.write_line(line)
    if tally and not hasattr(terminalreporter.config, "workerinput"):
        # The main process's, once every worker is done with it.
        shutil.rmtree(Path(tally).parent, ignore_errors=True)


def _kind_cluster(request: pytest.FixtureRequest) -> ClusterHandle:
    if shutil.which("docker") is None or not Path("/var/run/docker.sock").exists():
        pytest.skip("cluster provider 'kind' needs a running Docker engine; none here")
    try:
        # An optional extra ('.[kind]'): missing where not installed, untyped where it is.
        import pytest_kind  # type: ignore[import-not-found, import-untyped, unused-ignore]  # noqa: F401
    except ImportError:
        pytest.skip("cluster provider 'kind' needs pytest-kind (pip install '.[kind]')")
    kind = request.getfixturevalue("kind_cluster")
    return kind_handle(Path(kind.kubeconfig_path), [str(kind.kubectl_path)])


@pytest.fixture(scope="session")
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterHandle]:
    provider = request.config.getoption("--cluster-provider")
    if provider == "kind":
        yield _kind_cluster(request)
        return
    if provider == "kubeconfig":
        path = request.config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG")
        if not path:
            pytest.fail("--cluster-provider=kubeconfig needs --kubeconfig or KUBECONFIG")
        yield kubeconfig_handle(Path(path), default_binary_path())
        return

    run_dir = tmp_path_factory.mktemp("controlplane")
    local = LocalCluster(run_dir)
    timings = local.start()
    _startup_report.append(f"local control plane: {timings.summary()}; logs in {run_dir}")
    try:
        yield local_handle(local)
    finally:
        local.stop()
        # The run must leave nothing behind; fail the session loudly if it does.
        leftovers = local.alive_pids() + processes_mentioning(str(run_dir))
        if leftovers:
            raise RuntimeError(f"control-plane processes survived teardown: {leftovers}")
        _startup_report.append("local control plane stopped; no component process remains")


@pytest.fixture(scope="session")
def stackforge_crds(cluster: ClusterHandle) -> list[str]:
    """The generated CRDs, installed and Established; returns their names."""
    return crds.install(cluster)


@pytest.fixture(scope="session")
def operator_identity_installed(
    cluster: ClusterHandle, stackforge_crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> operator_identity.OperatorIdentity:
    """manifests/' ServiceAccount and ClusterRole, and a kubeconfig with its token.

    Every operator the tests start authenticates with it, so the whole suite runs
    with the shipped least-privilege RBAC rather than as cluster admin.
    """
    path = tmp_path_factory.mktemp("operator-identity") / "kubeconfig"
    return operator_identity.install(cluster, path)


def _namespace_name(nodeid: str) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", nodeid.split("::")[-1].lower()).strip("-")[:40]
    # Ten hex digits: the cases of one parametrized test share the 40-character
    # prefix, and with five a run of ~150 of them collided about once in a
    # hundred runs (409: the namespace exists, being deleted).
    return f"t-{base}-{uuid.uuid4().hex[:10]}".replace("--", "-")


@pytest.fixture
def namespace(cluster: ClusterHandle, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) afterwards."""
    name = _namespace_name(request.node.nodeid)
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def operator_subprocess(
    operator_identity_installed: operator_identity.OperatorIdentity, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """`stackforge-operator run` as a child process, as users run it (as its ServiceAccount)."""
    operator = OperatorProcess(operator_identity_installed.kubeconfig, tmp_path / "operator.log")
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


@pytest.fixture
def operator_in_process(
    operator_identity_installed: operator_identity.OperatorIdentity,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[object, str]]:
    """The operator in this process through kopf's KopfRunner (always with a timeout)."""
    from kopf.testing import KopfRunner

    monkeypatch.setenv("KUBECONFIG", str(operator_identity_installed.kubeconfig))
    liveness = f"http://127.0.0.1:{free_port()}/healthz"
    args = ["run", "--standalone", "--all-namespaces", f"--liveness={liveness}",
            "-m", "stackforge_operator.handlers"]
    with KopfRunner(args, timeout=60) as runner:
        yield runner, liveness


@pytest.fixture(scope="module")
def operator(
    operator_identity_installed: operator_identity.OperatorIdentity,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[OperatorProcess]:
    """The operator as users run it (as its ServiceAccount), for a whole test module,
    resyncing every few seconds."""
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(
        operator_identity_installed.kubeconfig, log, extra_args=("--verbose",),
        extra_env={"STACKFORGE_RESYNC_SECONDS": "3", "STACKFORGE_STALLED_RECHECK_SECONDS": "3",
                   "STACKFORGE_ADDON_CHECK_SECONDS": "3"},
    )
    process.start()
    try:
        yield process
    finally:
        process.stop()
