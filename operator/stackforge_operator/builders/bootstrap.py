"""A tenant created from another tenant's archive (spec.bootstrap): the source's Secrets,
copied into this tenant's namespace, and the restore its primary runs.

A pod reads Secrets of its own namespace only: the source policy's S3 keys,
endpoint CA and repository passphrase are copied here for the restore, under
names of their own (never the tenant's own Secrets), and deleted once the
restored primary is Ready (reconcile/bootstrap.py).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Final

from stackforge_operator.builders import archiving, s3ca
from stackforge_operator.builders.common import Manifest, metadata
from stackforge_operator.models.backup import ObjectStorage
from stackforge_operator.models.common import SecretKeyRef
from stackforge_operator.models.effective import EffectiveTenant, Restore

S3_COPY: Final = "bootstrap-s3-credentials"
CA_COPY: Final = "bootstrap-s3-ca"
CIPHER_COPY: Final = "bootstrap-repository-cipher"
COPIES: Final = frozenset({S3_COPY, CA_COPY, CIPHER_COPY})
KEY_ID_KEY: Final = "access-key-id"
SECRET_KEY_KEY: Final = "secret-access-key"  # noqa: S105 - a key's name
CIPHER_KEY: Final = "passphrase"
COMPONENT: Final = "bootstrap"


def restore(source_tenant: str, repository_path: str, target: str,
            source_storage: ObjectStorage) -> Restore:
    """The restore as the primary runs it: the source's storage, named by the copies."""
    storage = archiving.storage_with_copies(source_storage, credentials=S3_COPY,
                                            key_id_key=KEY_ID_KEY,
                                            secret_key_key=SECRET_KEY_KEY, ca=CA_COPY)
    return Restore(source_tenant=source_tenant, repository_path=repository_path, target=target,
                   storage=storage, cipher=SecretKeyRef(name=CIPHER_COPY, key=CIPHER_KEY))


def _secret(t: EffectiveTenant, name: str, data: Mapping[str, str]) -> Manifest:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": metadata(t, name, COMPONENT),
        "data": {k: base64.b64encode(v.encode()).decode("ascii") for k, v in sorted(data.items())},
    }


def secret_copies(t: EffectiveTenant, *, s3_keys: tuple[str, str] | None, ca_pem: str | None,
                  passphrase: str) -> list[Manifest]:
    """The copies ``restore`` names: S3 keys (id, secret) and CA when the source has them."""
    out = [_secret(t, CIPHER_COPY, {CIPHER_KEY: passphrase})]
    if s3_keys is not None:
        out.append(_secret(t, S3_COPY, {KEY_ID_KEY: s3_keys[0], SECRET_KEY_KEY: s3_keys[1]}))
    if ca_pem is not None:
        out.append(_secret(t, CA_COPY, {s3ca.CA_FILE_NAME: ca_pem}))
    return out
