"""Installing the generated CRDs into a test cluster."""

from __future__ import annotations

from tests.support.clusters import ClusterHandle


def install(cluster: ClusterHandle) -> list[str]:
    """Apply the generated CRDs and wait until they are Established; returns their names."""
    from stackforge_operator import crdgen

    rendered = crdgen.render_all()
    cluster.kubectl(
        "apply", "--server-side", "--field-manager=stackforge-tests", "-f", "-",
        input="---\n".join(rendered.values()),
    )
    names = [f"{c['spec']['names']['plural']}.{c['spec']['group']}" for c in crdgen.crds()]
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s",
                    *(f"crd/{n}" for n in names))
    return names
