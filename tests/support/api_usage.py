"""What the operator asks of the Kubernetes API, found by reading its code.

Two sources, both without a cluster:

- every call of the ``kube`` functions that reach the API (``get``, ``list_objects``,
  ``apply``, ``delete``, ``patch_status``, ``record_event``, ``pod_log``, ``list_pod_metrics``,
  ``service_account_token``)
  in the package (kube.py is the only module that talks to the API), read
  with ``ast``; arguments that are string literals or module-level string
  constants are resolved, the rest is reported as :class:`Unresolved` for the
  test to account for by hand;
- kopf's handler registry after importing ``stackforge_operator.handlers``:
  every watched resource needs list+watch, and change handlers also patch
  (kopf stores progress and finalizers on the object).

The result feeds tests/unit/test_manifests.py, which checks each use against
``stackforge_operator.rbac``. A cluster test running the operator as its
ServiceAccount is the final word; this catches a missing rule before that.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stackforge_operator import rbac

PACKAGE = "stackforge_operator"
PACKAGE_DIR = Path(importlib.import_module(PACKAGE).__file__ or "").parent
# Not the operator: the local control plane launcher (runs as cluster admin)
# and the backup runner (runs in a Job's pod, talks to S3 and PostgreSQL only).
SKIPPED = ("devcluster", "backup")
# kube function -> the verbs it needs on the resource (apply may create).
VERBS = {
    "get": ("get",),
    "list_objects": ("list",),
    "apply": ("patch", "create"),
    "delete": ("delete",),
    "patch_status": ("patch",),
    "record_event": ("create",),
    "pod_log": ("get",),
    "list_pod_metrics": ("list",),
    "service_account_token": ("create",),
}


@dataclass(frozen=True)
class Use:
    """One permission a call site needs."""

    api_version: str
    kind: str
    verb: str
    where: str  # module:function
    subresource: str = ""

    def rbac_question(self) -> tuple[str, str, str]:
        """(group, resource[/subresource], verb) as RBAC sees it."""
        group, plural = rbac.resource_of(self.api_version, self.kind)
        resource = f"{plural}/{self.subresource}" if self.subresource else plural
        return group, resource, self.verb


@dataclass(frozen=True)
class Unresolved:
    """A call whose kind is only known at run time."""

    where: str  # module:function
    function: str  # the kube function called
    source: str


def _module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE_DIR).with_suffix("")
    return ".".join((PACKAGE, *relative.parts))


def _constant(module: Any, node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        value = getattr(module, node.id, None)
        return value if isinstance(value, str) else None
    return None


def _dict_kind(module: Any, node: ast.AST) -> tuple[str, str] | None:
    if not isinstance(node, ast.Dict):
        return None
    found = {}
    for key, value in zip(node.keys, node.values, strict=True):
        name = _constant(module, key) if key is not None else None
        if name in ("apiVersion", "kind"):
            found[name] = _constant(module, value)
    api_version, kind = found.get("apiVersion"), found.get("kind")
    return (api_version, kind) if api_version and kind else None


class _Visitor(ast.NodeVisitor):
    def __init__(self, module_name: str, source: str) -> None:
        self.module_name = module_name
        self.module = importlib.import_module(module_name)
        self.source = source
        self.functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        self.uses: list[Use] = []
        self.unresolved: list[Unresolved] = []

    def _where(self) -> str:
        name = self.functions[-1].name if self.functions else "<module>"
        return f"{self.module_name}:{name}"

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.functions.append(node)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]  # noqa: N815

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        # `from stackforge_operator.kube import get` would hide calls from this scan.
        if node.module == f"{PACKAGE}.kube":
            self.unresolved.append(Unresolved(self._where(), "import", ast.unparse(node)))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                and func.value.id == "kube" and func.attr in VERBS):
            self._record(func.attr, node)
        self.generic_visit(node)

    def _assigned_dict(self, name: str) -> ast.AST | None:
        # `patch = {...}; kube.apply(patch)` in the same function.
        scope = self.functions[-1] if self.functions else None
        for stmt in ast.walk(scope) if scope is not None else ():
            if isinstance(stmt, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in stmt.targets
            ):
                return stmt.value
        return None

    def _record(self, function: str, call: ast.Call) -> None:
        where = self._where()
        kind: tuple[str, str] | None = None
        if function == "record_event":
            kind = ("v1", "Event")
        elif function == "pod_log":
            kind = ("v1", "Pod")
        elif function == "list_pod_metrics":
            kind = ("metrics.k8s.io/v1beta1", "PodMetrics")
        elif function == "service_account_token":
            kind = ("v1", "ServiceAccount")
        elif function == "apply" and call.args:
            target: ast.AST = call.args[0]
            if isinstance(target, ast.Name):
                target = self._assigned_dict(target.id) or target
            kind = _dict_kind(self.module, target)
        elif len(call.args) >= 2:
            api_version, kind_name = (_constant(self.module, a) for a in call.args[:2])
            kind = (api_version, kind_name) if api_version and kind_name else None
        if kind is None:
            self.unresolved.append(Unresolved(where, function, ast.unparse(call)))
            return
        sub = {"patch_status": "status", "pod_log": "log",
               "service_account_token": "token"}.get(function, "")
        self.uses += [Use(kind[0], kind[1], verb, where, sub) for verb in VERBS[function]]


def _files() -> Iterator[Path]:
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        relative = path.relative_to(PACKAGE_DIR)
        # __main__ runs the CLI when imported; kube.py is the implementation itself.
        if relative.parts[0] in SKIPPED or relative.name in ("kube.py", "__main__.py"):
            continue
        yield path


def kube_calls() -> tuple[list[Use], list[Unresolved]]:
    """Every kube.* call in the operator package: resolved uses, and the rest."""
    uses: list[Use] = []
    unresolved: list[Unresolved] = []
    for path in _files():
        source = path.read_text(encoding="utf-8")
        visitor = _Visitor(_module_name(path), source)
        visitor.visit(ast.parse(source, filename=str(path)))
        uses += visitor.uses
        unresolved += visitor.unresolved
    return uses, unresolved


def kopf_watches() -> list[tuple[str, str, str, str]]:
    """(group, resource, verb, handler id) for every resource kopf serves."""
    import kopf

    import stackforge_operator.handlers  # noqa: F401  (registers the handlers)

    registry = kopf.get_default_registry()
    plurals = {kind: plural for (_, kind), (_, plural) in rbac.RESOURCES.items()}
    needs = []
    # kopf's registries are internal; a rename in kopf fails loudly here.
    for attr, verbs in (("_watching", ("list", "watch")), ("_indexing", ("list", "watch")),
                        ("_changing", ("list", "watch", "patch")),
                        ("_spawning", ("list", "watch", "patch"))):
        for handler in getattr(registry, attr).get_all_handlers():
            selector = handler.selector
            name = selector.plural or selector.any_name or selector.kind
            resource = plurals.get(name, name)
            needs += [(selector.group or "", resource, verb, str(handler.id)) for verb in verbs]
    return needs


def owner_references() -> list[Use]:
    """``update`` on ``<owner>/finalizers`` for every owner reference with blockOwnerDeletion.

    The OwnerReferencesPermissionEnforcement admission plugin (OpenShift,
    hardened clusters) checks it when a child names its owner that way. Each
    reconcile module builds its owner references in ``owner_reference(body)``.
    """
    body = {"metadata": {"name": "owner", "namespace": "ns", "uid": "00000000"}}
    uses = []
    for path in _files():
        module = importlib.import_module(_module_name(path))
        build = getattr(module, "owner_reference", None)
        if build is None or getattr(build, "__module__", None) != module.__name__:
            continue
        ref = build(body)
        if ref.get("blockOwnerDeletion"):
            uses.append(Use(ref["apiVersion"], ref["kind"], "update",
                            f"{module.__name__}:owner_reference", "finalizers"))
    return uses
