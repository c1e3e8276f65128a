"""The S3 endpoint's CA bundle in a runner pod: one Secret key, one file, one variable.

Backup and drill runners talk to S3 through boto3, which verifies the
endpoint's certificate against the file ``AWS_CA_BUNDLE`` names when the
client is built without an explicit ``verify`` (backup/store.py builds it
so). The file sits at a fixed path, so that every tool in the pod (pgBackRest
next) finds the same bundle.
"""

from __future__ import annotations

from typing import Any, Final

CA_VOLUME: Final = "s3-ca"
CA_DIR: Final = "/etc/stackforge/s3-ca"
CA_FILE_NAME: Final = "ca.crt"
CA_PATH: Final = f"{CA_DIR}/{CA_FILE_NAME}"
CA_BUNDLE_ENV: Final = "AWS_CA_BUNDLE"


def volume(secret: str, key: str) -> dict[str, Any]:
    """Only the one key, under a fixed file name, whatever the Secret calls it."""
    return {"name": CA_VOLUME,
            "secret": {"secretName": secret, "items": [{"key": key, "path": CA_FILE_NAME}]}}


def mount() -> dict[str, Any]:
    return {"name": CA_VOLUME, "mountPath": CA_DIR, "readOnly": True}


def env() -> dict[str, Any]:
    return {"name": CA_BUNDLE_ENV, "value": CA_PATH}
