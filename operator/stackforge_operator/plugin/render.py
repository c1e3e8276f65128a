"""Pure: what ``kubectl stackforge status`` prints, from the objects as the API has them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_GREEN, _RED, _YELLOW, _RESET = "\033[32m", "\033[31m", "\033[33m", "\033[0m"


def _paint(text: str, status: str, color: bool) -> str:
    if not color:
        return text
    shade = {"True": _GREEN, "False": _RED}.get(status, _YELLOW)
    return f"{shade}{text}{_RESET}"


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for found in (obj.get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return {}


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def tenant_screen(tenant: Mapping[str, Any], policies: Sequence[Mapping[str, Any]],
                  drills: Sequence[Mapping[str, Any]], *, color: bool = False) -> str:
    """The tenant on one screen: conditions, components, backups and archiving,
    drills, incidents, cost."""
    meta, st = tenant["metadata"], tenant.get("status") or {}
    ready = _condition(tenant, "Ready")
    lines = [f"Tenant {meta['name']} (namespace {meta['namespace']}): "
             + _paint(f"Ready={ready.get('status', 'Unknown')}", ready.get("status", ""), color)
             + (f" {ready.get('reason')}: {ready.get('message')}" if ready.get("reason") else "")]
    if st.get("suspended"):
        window = st.get("suspendWindow") or {}
        lines.append("  suspended" + (f" by a window until {window.get('nextChange')}"
                                      if window.get("open") else ""))
    if st.get("isolated"):
        lifting = _condition(tenant, "Isolated").get("reason") == "IsolationLifting"
        lines.append("  " + _paint("ISOLATED", "False", color)
                     + (" (lifted; settling, see the Isolated condition)" if lifting
                        else " (spec.isolate)"))
    lines += ["", "Conditions:"]
    rows = [["TYPE", "STATUS", "REASON", "MESSAGE"]]
    for c in st.get("conditions") or []:
        rows.append([c.get("type", ""), c.get("status", ""), c.get("reason", ""),
                     (c.get("message") or "")[:80]])
    lines += ["  " + line for line in _table(rows)] if len(rows) > 1 else ["  (none yet)"]
    components = st.get("components") or []
    lines += ["", f"Components ({st.get('componentsReady', '0/0')} ready):"]
    rows = [["NAME", "KIND", "READY", "REPLICAS"]]
    rows += [[c.get("name", ""), c.get("kind", ""), str(c.get("ready", False)),
              f"{c.get('readyReplicas', 0)}/{c.get('replicas', 0)}"] for c in components]
    lines += ["  " + line for line in _table(rows)] if components else ["  (none yet)"]
    for replica in st.get("replication") or []:
        lines.append(f"  replica {replica.get('name')}: {replica.get('state', '?')}, lag "
                     f"{replica.get('lagBytes', '?')} bytes / {replica.get('lagSeconds', '?')} s")
    lines += ["", "Backups:"]
    last = st.get("lastBackup") or {}
    lines.append(f"  last run: {last.get('result', 'none')} {last.get('runId', '')} "
                 f"(policy {last.get('policy', '-')}, finished {last.get('completionTime', '-')}, "
                 f"last success {last.get('lastSuccessTime', '-')})".replace("  ", " "))
    for policy in policies:
        archive = (policy.get("status") or {}).get("continuousArchiving") or {}
        window = ((policy.get("status") or {}).get("physicalBackups") or {}).get(
            "recoverabilityWindow") or {}
        archiving = _condition(policy, "ContinuousArchiving")
        line = f"  policy {policy['metadata']['name']}: "
        succeeded = _condition(policy, "LastBackupSucceeded").get("status", "Unknown")
        line += _paint(f"LastBackupSucceeded={succeeded}", succeeded, color)
        if archiving:
            line += (", " + _paint(f"archiving={archiving.get('status')}",
                                   archiving.get("status", ""), color)
                     + f" (last segment {archive.get('lastArchivedWal', '-')} at "
                       f"{archive.get('lastArchivedTime', '-')})")
        if window:
            line += f", recoverable {window.get('firstPoint')} .. {window.get('lastPoint')}"
        lines.append(line)
    drill = st.get("lastDrill") or {}
    lines += ["", "Drills:", f"  last: {drill.get('verdict', 'none')} {drill.get('name', '')} "
                             f"{drill.get('completionTime', '')}".rstrip()]
    for d in drills:
        result = (d.get("status") or {}).get("lastResult") or {}
        lines.append(f"  drill {d['metadata']['name']}: {result.get('verdict', 'not run')}"
                     + (f", RTO {result['rtoSeconds']} s" if "rtoSeconds" in result else "")
                     + (f", RPO {result['rpoSeconds']} s" if "rpoSeconds" in result else ""))
    incidents = st.get("incidents") or []
    lines += ["", f"Incidents ({len(incidents)} open):"]
    lines += [f"  {_paint(i.get('key', ''), 'False', color)} since {i.get('since', '')}"
              for i in incidents] or ["  none"]
    usage = st.get("usage") or {}
    if usage:
        lines += ["", "Usage (requested / quota / used):"]
        for resource in ("cpu", "memory", "storage", "pods"):
            f = usage.get(resource) or {}
            lines.append(f"  {resource}: {f.get('requested') or '-'} / {f.get('quota') or '-'}"
                         f" / {f.get('used') or '-'}")
        if usage.get("unmeasured"):
            lines.append(f"  ({usage['unmeasured']})")
    cost = st.get("cost") or {}
    if cost:
        lines += ["", f"Cost: {cost.get('priceMonthly')} {cost.get('currency', 'USD')}/month "
                      f"(infrastructure {cost.get('infrastructureMonthly')}: compute "
                      f"{cost.get('computeMonthly')}, storage {cost.get('storageMonthly')}, "
                      f"backups {cost.get('backupMonthly')})"
                  + (f"; suspend windows save {cost['scheduledSavingMonthly']}"
                     if cost.get("scheduledSavingMonthly") else "")]
    return "\n".join(lines) + "\n"


def _share(figures: Mapping[str, Any] | None) -> str:
    """requested/quota/used, ``-`` for what is not known."""
    figures = figures or {}
    return "/".join(figures.get(f) or "-" for f in ("requested", "quota", "used"))


def cluster_summary(tenants: Sequence[Mapping[str, Any]], *, color: bool = False) -> str:
    """Every tenant on a line, and the totals."""
    rows = [["NAMESPACE", "TENANT", "TIER", "READY", "COMPONENTS", "INCIDENTS",
             "CPU REQ/QUOTA/USED", "MEMORY REQ/QUOTA/USED", "STORAGE REQ/QUOTA/USED",
             "PRICE/MONTH"]]
    total = 0.0
    ready_count = 0
    for t in sorted(tenants, key=lambda x: (x["metadata"]["namespace"], x["metadata"]["name"])):
        st = t.get("status") or {}
        ready = _condition(t, "Ready").get("status", "Unknown")
        ready_count += ready == "True"
        price = (st.get("cost") or {}).get("priceMonthly") or "0"
        total += float(price)
        usage = st.get("usage") or {}
        rows.append([t["metadata"]["namespace"], t["metadata"]["name"],
                     str((t.get("spec") or {}).get("tier", "")), ready,
                     st.get("componentsReady", "-"), str(len(st.get("incidents") or [])),
                     _share(usage.get("cpu")), _share(usage.get("memory")),
                     _share(usage.get("storage")), price])
    lines = _table(rows)
    if color:
        lines = [lines[0]] + [line.replace(" True ", f" {_GREEN}True{_RESET} ").replace(
            " False ", f" {_RED}False{_RESET} ") for line in lines[1:]]
    lines.append(f"{len(tenants)} tenants, {ready_count} Ready; {total:.2f} USD/month")
    return "\n".join(lines) + "\n"
