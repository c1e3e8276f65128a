"""Why a run failed: a CamelCase reason the operator puts in status, and a short message.

Messages come from tools (boto3, libpq, pg_dump); none of them print
credentials, and ``redact`` scrubs any secret value that slipped in anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

MAX_MESSAGE = 1000

# Environment variables whose values must never reach a log or a status.
SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "PGPASSWORD",
    "GRAFANA_TOKEN",
)

_S3_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
    "AuthorizationHeaderMalformed",
}
_S3_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "KMS.AccessDeniedException"}


class BackupFailure(Exception):  # noqa: N818 - it is a result, not only an error
    """A run failed for a known reason; ``reason`` is CamelCase, ``message`` short."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def secret_values(extra: Iterable[str] = ()) -> list[str]:
    values = [os.environ.get(name, "") for name in SECRET_ENV_VARS]
    return [v for v in (*values, *extra) if len(v) >= 4]


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` without any secret value, cut to a length a termination message holds."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, "<redacted>")
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def s3_failure(exc: Exception, doing: str) -> BackupFailure:
    """Map a boto3/botocore exception to a reason the operator can act on."""
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return BackupFailure("S3Unreachable", f"{doing}: {exc}")
    if isinstance(exc, ReadTimeoutError):
        return BackupFailure("S3Timeout", f"{doing}: {exc}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return BackupFailure("S3CredentialsMissing", f"{doing}: {exc}")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = f"{doing}: {code}: {error.get('Message', '')}".rstrip(": ")
        if code in _S3_AUTH_CODES:
            return BackupFailure("S3AuthenticationFailed", message)
        if code in _S3_DENIED_CODES or code == "403":
            return BackupFailure("S3AccessDenied", message)
        if code == "NoSuchBucket":
            return BackupFailure("S3BucketNotFound", message)
        if code.startswith("KMS"):
            return BackupFailure("S3EncryptionFailed", message)
        return BackupFailure("S3Error", message)
    if isinstance(exc, BotoCoreError):
        return BackupFailure("S3Error", f"{doing}: {exc}")
    return BackupFailure("S3Error", f"{doing}: {type(exc).__name__}: {exc}")


def database_failure(stderr: str, doing: str) -> BackupFailure:
    """Map libpq's message (psql or pg_dump stderr) to a reason."""
    text = " ".join(stderr.split())
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        reason = "DatabaseAuthenticationFailed"
    elif "does not exist" in lowered and "database" in lowered:
        reason = "DatabaseNotFound"
    elif "permission denied" in lowered:
        # The backup's role may not read an object: a grant to fix, not an outage.
        reason = "DatabasePermissionDenied"
    elif any(
        marker in lowered
        for marker in (
            "could not connect",
            "connection refused",
            "could not translate host name",
            "timeout expired",
            "no route to host",
            "server closed the connection unexpectedly",
            "connection to server",
        )
    ):
        reason = "DatabaseUnreachable"
    else:
        reason = "DatabaseError"
    return BackupFailure(reason, f"{doing}: {text}" if text else doing)
