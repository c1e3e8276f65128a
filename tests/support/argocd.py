"""Run the shipped Argo CD health checks (manifests/argocd/argocd-cm.yaml) with lupa.

Argo CD evaluates a health script with gopher-lua (Lua 5.1) and the object as
the global ``obj``; the script returns ``{status = ..., message = ...}``. This
does the same with lupa's Lua 5.1, reading the script from the argocd-cm
snippet users install (not from health.lua), so the tests run exactly what
Argo CD would. Only Lua's base, string, table and math libraries stay visible,
as in Argo CD, so a script that reached for ``os`` or ``io`` fails here too.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ARGOCD_CM = REPO / "manifests" / "argocd" / "argocd-cm.yaml"
GROUP = "stackforge.io"
STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})
_HIDDEN_GLOBALS = ("os", "io", "require", "dofile", "loadfile", "load", "loadstring",
                   "package", "debug", "module")


@functools.cache
def scripts(path: Path = ARGOCD_CM) -> dict[str, str]:
    """Kind -> health script, from the argocd-cm snippet."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))["data"]
    prefix = f"resource.customizations.health.{GROUP}_"
    return {key[len(prefix):]: text for key, text in data.items() if key.startswith(prefix)}


def _to_lua(lua: Any, value: Any) -> Any:
    # Argo CD turns JSON maps and arrays into Lua tables (arrays 1-based), null into nil.
    if isinstance(value, Mapping):
        return lua.table_from({k: _to_lua(lua, v) for k, v in value.items() if v is not None})
    if isinstance(value, list | tuple):
        return lua.table_from([_to_lua(lua, v) for v in value])
    return value


def health(kind: str, obj: Mapping[str, Any]) -> tuple[str, str]:
    """(status, message) Argo CD would show for ``obj``, an object as the API returns it."""
    # lupa ships no type information.
    import lupa.lua51 as lupa  # type: ignore[import-untyped]

    script = scripts().get(kind)
    if script is None:
        raise KeyError(f"argocd-cm has no health check for {GROUP}_{kind}")
    lua = lupa.LuaRuntime(unpack_returned_tuples=False)
    lua_globals = lua.globals()
    for name in _HIDDEN_GLOBALS:
        lua_globals[name] = None
    lua_globals.obj = _to_lua(lua, {"kind": kind, **obj})
    # Argo CD runs the script as one chunk whose return value is the verdict.
    result = lua.execute(script)
    if result is None:
        raise AssertionError("the health script returned nothing")
    status, message = result["status"], result["message"]
    if status not in STATUSES:
        raise AssertionError(f"the health script returned an unknown status {status!r}")
    return str(status), str(message or "")
