"""What a real node changes on the host, recorded before it starts and put back after.

kubelet, kube-proxy, the CNI plugins, containerd and the NetworkPolicy
enforcer change host-global state: sysctls, netfilter tables, a bridge and
veth links, network namespaces, mounts, cgroups and a few well-known
directories. :func:`snapshot` records all of it; :func:`restore` undoes what
differs from a snapshot (after the node's processes are gone) and
:func:`differences` says in words what still differs, so a test can insist on
an empty list.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Every sysctl a node component is known to write (kubelet's
# setupKernelTunables, kube-proxy's conntrack and localnet settings, the
# bridge plugin's forwarding), plus the interface defaults the CNI touches.
WATCHED_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.ipv4.conf.default.forwarding",
    "net.ipv6.conf.all.forwarding",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_tcp_timeout_established",
    "net.netfilter.nf_conntrack_tcp_timeout_close_wait",
    "net.netfilter.nf_conntrack_tcp_be_liberal",
)

# Directories node software writes to when not told otherwise; the launcher
# points everything into its run directory, and a test proves it did.
WATCHED_DIRECTORIES = (
    "/var/run/netns",
    "/var/lib/cni",
    "/etc/cni",
    "/opt/cni",
    "/var/log/pods",
    "/var/log/containers",
    "/var/lib/kubelet",
    "/etc/kubernetes",
    "/run/containerd",
    "/var/lib/containerd",
    "/var/lib/kube-proxy",
)

# The tables iptables-nft owns: restored from `iptables-save` text, since
# that is the form their chains were written in.
_IPTABLES_FAMILIES = {"ip": "iptables", "ip6": "ip6tables"}
_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
_SAVE_COUNTERS = re.compile(r"\[\d+:\d+\]")


@dataclass(frozen=True)
class HostState:
    sysctls: dict[str, str]
    # "family name" -> the table's rules, counters blanked.
    nft_tables: dict[str, str]
    # "iptables"/"ip6tables" -> table name -> iptables-save text of that table.
    iptables_saves: dict[str, dict[str, str]]
    links: frozenset[str]
    # ipset names (kube-router's policy enforcement keeps pod and namespace sets).
    ipsets: frozenset[str]
    netns: frozenset[str]
    mounts: tuple[str, ...]
    cgroups: frozenset[str]
    directories: dict[str, frozenset[str] | None]
    # Processes that only a node runs: kubelet, containerd and its shims,
    # kube-proxy, CoreDNS, the enforcer, and anything inside a pod's cgroup.
    node_processes: frozenset[str] = field(default_factory=frozenset)


def _run(*argv: str, check: bool = False, stdin: str | None = None) -> str:
    if shutil.which(argv[0]) is None:
        return ""
    # A session of their own: a Ctrl-C at the terminal, which the teardown holds
    # off for itself, must not kill iptables-restore or umount half-way.
    result = subprocess.run(argv, capture_output=True, text=True, check=False, input=stdin,
                            timeout=60, start_new_session=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result.stdout


def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def read_sysctls(keys: Iterable[str] = WATCHED_SYSCTLS) -> dict[str, str]:
    values = {}
    for key in keys:
        try:
            values[key] = _sysctl_path(key).read_text().strip()
        except OSError:
            continue  # module not loaded (yet): absent is a state too
    return values


def canonical_table(listing: str) -> str:
    """``nft list table`` output with counters blanked and chains (and sets) in name
    order: nft lists them in creation order, which a restore does not reproduce,
    while the order of rules inside a chain is meaningful and kept."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for raw in _COUNTER.sub("counter", listing).splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("table ") or line == "}":
            if line == "}" and current is not None:
                blocks.append(current)
                current = None
            continue
        if line.endswith("{") and current is None:
            current = [line]
        elif current is not None:
            current.append(line)
    return "\n".join("\n".join(block) for block in sorted(blocks, key=lambda b: b[0]))


def _nft_tables() -> dict[str, str]:
    tables = {}
    for line in _run("nft", "list", "tables").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table":
            key = f"{parts[1]} {parts[2]}"
            tables[key] = canonical_table(_run("nft", "list", "table", parts[1], parts[2]))
    return tables


def _iptables_saves() -> dict[str, dict[str, str]]:
    saves: dict[str, dict[str, str]] = {}
    for tool in _IPTABLES_FAMILIES.values():
        per_table: dict[str, str] = {}
        current: list[str] = []
        name = ""
        for line in _run(f"{tool}-save").splitlines():
            if line.startswith("#"):
                continue
            if line.startswith("*"):
                name, current = line[1:], [line]
            elif line == "COMMIT":
                current.append(line)
                per_table[name] = "\n".join(current) + "\n"
            else:
                current.append(_SAVE_COUNTERS.sub("[0:0]", line))
        saves[tool] = per_table
    return saves


def _links() -> frozenset[str]:
    names = set()
    for line in _run("ip", "-o", "link", "show").splitlines():
        # "3: veth1@if2: <...>": the name sits between the first two colons.
        names.add(line.split(":")[1].strip().split("@")[0])
    return frozenset(names)


def _ipsets() -> frozenset[str]:
    return frozenset(_run("ipset", "list", "-name").split())


def _netns() -> frozenset[str]:
    directory = Path("/var/run/netns")
    return frozenset(p.name for p in directory.iterdir()) if directory.is_dir() else frozenset()


def _mounts() -> tuple[str, ...]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Octal escapes (\040 for a space) as the kernel writes them.
        points.append(line.split()[4])
    return tuple(points)


# The kubelet (cgroupsPerQOS) makes "kubepods" under each hierarchy's root and
# puts every pod and container below it; containerd's cgroupfs driver follows
# the paths the kubelet gives. Other programs' cgroups (a podman build running
# beside the tests, say) are not the node's to judge or remove.
NODE_CGROUP = "kubepods"


def _cgroups() -> frozenset[str]:
    root = Path("/sys/fs/cgroup")
    found = set()
    for dirpath, dirnames, _files in os.walk(root):
        for name in dirnames:
            relative = str(Path(dirpath, name).relative_to(root))
            if NODE_CGROUP in relative:
                found.add(relative)
    return frozenset(found)


def _directories() -> dict[str, frozenset[str] | None]:
    listing: dict[str, frozenset[str] | None] = {}
    for directory in WATCHED_DIRECTORIES:
        path = Path(directory)
        listing[directory] = frozenset(p.name for p in path.iterdir()) if path.is_dir() else None
    return listing


NODE_PROGRAMS = ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "coredns",
                 "kube-router")


def node_process_pids(scope: str | None = None) -> dict[int, str]:
    """Pids of every process living in a pod's cgroup, and of node programs: those
    whose command line mentions ``scope`` (a node's directory), or with no scope
    any program of a node's name."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cgroup = (entry / "cgroup").read_text()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "Z" or not argv[0]:
            # Dead and not yet reaped; or exiting, its memory (and command line)
            # already released: kernel threads are the only others without one.
            continue
        words = [w.decode(errors="replace") for w in argv[:2] if w]
        names = {Path(w).name for w in words}
        in_pod = "/kubepods" in cgroup
        if scope is not None:
            ours = scope in b" ".join(argv).decode(errors="replace")
        else:
            ours = bool(names & set(NODE_PROGRAMS))
        if in_pod or ours:
            found[int(entry.name)] = " ".join(words) + (" (in a pod cgroup)" if in_pod else "")
    return found


def snapshot(scope: str | None = None) -> HostState:
    return HostState(
        sysctls=read_sysctls(),
        nft_tables=_nft_tables(),
        iptables_saves=_iptables_saves(),
        links=_links(),
        ipsets=_ipsets(),
        netns=_netns(),
        mounts=_mounts(),
        cgroups=_cgroups(),
        directories=_directories(),
        node_processes=frozenset(node_process_pids(scope).values()),
    )


def differences(before: HostState, after: HostState) -> list[str]:
    """Each way ``after`` differs from ``before``, in words; empty when equal."""
    found = []
    for key in sorted(set(before.sysctls) | set(after.sysctls)):
        if before.sysctls.get(key) != after.sysctls.get(key):
            found.append(f"sysctl {key}: {before.sysctls.get(key)} -> {after.sysctls.get(key)}")
    for table in sorted(set(before.nft_tables) | set(after.nft_tables)):
        if table not in after.nft_tables:
            found.append(f"nft table {table} is gone")
        elif table not in before.nft_tables:
            found.append(f"nft table {table} was added")
        elif before.nft_tables[table] != after.nft_tables[table]:
            found.append(f"nft table {table} has other rules or chains")
    for kind, before_set, after_set in (
        ("link", before.links, after.links),
        ("ipset", before.ipsets, after.ipsets),
        ("network namespace", before.netns, after.netns),
        ("cgroup", before.cgroups, after.cgroups),
    ):
        found += [f"{kind} {name} was added" for name in sorted(after_set - before_set)]
        found += [f"{kind} {name} is gone" for name in sorted(before_set - after_set)]
    # Only added mounts are the node's: restore() unmounts nothing else, and
    # other programs (a container build beside the tests) mount and unmount
    # on their own.
    found += [f"mount {name} was added"
              for name in sorted(frozenset(after.mounts) - frozenset(before.mounts))]
    for directory, listing in before.directories.items():
        now = after.directories.get(directory)
        if listing != now:
            found.append(f"directory {directory}: {_describe(listing)} -> {_describe(now)}")
    found += [f"process still running: {p}" for p in sorted(after.node_processes
                                                             - before.node_processes)]
    return found


def _describe(listing: frozenset[str] | None) -> str:
    if listing is None:
        return "absent"
    return "empty" if not listing else ", ".join(sorted(listing))


# -- restoring -------------------------------------------------------------------


def kill_node_processes(already_there: frozenset[str] = frozenset(),
                        scope: str | None = None) -> None:
    """SIGKILL every node program (of ``scope``) and pod process that was not there before."""
    for pid, description in node_process_pids(scope).items():
        if description in already_there or pid == os.getpid():
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# Where a node mounts besides its own directory: network namespaces (the CRI
# keeps them there whatever its configuration says).
NODE_MOUNT_ROOTS = ("/run/netns", "/var/run/netns")


def restore(before: HostState, scope: str | None = None) -> list[str]:
    """Undo what differs from ``before``; returns what could not be undone.

    Run it after the node's processes have stopped (it kills stragglers). With
    ``scope`` (the node's directory), only mounts below it or below
    :data:`NODE_MOUNT_ROOTS` are unmounted and only its processes killed, so
    other work on the host (a container build) is left alone.
    """
    kill_node_processes(before.node_processes, scope)
    _restore_mounts(before, scope)
    _restore_netns(before)
    _restore_links(before)
    _restore_netfilter(before)
    _restore_ipsets(before)
    _restore_cgroups(before)
    _restore_directories(before)
    _restore_sysctls(before)
    return differences(before, snapshot(scope))


def _restore_mounts(before: HostState, scope: str | None) -> None:
    known = set(before.mounts)
    roots = (*NODE_MOUNT_ROOTS, scope) if scope else None
    added = [m for m in _mounts() if m not in known
             and (roots is None or any(m == r or m.startswith(r + "/") for r in roots))]
    # Deepest first, lazily: a busy mount still leaves the namespace at once.
    for point in sorted(added, key=lambda p: p.count("/"), reverse=True):
        subprocess.run(["umount", "--lazy", point.encode().decode("unicode_escape")],
                       capture_output=True, check=False)


def _restore_netns(before: HostState) -> None:
    directory = Path("/var/run/netns")
    for name in _netns() - before.netns:
        path = directory / name
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, check=False)
        path.unlink(missing_ok=True)


def _restore_links(before: HostState) -> None:
    for name in _links() - before.links:
        subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)


def _restore_netfilter(before: HostState) -> None:
    now = _nft_tables()
    for table in now.keys() - before.nft_tables.keys():
        _run("nft", "delete", "table", *table.split())
    saves = _iptables_saves()
    for family, tool in _IPTABLES_FAMILIES.items():
        wanted = before.iptables_saves.get(tool, {})
        for name, text in wanted.items():
            key = f"{family} {name}"
            if now.get(key) != before.nft_tables.get(key) or saves[tool].get(name) != text:
                # Replaces the table's rules and drops chains the node added.
                _run(f"{tool}-restore", stdin=text)
    # A table of another family that the node changed (none known) is
    # reported by differences(), not rewritten: its owner knows its rules.


def _restore_ipsets(before: HostState) -> None:
    # After the rules that referenced them are gone: a set in use cannot go.
    for name in _ipsets() - before.ipsets:
        _run("ipset", "destroy", name)


def _restore_cgroups(before: HostState) -> None:
    root = Path("/sys/fs/cgroup")
    added = _cgroups() - before.cgroups
    # Children before parents; a cgroup with no process left can be removed.
    for name in sorted(added, key=lambda n: n.count("/"), reverse=True):
        with contextlib.suppress(OSError):
            (root / name).rmdir()


def _restore_directories(before: HostState) -> None:
    for directory, listing in before.directories.items():
        path = Path(directory)
        if listing is None:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            continue
        if not path.is_dir():
            continue
        for child in path.iterdir():
            if child.name not in listing:
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)


def _restore_sysctls(before: HostState) -> None:
    for key, value in before.sysctls.items():
        path = _sysctl_path(key)
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError:
            pass
