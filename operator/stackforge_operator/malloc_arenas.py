"""Fewer glibc malloc arenas in the operator process: memory freed is reused, not held.

glibc gives a thread that allocates while another holds an arena an arena of
its own, up to eight per core, and memory freed in an arena stays with it. The
operator's threads (an informer per watched kind, the reconcile and client
workers) all parse, pack and drop objects of every size, so each arena ends up
holding its own free memory, and the process's RSS grows with the number of
threads rather than with what it keeps. Two arenas is the usual setting for
such servers; the threads here spend their time waiting on the network, not
contending for malloc.

``MALLOC_ARENA_MAX`` in the environment (read by glibc at start) wins: then
nothing is changed. Without glibc (musl, macOS) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping

ARENAS = 2
# mallopt's parameter number for the arena limit (glibc's malloc.h).
M_ARENA_MAX = -8


def limit(environ: Mapping[str, str] = os.environ, arenas: int = ARENAS) -> bool:
    """Limit the arenas to ``arenas``; call before the threads start. Returns whether
    glibc took it (False: another C library, or the environment decides)."""
    if "MALLOC_ARENA_MAX" in environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return False
    # glibc's own symbol names its library: musl has mallopt too, as a no-op.
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))
