"""kopf handlers: thin entry points that feed the controllers."""

from __future__ import annotations

from typing import Any

import kopf

from stackforge_operator import API_GROUP, API_VERSION, config, kube
from stackforge_operator.builders.common import MANAGED_BY, MANAGED_BY_LABEL, TENANT_LABEL
from stackforge_operator.controller import TenantController
from stackforge_operator.version import VERSION

TENANTS = (API_GROUP, API_VERSION, "stackforgetenants")
# Children whose changes should wake their tenant at once (the rest are
# repaired by the periodic resync). Secrets are deliberately not watched: the
# operator would otherwise receive every Secret of the cluster.
WATCHED_CHILDREN = (
    ("v1", "namespaces"),
    ("v1", "services"),
    ("v1", "configmaps"),
    ("apps/v1", "deployments"),
    ("apps/v1", "statefulsets"),
    ("networking.k8s.io/v1", "networkpolicies"),
)
OWNED: dict[str, Any] = {
    MANAGED_BY_LABEL: MANAGED_BY,
    TENANT_LABEL: kopf.PRESENT,
}


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    return kube.connection_info(kube.api_client().configuration)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config.apply_settings(settings)
    memo.tenants = TenantController()
    memo.tenants.start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    await memo.tenants.stop()


@kopf.on.event(*TENANTS)
async def tenant_changed(
    type: str, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    if type == "DELETED":
        memo.tenants.deleted(name)
    else:
        memo.tenants.observed(name, dict(body))


async def _child_changed(labels: kopf.Labels, memo: kopf.Memo, **_: Any) -> None:
    memo.tenants.poke(labels[TENANT_LABEL])


for _api_version, _plural in WATCHED_CHILDREN:
    _group, _, _version = _api_version.rpartition("/")
    kopf.on.event(_group, _version, _plural, labels=OWNED, id=f"child-{_plural}")(
        _child_changed
    )


@kopf.on.probe(id="version")
def report_version(**_: Any) -> str:
    # Cheap on purpose: liveness must not depend on the API server being up,
    # or an API blip would restart every operator replica.
    return VERSION
