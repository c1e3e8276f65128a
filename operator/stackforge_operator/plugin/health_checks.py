"""Pure: the verdicts of ``kubectl stackforge health`` from what the live stack
answered (a command's output in a pod, an HTTP answer through a port-forward),
and the table it prints. The runbook's thresholds come from the alert rules'
numbers (builders/monitoring.THRESHOLDS), so the health command and the alerts
never disagree on what "too many connections" is."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from stackforge_operator import pod_health
from stackforge_operator.builders.monitoring import THRESHOLDS

_GREEN, _RED, _YELLOW, _RESET = "\033[32m", "\033[31m", "\033[33m", "\033[0m"
PASS, FAIL, SKIP = "ok", "FAIL", "skipped"
# A Prometheus sample line: name, optional {labels}, value (timestamps are not used).
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Check:
    """One row: what was checked, where, and the verdict (ok, FAIL, or skipped)."""

    component: str
    check: str
    target: str
    result: str
    detail: str

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def passed(component: str, check: str, target: str, detail: str) -> Check:
    return Check(component, check, target, PASS, detail)


def failed(component: str, check: str, target: str, detail: str) -> Check:
    return Check(component, check, target, FAIL, detail)


def ready_and_not(pods: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """The names of the pods that count, Ready and not Ready.

    A pod that has finished (Failed or Succeeded: e.g. evicted under node
    pressure, kept until the pod garbage collector's threshold) or is being
    deleted is on its way out: its workload has made, or makes, another in its
    place, and that one is judged."""
    ready: list[str] = []
    not_ready: list[str] = []
    for pod in pods:
        state = pod.get("status") or {}
        if (pod.get("metadata") or {}).get("deletionTimestamp") or state.get("phase") in (
                "Failed", "Succeeded"):
            continue
        (ready if pod_health.ready(pod) else not_ready).append(str(pod["metadata"]["name"]))
    return ready, not_ready


def pods_check(component: str, wanted: int, ready: Sequence[str],
               not_ready: Sequence[str]) -> Check:
    """Ready pods against the workload's wanted count, and no pod that is not ready;
    zero wanted (suspended, or scaled to zero) is said and skipped, not failed.

    A pod not ready beside enough ready ones fails too: in a rollout the old pods
    are the ready ones, and a new template that never starts (a wrong image)
    would otherwise pass for as long as they serve."""
    if wanted == 0:
        return Check(component, "pods", "-", SKIP,
                     "0 replicas wanted (suspended or scaled to zero)")
    detail = f"{len(ready)}/{wanted} ready"
    if not_ready:
        detail += f"; not ready: {', '.join(sorted(not_ready))}"
    healthy = len(ready) >= wanted and not not_ready
    return Check(component, "pods", "-", PASS if healthy else FAIL, detail)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def command_check(component: str, check: str, target: str, code: int, out: str,
                  err: str) -> Check:
    """A command's exit status as the verdict, its last line as the detail."""
    detail = _last_line(out) or _last_line(err) or f"exit {code}"
    if code != 0:
        return failed(component, check, target, f"exit {code}: {_last_line(err) or detail}")
    return passed(component, check, target, detail)


def redis_ping(target: str, code: int, out: str, err: str) -> Check:
    if code == 0 and out.strip() == "PONG":
        return passed("redis", "ping", target, "PONG")
    answer = _last_line(out) or _last_line(err) or "no answer"
    return failed("redis", "ping", target, f"exit {code}: {answer}")


def connections(target: str, code: int, out: str, err: str,
                ratio: float = THRESHOLDS.db_connections_ratio) -> Check:
    """``used|max`` from psql: failing above the alert's share of max_connections."""
    if code != 0:
        return failed("postgres", "connections", target,
                      f"exit {code}: {_last_line(err) or _last_line(out)}")
    try:
        used_text, limit_text = out.strip().split("|")
        used, limit = int(used_text), int(limit_text)
    except ValueError:
        return failed("postgres", "connections", target, f"unexpected answer {out.strip()!r}")
    share = used / limit if limit else 1.0
    detail = f"{used}/{limit} client connections ({share:.0%}; limit {ratio:.0%})"
    return (passed if share <= ratio else failed)("postgres", "connections", target, detail)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if not found or line.startswith("#"):
            continue
        try:
            value = float(found.group(3))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(found.group(2) or ""))
        out.append((found.group(1), labels, value))
    return out


def kafka(target: str, metrics: str, wanted_brokers: int) -> list[Check]:
    """Brokers, topics and each consumer group's lag as the exporter (which asks
    the cluster at every scrape) reads them now."""
    found = samples(metrics)

    def value(name: str) -> float | None:
        return next((v for n, _, v in found if n == name), None)

    if value("kafka_exporter_scrape_success") != 1:
        return [failed("kafka", "cluster", target,
                       "the exporter could not read the cluster (scrape_success 0)")]
    brokers = int(value("kafka_brokers") or 0)
    out = [(passed if brokers >= wanted_brokers else failed)(
        "kafka", "brokers", target, f"{brokers}/{wanted_brokers} brokers in the cluster")]
    topics = sorted({labels["topic"] for n, labels, _ in found
                     if n == "kafka_topic_partitions" and "topic" in labels
                     and not labels["topic"].startswith("__")})
    out.append(passed("kafka", "topics", target,
                      f"{len(topics)}: {', '.join(topics)}" if topics else "0"))
    lag: dict[str, float] = {}
    for n, labels, v in found:
        if n == "kafka_consumergroup_lag" and "consumergroup" in labels:
            lag[labels["consumergroup"]] = lag.get(labels["consumergroup"], 0) + v
    # A lag is a reading, not a failure: the alert judges its trend over 15 minutes.
    for group in sorted(lag):
        out.append(passed("kafka", "consumer lag", target,
                          f"group {group}: {int(lag[group])} messages behind"))
    return out


def consul(target: str, leader: tuple[int, str], peers: tuple[int, str],
           wanted: int) -> list[Check]:
    """/v1/status/leader and /v1/status/peers, as the runbook reads them."""
    out = []
    status, body = leader
    try:
        known = json.loads(body) if status == 200 else ""
    except ValueError:
        known = ""
    out.append(passed("consul", "leader", target, str(known)) if known
               else failed("consul", "leader", target,
                           f"no leader (HTTP {status}: {body.strip()[:80]})"))
    status, body = peers
    try:
        members: Any = json.loads(body) if status == 200 else None
    except ValueError:
        members = None
    if not isinstance(members, list):
        out.append(failed("consul", "peers", target, f"HTTP {status}: {body.strip()[:80]}"))
    else:
        out.append((passed if len(members) >= wanted else failed)(
            "consul", "peers", target, f"{len(members)}/{wanted} raft peers"))
    return out


def http_check(component: str, check: str, target: str, status: int, body: str) -> Check:
    """A 2xx or 3xx answer passes, as a kubelet's HTTP probe would."""
    detail = f"HTTP {status}" + (f": {body.strip().splitlines()[0][:60]}" if body.strip() else "")
    return (passed if 200 <= status < 400 else failed)(component, check, target, detail)


def exit_code(checks: Sequence[Check]) -> int:
    """1 if any check failed (skipped ones do not), else 0."""
    return 1 if any(c.result == FAIL for c in checks) else 0


def table(tenant: Mapping[str, Any], checks: Sequence[Check], *, color: bool = False) -> str:
    meta = tenant["metadata"]
    rows = [["COMPONENT", "CHECK", "TARGET", "RESULT", "DETAIL"]]
    rows += [[c.component, c.check, c.target, c.result, c.detail] for c in checks]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        if color and index:
            shade = {PASS: _GREEN, FAIL: _RED}.get(row[3], _YELLOW)
            cells[3] = f"{shade}{cells[3]}{_RESET}"
        lines.append("  ".join([*cells, row[4]]).rstrip())
    failures = sum(c.result == FAIL for c in checks)
    lines.append(f"tenant {meta['namespace']}/{meta['name']}: {len(checks)} checks, "
                 + (f"{failures} failed" if failures else "all passed"))
    return "\n".join(lines) + "\n"
