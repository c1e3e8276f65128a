"""kubectl stackforge: the runbook's daily work on StackForge tenants.

Exit codes: 0 done; 1 failed (no such tenant, a health check or a backup that
failed, SQL that failed, the API refusing); 2 wrong usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from urllib3.exceptions import HTTPError

from stackforge_operator import support_bundle as bundle
from stackforge_operator.builders.backup import BACKUP_NOW_ANNOTATION, POLICY_LABEL
from stackforge_operator.builders.common import OPERATOR_NAMESPACE
from stackforge_operator.plugin import health, health_checks, render
from stackforge_operator.plugin.api import Cluster, NotFoundError
from stackforge_operator.reconcile.recovery import (
    RECOVER_CONFIRM_ANNOTATION,
    RECOVER_TO_ANNOTATION,
    RECOVER_VERIFY_ANNOTATION,
)

PSQL = ["psql", "-U", "postgres", "-h", "/var/run/postgresql", "-v", "ON_ERROR_STOP=1"]
# How long a failed backup waits for the operator to record its runner's reason.
RUN_RECORD_SECONDS = 20.0


class CommandError(Exception):
    """A failure to report as one line and exit code 1."""


def _print_object(obj: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(obj, indent=2, sort_keys=True))
    else:
        print(yaml.safe_dump(obj, sort_keys=False), end="")


def _color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _status(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.tenant is None:
        tenants = cluster.tenants()
        if args.output != "text":
            _print_object({"apiVersion": "v1", "kind": "List", "items": tenants}, args.output)
        else:
            print(render.cluster_summary(tenants, color=_color()), end="")
        return 0
    tenant = cluster.tenant(args.tenant)
    if args.output != "text":
        _print_object(tenant, args.output)
        return 0
    print(render.tenant_screen(tenant, cluster.of_tenant("backuppolicies", tenant),
                               cluster.of_tenant("drdrills", tenant), color=_color()), end="")
    return 0


def _policy(cluster: Cluster, tenant: dict[str, Any], wanted: str | None) -> dict[str, Any]:
    policies = cluster.of_tenant("backuppolicies", tenant)
    names = sorted(p["metadata"]["name"] for p in policies)
    if wanted is not None:
        chosen = [p for p in policies if p["metadata"]["name"] == wanted]
        if not chosen:
            raise CommandError(f"tenant {tenant['metadata']['name']} has no BackupPolicy "
                               f"{wanted} (it has: {', '.join(names) or 'none'})")
        return chosen[0]
    if len(policies) != 1:
        raise CommandError(f"tenant {tenant['metadata']['name']} has "
                           f"{len(policies)} BackupPolicies ({', '.join(names) or 'none'}): "
                           "name one with --policy")
    return policies[0]


def _backup(cluster: Cluster, args: argparse.Namespace) -> int:
    tenant = cluster.tenant(args.tenant)
    policy = _policy(cluster, tenant, args.policy)
    request = datetime.now(UTC).strftime("cli-%Y%m%d%H%M%S")
    cluster.annotate("backuppolicies", policy, {BACKUP_NOW_ANNOTATION: request})
    namespace, name = policy["metadata"]["namespace"], policy["metadata"]["name"]
    print(f"backup {request} asked of BackupPolicy {namespace}/{name}")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        for job in cluster.jobs(namespace, f"{POLICY_LABEL}={name}"):
            annotations = job["metadata"].get("annotations") or {}
            if annotations.get(BACKUP_NOW_ANNOTATION) != request:
                continue
            done = {c["type"]: c for c in (job.get("status") or {}).get("conditions") or []
                    if c.get("status") == "True"}
            if "Complete" in done:
                print(f"backup {request} succeeded (Job {job['metadata']['name']})")
                return 0
            if "Failed" in done:
                job_name = job["metadata"]["name"]
                why = _failed_run(cluster, namespace, name, job_name)
                raise CommandError(f"backup {request} failed (Job {job_name}: "
                                   f"{done['Failed'].get('message', '')})"
                                   + (f": {why}" if why else ""))
            print(f"  running (Job {job['metadata']['name']})", file=sys.stderr)
        time.sleep(2)
    raise CommandError(f"backup {request} not finished within {args.timeout:.0f} s")


def _failed_run(cluster: Cluster, namespace: str, policy: str, job: str,
                timeout: float = RUN_RECORD_SECONDS) -> str | None:
    """Why the runner said its run failed, as the operator records it in the policy's
    status.lastRun once it sees the Job fail (None if not recorded in ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        run = ((cluster.policy(namespace, policy).get("status") or {}).get("lastRun") or {})
        if run.get("jobName") == job and run.get("result") == "Failed":
            return ": ".join(str(part) for part in (run.get("reason"), run.get("message"))
                             if part)
        if time.monotonic() >= deadline:
            return None
        time.sleep(1)


def _drill(cluster: Cluster, args: argparse.Namespace) -> int:
    """A one-off run now: a new DRDrill with the spec of the tenant's drill, once."""
    tenant = cluster.tenant(args.tenant)
    drills = cluster.of_tenant("drdrills", tenant)
    names = sorted(d["metadata"]["name"] for d in drills)
    chosen = [d for d in drills if args.source in (None, d["metadata"]["name"])]
    if len(chosen) != 1:
        raise CommandError(f"tenant {args.tenant} has {len(drills)} DRDrills "
                           f"({', '.join(names) or 'none'}): "
                           + ("name one with --from" if args.source is None
                              else f"none is {args.source}"))
    source = chosen[0]
    spec = {k: v for k, v in (source.get("spec") or {}).items()
            if k not in ("schedule", "timeZone", "suspend")}
    name = f"{source['metadata']['name'][:40]}-now-{datetime.now(UTC):%Y%m%d%H%M%S}"
    namespace = source["metadata"]["namespace"]
    cluster.create_drill(namespace, {
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"app.kubernetes.io/created-by": "kubectl-stackforge"}},
        "spec": {**spec, "once": True}})
    print(f"drill {namespace}/{name} started (the spec of {source['metadata']['name']}, once)")
    if not args.wait:
        return 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        result = (cluster.drill(namespace, name).get("status") or {}).get("lastResult") or {}
        verdict = result.get("verdict")
        if verdict:
            print(f"drill {name}: {verdict}"
                  + (f", RTO {result['rtoSeconds']} s" if "rtoSeconds" in result else "")
                  + (f", RPO {result['rpoSeconds']} s" if "rpoSeconds" in result else ""))
            return 0 if verdict == "Passed" else 1
        time.sleep(2)
    raise CommandError(f"drill {name} has no verdict within {args.timeout:.0f} s")


def _restore(cluster: Cluster, args: argparse.Namespace) -> int:
    """The in-place recovery request: its two annotations, the second typed again."""
    tenant = cluster.tenant(args.tenant)
    meta = tenant["metadata"]
    try:
        target = datetime.fromisoformat(args.to.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--to {args.to!r} is no RFC 3339 time") from None
    if target.tzinfo is None:
        raise CommandError(f"--to {args.to!r} names no time zone (e.g. Z or +01:00)")
    wanted = f"{meta['namespace']}/{meta['name']}@{args.to}"
    confirmation = args.confirm
    if confirmation is None and sys.stdin.isatty():
        confirmation = input(f"This stops {meta['name']}'s apps and replaces its database "
                             f"with the archive's at {args.to}.\nType {wanted} to go on: ")
    if confirmation != wanted:
        raise CommandError(f"not confirmed: --confirm must be exactly {wanted}")
    annotations = {RECOVER_TO_ANNOTATION: args.to, RECOVER_CONFIRM_ANNOTATION: wanted}
    if args.verify_drill:
        annotations[RECOVER_VERIFY_ANNOTATION] = args.verify_drill
    cluster.annotate("stackforgetenants", tenant, annotations)
    print(f"recovery of {meta['namespace']}/{meta['name']} to {args.to} asked "
          "(status.recovery follows it)")
    return 0


def _isolation(value: bool) -> Callable[[Cluster, argparse.Namespace], int]:
    def run(cluster: Cluster, args: argparse.Namespace) -> int:
        tenant = cluster.tenant(args.tenant)
        cluster.patch_tenant(tenant, {"spec": {"isolate": value}})
        meta = tenant["metadata"]
        print(f"tenant {meta['namespace']}/{meta['name']}: spec.isolate set to "
              f"{str(value).lower()}")
        return 0
    return run


def _database(tenant: dict[str, Any]) -> str:
    return health.effective(tenant).postgres.database


def _health(cluster: Cluster, args: argparse.Namespace) -> int:
    tenant = cluster.tenant(args.tenant)
    checks = health.run(cluster, tenant)
    if args.output == "text":
        print(health_checks.table(tenant, checks, color=_color()), end="")
    else:
        meta = tenant["metadata"]
        _print_object({"tenant": meta["name"], "namespace": meta["namespace"],
                       "failed": sum(c.result == health_checks.FAIL for c in checks),
                       "checks": [c.as_json() for c in checks]}, args.output)
    return health_checks.exit_code(checks)


def _psql(cluster: Cluster, args: argparse.Namespace) -> int:
    tenant = cluster.tenant(args.tenant)
    pod = cluster.postgres_pod(tenant, replica=args.replica)
    namespace = tenant["metadata"]["namespace"]
    command = [*PSQL, "-d", _database(tenant)]
    if args.command is None:
        # Interactive: kubectl's own exec, with a terminal (kubectl runs this plugin).
        flags = [f"--{k}={v}" for k, v in (("kubeconfig", args.kubeconfig),
                                           ("context", args.context)) if v]
        os.execvp("kubectl", ["kubectl", *flags, "exec", "-it", "-n", namespace, pod,  # noqa: S606
                              "-c", "postgres", "--", *command])
    code, out, err = cluster.exec(namespace, pod, "postgres", [*command, "-c", args.command])
    sys.stdout.write(out)
    sys.stderr.write(err)
    return 0 if code == 0 else 1


def _report(cluster: Cluster, args: argparse.Namespace) -> int:
    tenant = cluster.tenant(args.tenant)
    name, namespace = tenant["metadata"]["name"], tenant["metadata"]["namespace"]
    objects = cluster.namespace_objects(namespace)
    logs = {(pod, container): cluster.pod_log(namespace, pod, container, args.tail)
            for pod, container in bundle.containers(objects)}
    extra = {f"operator/{pod}.log": lines
             for pod, lines in cluster.operator_log_lines(
                 tenant, args.tail, args.operator_namespace).items()}
    extra["status.txt"] = render.tenant_screen(
        tenant, cluster.of_tenant("backuppolicies", tenant),
        cluster.of_tenant("drdrills", tenant))
    files = bundle.assemble(objects, cluster.events(namespace), logs, extra)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = f"stackforge-report-{name}-{stamp}"
    path = Path(args.file or f"{root}.tar.gz")
    path.write_bytes(bundle.archive(files, root))
    print(f"{path}: {len(files)} files (Secrets' values redacted; {bundle.MANIFEST} inside)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl stackforge", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", help="the kubeconfig file (default: $KUBECONFIG, "
                                             "then ~/.kube/config)")
    parser.add_argument("--context", help="the kubeconfig context to use")
    parser.add_argument("-n", "--namespace", help="the tenants' namespace (default: any)")
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "status", help="a tenant on one screen; every tenant without a name")
    status.add_argument("tenant", nargs="?")
    status.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    status.set_defaults(run=_status)

    checks = commands.add_parser(
        "health", help="the runbook's health checks on the tenant's live pods "
                       "(exit 1 if any fails)")
    checks.add_argument("tenant")
    checks.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    checks.set_defaults(run=_health)

    backup = commands.add_parser("backup", help="start a backup of the tenant now")
    backup.add_argument("tenant")
    backup.add_argument("--policy", help="the BackupPolicy (needed when it has several)")
    backup.add_argument("--wait", action="store_true", help="wait for its result")
    backup.add_argument("--timeout", type=float, default=1800, help="seconds (--wait)")
    backup.set_defaults(run=_backup)

    drill = commands.add_parser("drill", help="a DR drill now: the tenant's drill, run once")
    drill.add_argument("tenant")
    drill.add_argument("--from", dest="source", help="the DRDrill to copy (needed when the "
                                                     "tenant has several)")
    drill.add_argument("--wait", action="store_true", help="wait for its verdict (exit 1 "
                                                           "unless Passed)")
    drill.add_argument("--timeout", type=float, default=3600, help="seconds (--wait)")
    drill.set_defaults(run=_drill)

    restore = commands.add_parser(
        "restore", help="recover the tenant's database in place to a moment "
                        "(point-in-time; stops its apps meanwhile)")
    restore.add_argument("tenant")
    restore.add_argument("--to", required=True, help="the moment, RFC 3339 (2026-12-01T02:00:00Z)")
    restore.add_argument("--confirm", help="NAMESPACE/NAME@TO typed again (asked on a terminal)")
    restore.add_argument("--verify-drill", help="a DRDrill whose queries must pass on the "
                                                "restored database before it takes over")
    restore.set_defaults(run=_restore)

    for name, value, text in (("isolate", True, "cut the tenant off (security incident)"),
                              ("unisolate", False, "lift the isolation")):
        isolation = commands.add_parser(name, help=text)
        isolation.add_argument("tenant")
        isolation.set_defaults(run=_isolation(value))

    psql = commands.add_parser("psql", help="psql in the tenant's database")
    psql.add_argument("tenant")
    psql.add_argument("--replica", action="store_true", help="on a read replica")
    psql.add_argument("-c", "--command", help="run this SQL and exit (else interactive)")
    psql.set_defaults(run=_psql)

    report = commands.add_parser(
        "report", help="a support bundle: the tenant, its objects (Secrets redacted), "
                       "events, logs, the operator's lines about it")
    report.add_argument("tenant")
    report.add_argument("-f", "--file", help="where to write the .tar.gz")
    report.add_argument("--tail", type=int, default=200, help="log lines per container")
    report.add_argument("--operator-namespace", default=OPERATOR_NAMESPACE,
                        help="where the operator runs, for its log lines about the tenant "
                             f"(default {OPERATOR_NAMESPACE})")
    report.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cluster = Cluster(args.kubeconfig, args.context, args.namespace)
        code: int = args.run(cluster, args)
    except (CommandError, NotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ApiException as error:
        print(f"error: the API server answered {error.status} {error.reason}", file=sys.stderr)
        return 1
    except (HTTPError, OSError) as error:
        print(f"error: cannot reach the cluster: {type(error).__name__}", file=sys.stderr)
        return 1
    except ValidationError as error:
        # The cluster's objects have fields this plugin does not know: older than the CRDs.
        fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in error.errors()[:3])
        print(f"error: this plugin cannot read the tenant ({fields}): is it older than the "
              "operator? Install the plugin of the operator's version", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
