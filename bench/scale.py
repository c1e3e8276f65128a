"""Scale: hundreds to thousands of Starter tenants on kwok nodes, the operator reading
from its watch caches and, as the baseline in the same run, reading the API server
each time (STACKFORGE_WATCH_CACHES=off, as before the caches).

Tenants are added up to each count in turn. At each count, for each way:

- all Ready after: from applying the new tenants (one `kubectl apply`) until every
  tenant is Ready (caches only: the baseline starts on tenants already converged);
- operator RSS after the idle window, and its peak;
- idle CPU: the operator's CPU time over an idle window, as a share of one core
  (reading from caches, the window is a whole STACKFORGE_FULL_RESYNC_SECONDS, so
  that every settled tenant's periodic full reconcile falls in it; the baseline
  reconciles every tenant in full each 60 s resync, and its window is 60 s);
- API requests by the operator per idle minute, by verb and resource, from the
  local control plane's audit log (which records the operator's reads and writes,
  not its watches);
- a new tenant's time to Ready (`kubectl apply` until its Ready condition, p50 and
  worst of --probes) beside the control plane's own time for the same children
  (`kubectl apply --server-side` of the rendered children until their workloads are
  ready): the goal is the operator within 1 s of it.

Prints a table and writes docs/scale-*.png (matplotlib).

    .venv/bin/python bench/scale.py [--counts 100,300,1000,3000] [--baseline-max 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine_facts  # noqa: E402
from bench.provision import SPEC, rendered_children  # noqa: E402
from kubernetes import client, config  # noqa: E402
from tests.support import audit, operator_identity  # noqa: E402
from tests.support.clusters import local_handle  # noqa: E402

from stackforge_operator import config as operator_config  # noqa: E402
from stackforge_operator.devcluster import LocalCluster  # noqa: E402
from stackforge_operator.devcluster.localrun import install_crds  # noqa: E402
from stackforge_operator.devcluster.operator_process import OperatorProcess  # noqa: E402
from stackforge_operator.devcluster.realrun import discard_run_dir  # noqa: E402

API = "stackforge.io/v1alpha1"
IDLE_SECONDS = 60.0
# The first reconciles of a freshly started operator, and the last status echoes,
# settle before the idle window opens.
SETTLE_SECONDS = 20.0


@dataclass
class Figures:
    tenants: int
    way: str
    all_ready_seconds: float | None
    rss_mib: float
    peak_rss_mib: float
    idle_cpu_percent: float
    requests_per_minute: Counter[tuple[str, str]]
    new_tenant_seconds: list[float] = field(default_factory=list)
    control_plane_seconds: list[float] = field(default_factory=list)

    @property
    def requests_total(self) -> int:
        return sum(self.requests_per_minute.values())


def _proc_status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime, fields 14 and 15 of the line (11 and 12 after the name).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not done within {timeout:.0f} s")
        time.sleep(interval)
    return time.monotonic() - started


def _ready(item: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (item.get("status") or {}).get("conditions") or [])


class Bench:
    def __init__(self, run_dir: Path, probes: int) -> None:
        self.run_dir = run_dir
        self.probes = probes
        self.cluster = LocalCluster(run_dir / "cluster",
                                    log=lambda m: print(f"  {m}", file=sys.stderr))
        self.created = 0
        self.probe_serial = 0

    def start(self) -> None:
        self.cluster.start()
        install_crds(self.cluster)
        self.handle = local_handle(self.cluster)
        self.identity = operator_identity.install(self.handle, self.run_dir / "operator.kubeconfig")
        api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        self.objects = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)

    def operator(self, way: str, variant: dict[str, str] | None = None) -> OperatorProcess:
        env = {"STACKFORGE_WATCH_CACHES": "on" if way == "caches" else "off",
               "STACKFORGE_RESYNC_SECONDS": "60", **(variant or {})}
        process = OperatorProcess(self.identity.kubeconfig,
                                  self.run_dir / f"operator-{way}-{time.time():.0f}.log",
                                  extra_env=env)
        process.start()
        return process

    def apply(self, manifests: list[dict[str, Any]]) -> None:
        for start in range(0, len(manifests), 500):
            self.cluster.kubectl("apply", "--server-side", "-f", "-", timeout=900,
                                 input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                   "items": manifests[start:start + 500]}))

    def add_tenants(self, upto: int) -> None:
        names = [f"s{i:05d}" for i in range(self.created, upto)]
        self.apply([*({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": f"tenant-{n}"}} for n in names),
                    *({"apiVersion": API, "kind": "StackForgeTenant",
                       "metadata": {"name": n, "namespace": f"tenant-{n}"}, "spec": SPEC}
                      for n in names)])
        self.created = upto

    def all_ready(self, count: int) -> bool:
        found = self.objects.list_cluster_custom_object(
            "stackforge.io", "v1alpha1", "stackforgetenants")
        assert isinstance(found, dict)  # the client types a custom object as a bare object
        items = found["items"]
        return sum(1 for i in items if i["metadata"]["name"].startswith("s") and _ready(i)) \
            >= count

    def probe_tenant(self) -> float:
        """A new tenant's time from `kubectl apply` to Ready; removed afterwards."""
        self.probe_serial += 1
        name = f"probe{self.probe_serial:03d}"
        namespace = f"tenant-{name}"
        self.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
        started = time.monotonic()
        self.apply([{"apiVersion": API, "kind": "StackForgeTenant",
                     "metadata": {"name": name, "namespace": namespace}, "spec": SPEC}])

        def ready() -> bool:
            body = self.objects.get_namespaced_custom_object(
                "stackforge.io", "v1alpha1", namespace, "stackforgetenants", name)
            assert isinstance(body, dict)  # the client types a custom object as a bare object
            return _ready(body)

        _wait(ready, 300)
        seconds = time.monotonic() - started
        self.cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        return seconds

    def probe_control_plane(self) -> float:
        """The same children applied by kubectl, until their workloads are ready."""
        self.probe_serial += 1
        name = f"raw{self.probe_serial:03d}"
        children = rendered_children(name)
        namespace = children[0]["metadata"]["name"]
        self.apply(children[:1])
        started = time.monotonic()
        self.apply(children[1:])

        def ready() -> bool:
            workloads: list[client.V1Deployment | client.V1StatefulSet] = [
                *self.apps.list_namespaced_deployment(namespace).items,
                *self.apps.list_namespaced_stateful_set(namespace).items]
            return bool(workloads) and all(
                ((w.status.ready_replicas if w.status else None) or 0)
                >= ((w.spec.replicas if w.spec else None) or 0) for w in workloads)

        _wait(ready, 300)
        seconds = time.monotonic() - started
        self.cluster.kubectl("delete", "namespace", namespace, "--wait=false")
        return seconds

    def measure(self, operator: OperatorProcess, way: str, count: int,
                all_ready_seconds: float | None, idle_seconds: float,
                probes: bool = True) -> Figures:
        pid = operator.process.pid
        assert pid is not None
        time.sleep(SETTLE_SECONDS)
        mark = audit.mark(self.cluster.audit_log)
        cpu = _cpu_seconds(pid)
        time.sleep(idle_seconds)
        cpu = _cpu_seconds(pid) - cpu
        requests = audit.requests_since(
            self.cluster.audit_log, mark, self.identity.username,
            ("get", "list", "create", "update", "patch", "delete", "deletecollection"))
        per_minute: Counter[tuple[str, str]] = Counter()
        for request in requests:
            per_minute[(request.verb, request.resource)] += 1
        scale = 60.0 / idle_seconds
        per_minute = Counter({k: round(v * scale) for k, v in per_minute.items()})
        figures = Figures(count, way, all_ready_seconds, _proc_status(pid, "VmRSS"),
                          _proc_status(pid, "VmHWM"), 100 * cpu / idle_seconds, per_minute)
        for _ in range(self.probes if probes else 0):
            figures.new_tenant_seconds.append(self.probe_tenant())
            figures.control_plane_seconds.append(self.probe_control_plane())
        return figures

    def stop(self) -> None:
        self.cluster.stop()


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(results: list[Figures]) -> str:
    lines = [
        "| tenants | reads from | all Ready after | RSS (peak) | idle CPU | API requests "
        "per idle minute | new tenant → Ready p50 / worst | control plane's own p50 / worst |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for f in results:
        ready = f"{f.all_ready_seconds:.0f} s" if f.all_ready_seconds is not None else "—"
        lines.append(
            f"| {f.tenants:,} | {f.way} | {ready} | {f.rss_mib:.0f} MiB ({f.peak_rss_mib:.0f}) "
            f"| {f.idle_cpu_percent:.1f} % | {f.requests_total:,} "
            f"| {_p50(f.new_tenant_seconds):.2f} / {max(f.new_tenant_seconds, default=0):.2f} s "
            f"| {_p50(f.control_plane_seconds):.2f} / "
            f"{max(f.control_plane_seconds, default=0):.2f} s |")
    lines.append("")
    lines.append("Requests per idle minute by verb and resource:")
    for f in results:
        top = ", ".join(f"{verb} {resource or '-'} {n:,}"
                        for (verb, resource), n in f.requests_per_minute.most_common())
        lines.append(f"- {f.tenants:,} tenants, {f.way}: {top or 'none'}")
    return "\n".join(lines)


def parse_table(text: str) -> list[Figures]:
    """The rows of tables this script printed (each step prints its own to stderr),
    for drawing the plots of a run cut short. Probe lists keep their p50 and worst."""
    found: dict[tuple[int, str], Figures] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 8 or not cells[0].replace(",", "").isdigit():
            continue
        tenants, way = int(cells[0].replace(",", "")), cells[1]
        rss, peak = cells[3].replace("MiB", "").replace("(", "").replace(")", "").split()

        def seconds(cell: str) -> list[float]:
            return [float(v) for v in cell.replace("s", "").split("/")]

        ready = None if cells[2] == "—" else float(cells[2].rstrip(" s"))
        requests = Counter({("all", ""): int(cells[5].replace(",", ""))})
        found[(tenants, way)] = Figures(tenants, way, ready, float(rss), float(peak),
                                        float(cells[4].rstrip(" %")), requests,
                                        seconds(cells[6]), seconds(cells[7]))
    return list(found.values())


def plot(results: list[Figures], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    charts: list[tuple[str, str, Callable[[Figures], float | None]]] = [
        ("all-ready", "all Ready after (s)", lambda f: f.all_ready_seconds),
        ("rss", "operator RSS after the idle minute (MiB)", lambda f: f.rss_mib),
        ("idle-cpu", "operator CPU while idle (% of one core)", lambda f: f.idle_cpu_percent),
        ("requests", "API requests per idle minute", lambda f: f.requests_total),
        ("new-tenant", "new tenant → Ready, worst of the probes (s)",
         lambda f: max(f.new_tenant_seconds, default=None)),
    ]
    written = []
    for slug, title, value in charts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for way in ("watch caches", "API server"):
            points = [(f.tenants, v) for f in results if f.way == way
                      and (v := value(f)) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=f"reads from {way}")
        if slug == "new-tenant":
            control = [(f.tenants, max(f.control_plane_seconds)) for f in results
                       if f.way == "watch caches" and f.control_plane_seconds]
            if control:
                ax.plot(*zip(*control, strict=True), marker="x", linestyle="--",
                        label="control plane's own (kubectl apply of the children)")
        ax.set_xlabel("tenants")
        ax.set_title(title)
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = out_dir / f"scale-{slug}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--counts", default="100,300,1000,3000")
    parser.add_argument("--baseline-max", type=int, default=1000,
                        help="measure the baseline (no caches) up to this count")
    parser.add_argument("--idle-seconds", type=float, default=IDLE_SECONDS,
                        help="the baseline's idle window")
    parser.add_argument("--caches-idle-seconds", type=float,
                        default=max(IDLE_SECONDS, operator_config.FULL_RESYNC_SECONDS),
                        help="the idle window reading from caches: a whole cycle of the "
                             "settled tenants' full reconciles")
    parser.add_argument("--restarted-idle-seconds", type=float,
                        help="the idle window of each --caches-variant (default: "
                             "--caches-idle-seconds); its memory after the start-up's "
                             "reconciles needs no whole cycle of full reconciles")
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--caches-variant", metavar="NAME=VALUE[,NAME=VALUE]",
                        action="append", default=[],
                        help="also measure, after the caches, an operator restarted on the "
                             "converged tenants, reading from caches, with this environment "
                             "(idle figures only; repeat for more), e.g. MALLOC_ARENA_MAX=16 "
                             "for glibc's default arenas on two cores")
    parser.add_argument("--plots", type=Path, default=ROOT / "docs")
    parser.add_argument("--replot", type=Path,
                        help="only draw the plots from the tables of an earlier run's output")
    args = parser.parse_args()
    if args.replot is not None:
        replotted = parse_table(args.replot.read_text())
        print(table(replotted))
        for path in plot(replotted, args.plots):
            print(f"wrote {path}")
        return 0
    counts = [int(c) for c in args.counts.split(",")]
    run_dir = Path(tempfile.mkdtemp(prefix="stackforge-scale-"))
    bench = Bench(run_dir, args.probes)
    results: list[Figures] = []
    print(machine_facts(), file=sys.stderr)
    bench.start()
    try:
        for count in counts:
            operator = bench.operator("caches")
            try:
                print(f"{count} tenants: applying {count - bench.created}", file=sys.stderr)
                started = time.monotonic()
                bench.add_tenants(count)
                # 823 s for 1,000 in one batch on this kind of machine: two seconds a
                # tenant leave room for the control plane slowing down as it fills.
                # Each look LISTs every tenant with its status (18 MB at 3,000): every
                # 2 s that was the bench's own load on the API server it measures.
                ready = time.monotonic() - started + _wait(
                    partial(bench.all_ready, count), max(3600, 2 * count),
                    interval=max(2.0, count / 200))
                print(f"  all Ready after {ready:.0f} s", file=sys.stderr)
                results.append(bench.measure(operator, "watch caches", count, ready,
                                             args.caches_idle_seconds))
            finally:
                operator.stop()
            for named in args.caches_variant:
                # Restarted on converged tenants: it reconciles every one at start.
                variant = dict(v.split("=", 1) for v in named.split(","))
                operator = bench.operator("caches", variant)
                try:
                    time.sleep(max(SETTLE_SECONDS, count / 20))
                    results.append(bench.measure(
                        operator, f"watch caches, restarted, {named}", count, None,
                        args.restarted_idle_seconds or args.caches_idle_seconds, probes=False))
                finally:
                    operator.stop()
            if count <= args.baseline_max:
                operator = bench.operator("api")
                try:
                    # Until the restarted operator has looked at every tenant once.
                    time.sleep(max(SETTLE_SECONDS, count / 20))
                    results.append(bench.measure(operator, "API server", count, None,
                                                 args.idle_seconds))
                finally:
                    operator.stop()
            print(table(results[-2:]), file=sys.stderr)
    finally:
        bench.stop()
    discard_run_dir(run_dir)  # only after a run that finished
    print(table(results))
    for path in plot(results, args.plots):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
