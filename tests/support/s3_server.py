"""The S3 server of the tests (now in the package, for ``dev`` too) and helpers to read it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stackforge_operator.devcluster.s3server import (
    REGION,
    S3Credentials,
    S3Server,
    available,
    moto_server_path,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["REGION", "S3Credentials", "S3Server", "available", "moto_server_path",
           "multipart_uploads", "object_sha256s"]


def object_sha256s(s3: S3Client, bucket: str, prefix: str) -> dict[str, str]:
    """sha256 of every object under ``prefix``, read back from the server."""
    import hashlib

    found: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"]
            digest = hashlib.sha256()
            for chunk in body.iter_chunks(1024 * 1024):
                digest.update(chunk)
            found[obj["Key"]] = digest.hexdigest()
    return found


def multipart_uploads(s3: S3Client, bucket: str, prefix: str = "") -> list[str]:
    """Keys of the multipart uploads still open under ``prefix``."""
    response = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    return [u["Key"] for u in response.get("Uploads", [])]
