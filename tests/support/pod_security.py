"""Pod Security Standards, `restricted` level (baseline included), checked offline.

Follows https://kubernetes.io/docs/concepts/security/pod-security-standards/
field by field, so a pod spec can be vetted without an API server; the real
admission in the namespace labelled `pod-security.kubernetes.io/enforce:
restricted` is the cluster test's job. Also checks what this project adds on
top: a read-only root filesystem.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

RESTRICTED_VOLUME_TYPES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
    "persistentVolumeClaim", "projected", "secret",
})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
})
ALLOWED_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t",
                                   "container_engine_t"})
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


def _containers(pod: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in _CONTAINER_LISTS:
        for c in pod.get(field) or []:
            yield f"{field}[{c.get('name', '?')}]", c


def _profile_ok(profile: Mapping[str, Any] | None, *, required: bool) -> bool:
    if profile is None:
        return not required
    return profile.get("type") in ("RuntimeDefault", "Localhost")


def _pod_level(pod: Mapping[str, Any], psc: Mapping[str, Any]) -> list[str]:
    problems = [f"{key} must not be true" for key in ("hostNetwork", "hostPID", "hostIPC")
                if pod.get(key)]
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume.get('name')}: type {sorted(kinds)} not allowed")
    for sysctl in psc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl.get('name')} is not in the safe set")
    if psc.get("runAsUser") == 0:
        problems.append("pod runAsUser must not be 0")
    if psc.get("windowsOptions", {}).get("hostProcess"):
        problems.append("pod hostProcess must not be true")
    return problems


def _container_level(
    where: str, c: Mapping[str, Any], psc: Mapping[str, Any]
) -> list[str]:
    sc: Mapping[str, Any] = c.get("securityContext") or {}
    problems: list[str] = []

    def bad(text: str) -> None:
        problems.append(f"{where}: {text}")

    if sc.get("privileged"):
        bad("privileged")
    if sc.get("allowPrivilegeEscalation") is not False:
        bad("allowPrivilegeEscalation must be false")
    run_as_non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
    if run_as_non_root is not True:
        bad("runAsNonRoot must be true (pod or container)")
    if sc.get("runAsUser") == 0:
        bad("runAsUser must not be 0")
    profile = sc.get("seccompProfile") or psc.get("seccompProfile")
    if not _profile_ok(profile, required=True):
        bad("seccompProfile must be RuntimeDefault or Localhost (pod or container)")
    if not _profile_ok(sc.get("appArmorProfile") or psc.get("appArmorProfile"), required=False):
        bad("appArmorProfile must not be Unconfined")
    selinux = sc.get("seLinuxOptions") or psc.get("seLinuxOptions") or {}
    if selinux.get("type", "") not in ALLOWED_SELINUX_TYPES or selinux.get("user") \
            or selinux.get("role"):
        bad("seLinuxOptions not allowed")
    if sc.get("procMount", "Default") != "Default":
        bad("procMount must be Default")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        bad("capabilities must drop ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        bad(f"capabilities.add {caps.get('add')} beyond NET_BIND_SERVICE")
    if any(p.get("hostPort") for p in c.get("ports") or []):
        bad("hostPort must not be set")
    if sc.get("windowsOptions", {}).get("hostProcess"):
        bad("hostProcess must not be true")
    if sc.get("readOnlyRootFilesystem") is not True:
        bad("readOnlyRootFilesystem must be true (this project's rule)")
    return problems


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """Every way ``pod`` (a PodSpec dict) breaks the restricted profile; [] when it passes."""
    psc: Mapping[str, Any] = pod.get("securityContext") or {}
    problems = _pod_level(pod, psc)
    for where, container in _containers(pod):
        problems += _container_level(where, container, psc)
    return problems
