"""Names of the images built here, as the kubelet and containerd look them up.

The CRI looks an image up by its fully qualified name. Images built and
imported here are named under ``localhost/`` (as podman names local builds),
a name the CRI takes exactly as written; the test cluster's operator is told
to prefix the images it names with the same ``localhost`` registry, so what a
pod asks for is what was imported, and no registry is ever named or contacted.
"""

from __future__ import annotations

import re
from typing import Final

LOCAL_REGISTRY: Final = "localhost"
DEFAULT_TAG: Final = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_RE: Final = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG_RE: Final = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE: Final = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")


def _has_domain(first: str) -> bool:
    # The grammar's rule: the first component names a host when it has a dot
    # or a port, or is "localhost".
    return "." in first or ":" in first or first == "localhost"


def local_reference(reference: str) -> str:
    """``reference`` under :data:`LOCAL_REGISTRY` unless it names a registry already
    (tag ``latest`` if none), validated against the reference grammar.

    >>> local_reference("stackforge/postgres:15")
    'localhost/stackforge/postgres:15'
    """
    name, _, digest = reference.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise ValueError(f"{reference!r}: invalid digest")
    first, slash, rest = name.partition("/")
    if slash and _has_domain(first):
        domain, path = first, rest
    else:
        domain, path = LOCAL_REGISTRY, name
    tag = ""
    last_slash = path.rfind("/")
    if ":" in path[last_slash + 1 :]:
        path, _, tag = path.rpartition(":")
        if not _TAG_RE.match(tag):
            raise ValueError(f"{reference!r}: invalid tag {tag!r}")
    if not _PATH_RE.match(path):
        raise ValueError(f"{reference!r}: invalid repository name {path!r} (lowercase only)")
    if not tag and not digest:
        tag = DEFAULT_TAG
    qualified = f"{domain}/{path}"
    if tag:
        qualified += f":{tag}"
    if digest:
        qualified += f"@{digest}"
    return qualified
