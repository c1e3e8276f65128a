"""The ValidatingAdmissionPolicy that refuses a tenant in a reserved namespace.

The operator refuses such a tenant too (``reconcile.tenant_observe.placement_problem``:
``Stalled``, reason ``ReservedNamespace``), but only once the object exists. With
the policy installed, ``kubectl apply`` fails at once with the reason. A CRD's own
CEL rules cannot do this: they see the object's name, never its namespace.

The other placement rules (one tenant per namespace, unique names) need other
objects, which admission policies cannot read; they stay the operator's.

Pure data: ``manifestgen`` writes ``manifests/admissionpolicy.yaml`` and the
chart's expressions from here. The expression is the CEL twin of
``models.tenant.reserved_namespace``; a unit test evaluates both on the same names.
"""

from __future__ import annotations

import json
from typing import Any

from stackforge_operator import API_GROUP
from stackforge_operator.models.tenant import (
    RESERVED_NAMESPACE_PREFIX,
    RESERVED_NAMESPACES,
    RESERVED_NAMESPACES_TEXT,
)

POLICY_NAME = "stackforge-tenant-namespace"

# Holds when the namespace may hold a tenant (validations must be true to admit).
NAMESPACE_ALLOWED = (
    f"!request.namespace.startsWith({json.dumps(RESERVED_NAMESPACE_PREFIX)}) && "
    f"!(request.namespace in {json.dumps(list(RESERVED_NAMESPACES))})"
)
_REASON = f" is reserved; put the tenant in a namespace of its own (not {RESERVED_NAMESPACES_TEXT})"
MESSAGE = (
    '"StackForgeTenant " + object.metadata.name + ": namespace " + request.namespace + '
    + json.dumps(_REASON)
)


def policy_spec() -> dict[str, Any]:
    return {
        # Fail closed: a tenant admitted while the policy cannot be evaluated
        # would still be refused by the operator, so nothing is lost by refusing.
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{
            "apiGroups": [API_GROUP],
            "apiVersions": ["*"],
            # Only creation: the namespace of an existing object never changes.
            "operations": ["CREATE"],
            "resources": ["stackforgetenants"],
        }]},
        "validations": [{
            "expression": NAMESPACE_ALLOWED,
            "messageExpression": MESSAGE,
            "reason": "Forbidden",
        }],
    }


def binding_spec(policy_name: str) -> dict[str, Any]:
    return {"policyName": policy_name, "validationActions": ["Deny"]}
