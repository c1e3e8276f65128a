"""kopf handlers: thin entry points that delegate to the reconcilers."""

from __future__ import annotations

from typing import Any

import kopf

from stackforge_operator import config, kube
from stackforge_operator.version import VERSION


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    config.apply_settings(settings)


@kopf.on.login()
def login(**_: Any) -> kopf.ConnectionInfo:
    return kube.connection_info(kube.api_client().configuration)


@kopf.on.probe(id="version")
def report_version(**_: Any) -> str:
    # Cheap on purpose: liveness must not depend on the API server being up,
    # or an API blip would restart every operator replica.
    return VERSION
