"""What machine a benchmark ran on, printed with its table (docs/benchmarks.md records it).

Also the one host setting a restore bench may hold still: free page reporting.
On the VMs these benches run on, the guest kernel reports freed memory to the
hypervisor in blocks of 2^order pages, and the hypervisor takes it back; the
next write into the page cache then faults every page in again from the host.
Measured on the 2-core Intel machine: writing 1 GiB after its pages were
reported took 1.3 s of system time instead of 0.24 s. Which contender of a
bench meets reported pages depends on when the last one freed its files, so
the restore benches can pause reporting for the run (and put it back).

A run killed outright (SIGKILL, a lost terminal's session) cannot put it back
itself, so the order it paused is recorded first, in /run (gone at reboot, as
the kernel's setting is); the next bench, or ``python -m bench.machine``, puts a
dead run's order back.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from pathlib import Path

PAGE_REPORTING = Path("/sys/module/page_reporting/parameters")
# Above the buddy allocator's largest order (10 on x86-64): no free block is
# ever that large, so nothing is reported while it is set.
PAUSED_ORDER = 11
# "<order> <pid>": the order a running bench paused, and that bench.
PAUSE_RECORD = Path("/run/stackforge-bench/page-reporting-order")


def machine_facts(page_reporting: Path = PAGE_REPORTING) -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    facts = (f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, "
             f"Linux {platform.release()}, Python {platform.python_version()}")
    reporting = page_reporting_state(page_reporting)
    return facts if reporting is None else f"{facts}; {reporting}"


def page_reporting_state(page_reporting: Path = PAGE_REPORTING) -> str | None:
    """How the kernel's free page reporting stands, or None where it has none."""
    order = _order(page_reporting)
    if order is None:
        return None
    if order >= PAUSED_ORDER:
        return f"free page reporting off (order {order})"
    return f"free page reporting on (blocks of order {order})"


def reported_kib(page_reporting: Path = PAGE_REPORTING) -> int | None:
    """KiB reported to the hypervisor since boot (a counter of this kernel's), or None."""
    try:
        return int((page_reporting / "reported_kib").read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def page_reporting_paused(page_reporting: Path = PAGE_REPORTING,
                          record: Path = PAUSE_RECORD) -> Iterator[bool]:
    """Free page reporting off for the block, then the order it had put back.

    Yields whether there was reporting to pause (False where the kernel has none).
    The order is recorded in ``record`` before it changes, for a run killed
    before its ``finally`` (see put_back_a_dead_runs_order).
    """
    put_back_a_dead_runs_order(page_reporting, record)
    order = _order(page_reporting)
    if order is None or order >= PAUSED_ORDER:
        yield False
        return
    record.parent.mkdir(parents=True, exist_ok=True)
    written = record.with_name(record.name + ".new")
    written.write_text(f"{order} {os.getpid()}\n")
    written.replace(record)
    _set_order(page_reporting, PAUSED_ORDER)
    try:
        yield True
    finally:
        _set_order(page_reporting, order)
        record.unlink(missing_ok=True)


def put_back_a_dead_runs_order(page_reporting: Path = PAGE_REPORTING,
                               record: Path = PAUSE_RECORD) -> int | None:
    """The order a killed run paused, put back (None: no such run, or it still runs).

    A record whose bench is alive is left alone: that run puts its own order back.
    """
    try:
        order_text, pid_text = record.read_text().split()
        order, pid = int(order_text), int(pid_text)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        # Not what this module writes: nothing to trust in it.
        record.unlink(missing_ok=True)
        return None
    if pid != os.getpid() and _alive(pid):
        return None
    if _order(page_reporting) is not None:
        _set_order(page_reporting, order)
    record.unlink(missing_ok=True)
    return order


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user's
    return True


@contextlib.contextmanager
def page_reporting_for_the_run(pause: bool, page_reporting: Path = PAGE_REPORTING,
                               record: Path = PAUSE_RECORD) -> Iterator[str]:
    """Reporting paused for the block if ``pause``; yields its state during the block,
    for the bench's header. Either way a killed run's order is put back first
    (page_reporting_paused does that itself)."""
    if pause:
        held: contextlib.AbstractContextManager[bool] = page_reporting_paused(
            page_reporting, record)
    else:
        put_back_a_dead_runs_order(page_reporting, record)
        held = contextlib.nullcontext(False)
    with held:
        yield page_reporting_state(page_reporting) or "no free page reporting"


def _order_file(page_reporting: Path) -> Path:
    return page_reporting / "page_reporting_order"


def _order(page_reporting: Path) -> int | None:
    try:
        return int(_order_file(page_reporting).read_text())
    except (OSError, ValueError):
        return None


def _set_order(page_reporting: Path, order: int) -> None:
    _order_file(page_reporting).write_text(f"{order}\n")


def reported_since(before: int | None, page_reporting: Path = PAGE_REPORTING) -> str:
    """A note for a contender's line: how much free memory was reported during it."""
    after = reported_kib(page_reporting)
    if before is None or after is None:
        return ""
    return f" [{(after - before) / 1024:.0f} MiB of free memory reported to the hypervisor]"


if __name__ == "__main__":
    # After a bench was killed: its order back, and the machine as it now stands.
    put_back = put_back_a_dead_runs_order()
    if put_back is not None:
        print(f"page reporting order {put_back} put back (left paused by a killed run)")
    print(machine_facts())
