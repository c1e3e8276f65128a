"""The backup bucket through boto3: streaming multipart uploads, runs, manifests, clean-up.

Credentials are never handled here: boto3's default chain reads
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` from the environment (set
from the policy's Secret) or the pod's ambient identity.

Everything here blocks; the operator calls it from a worker thread.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import ValidationError

from stackforge_operator.backup.dump_format import DumpCompression, dump_name
from stackforge_operator.backup.manifest import MANIFEST_NAME, Manifest
from stackforge_operator.backup.runid import run_started_at
from stackforge_operator.models.backup import DEFAULT_REGION, ObjectStorage, SSEAlgorithm

if TYPE_CHECKING:
    from botocore.config import _S3Dict
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger("stackforge_operator.backup")

# Manifests already warned about as unreadable (see BackupStore.manifests).
_unreadable_manifests: set[str] = set()
# Manifests read, by (endpoint, bucket, key, size, ETag), least recently used
# first: enough for the runs of the policies whose backups run at one time
# (a manifest is a few kB; its row counts grow with the tables).
MANIFESTS_KEPT = 4096
_manifests_read: OrderedDict[tuple[str, str, str, int, str], Manifest] = OrderedDict()
_manifests_lock = threading.Lock()

MiB = 1024 * 1024
DEFAULT_PART_SIZE = 8 * MiB
# S3's limits: parts of 5 MiB at least (but the last), at most 10,000 of them.
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
# Parts uploading while the next one is read: enough to keep the pipe from
# pg_dump flowing, few enough that memory stays (parts + 1) x part size.
DEFAULT_PARTS_IN_FLIGHT = 2
# Parts grow with the object: 10,000 parts of 8 MiB stopped every dump past
# 78 GiB (DumpTooLarge, a few hundred GB of database), each run streaming that
# much first. Doubling every 2,000 parts up to 32 MiB reaches 234 GiB, while
# (parts in flight + 1) x 32 MiB stays well within the runner's memory limit
# (builders/common.py: 256Mi); a dump of up to 15.6 GiB keeps 8 MiB parts.
PART_GROWTH_EVERY = 2_000
MAX_GROWN_PART_SIZE = 32 * MiB


def part_size_of(number: int, base: int) -> int:
    """The size of part ``number`` (from 1) of an upload whose first parts have
    ``base`` bytes: doubled every PART_GROWTH_EVERY parts, up to
    MAX_GROWN_PART_SIZE (never below ``base``)."""
    grown = base << min((number - 1) // PART_GROWTH_EVERY, 8)
    return max(base, min(grown, MAX_GROWN_PART_SIZE))


def capacity(base: int) -> int:
    """The largest object an upload starting with ``base``-byte parts can hold."""
    return sum(part_size_of(n, base) for n in range(1, MAX_PARTS + 1))


@dataclass(frozen=True)
class StoreConfig:
    """Where and how to write; built from the BackupPolicy's ``spec.storage`` or CLI flags."""

    bucket: str
    prefix: str = "stackforge"
    endpoint: str | None = None
    region: str | None = None
    force_path_style: bool | None = None
    sse: SSEAlgorithm | None = None
    kms_key_id: str | None = None
    # botocore retries: a few, so that a blip is ridden out but an unreachable
    # endpoint fails the run within seconds rather than minutes.
    max_attempts: int = 3
    connect_timeout: float = 10.0
    read_timeout: float = 120.0

    @classmethod
    def from_policy(cls, storage: ObjectStorage, **overrides: Any) -> StoreConfig:
        sse = storage.server_side_encryption
        values: dict[str, Any] = {
            "bucket": storage.bucket,
            "prefix": storage.prefix,
            "endpoint": storage.endpoint,
            "region": storage.region,
            "force_path_style": storage.force_path_style,
            "sse": sse.algorithm if sse else None,
            "kms_key_id": sse.kms_key_id if sse else None,
        }
        values.update(overrides)
        return cls(**values)

    def sse_args(self) -> dict[str, Any]:
        """Extra arguments for PutObject/CreateMultipartUpload."""
        if self.sse is None:
            return {}
        args: dict[str, Any] = {"ServerSideEncryption": self.sse.value}
        if self.sse == SSEAlgorithm.KMS and self.kms_key_id:
            args["SSEKMSKeyId"] = self.kms_key_id
        return args

    def tenant_prefix(self, tenant: str) -> str:
        return f"{self.prefix}/{tenant}/"

    def run_prefix(self, tenant: str, run_id: str) -> str:
        return f"{self.prefix}/{tenant}/{run_id}/"


def missing_object(error: ClientError) -> bool:
    """Whether S3 answered that the object is not there (GET: NoSuchKey; HEAD,
    which has no body to name the error: its status, 404)."""
    return error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")


def add_location_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags naming where backups are (``backup run`` and ``drill run`` alike)."""
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", default="stackforge", help="key prefix (default: %(default)s)")
    parser.add_argument("--endpoint", help="S3-compatible endpoint URL; default: AWS")
    parser.add_argument("--region", help=f"default: {DEFAULT_REGION}")
    parser.add_argument("--force-path-style", action="store_true",
                        help="address the bucket by path (most S3-compatible servers)")


def config_from_arguments(args: argparse.Namespace, **options: Any) -> StoreConfig:
    """A StoreConfig from :func:`add_location_arguments`' flags, plus ``options``."""
    return StoreConfig(
        bucket=args.bucket,
        prefix=args.prefix.strip("/"),
        endpoint=args.endpoint,
        region=args.region,
        force_path_style=args.force_path_style or None,
        **options,
    )


def make_client(config: StoreConfig) -> S3Client:
    # Imported here, not with the module: boto3 and an S3 client cost a runner
    # about 0.4 s of CPU, and a Physical drill's runner needs them only for its
    # report, after its verdict. Before that it starts beside the restore it
    # waits for, whose CPU it would take.
    import boto3
    from botocore.config import Config

    s3_options: _S3Dict = {"addressing_style": "path"} if config.force_path_style else {}
    return boto3.session.Session().client(
        "s3",
        endpoint_url=config.endpoint,
        region_name=config.region or DEFAULT_REGION,
        config=Config(
            s3=s3_options,
            retries={"max_attempts": config.max_attempts, "mode": "standard"},
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            # Room for the upload threads and the main thread at once.
            max_pool_connections=DEFAULT_PARTS_IN_FLIGHT + 4,
        ),
    )


# --------------------------------------------------------------------------- uploads


@dataclass(frozen=True)
class UploadResult:
    key: str
    size_bytes: int
    sha256: str
    parts: int


class TooLarge(Exception):  # noqa: N818 - named for the reason it reports
    """The stream needs more than S3's 10,000 parts at this part size."""


def _read_part(stream: IO[bytes], size: int) -> bytes:
    """``size`` bytes, fewer only at EOF: S3 refuses a part under 5 MiB unless it
    is the last. On a pipe, read(n) already blocks until n bytes or EOF (one
    allocation per part, no copy); a compressing reader may answer short."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    pieces = [data]
    missing = size - len(data)
    while missing > 0:
        more = stream.read(missing)
        if not more:
            break
        pieces.append(more)
        missing -= len(more)
    return b"".join(pieces)


class MultipartUpload:
    """One S3 multipart upload fed from a stream, with bounded memory.

    ``upload_from`` reads ``part_size`` bytes at a time (more for later parts:
    ``part_size_of``), hashes them, and hands
    them to a small thread pool; it waits for the oldest part when
    ``parts_in_flight`` are already uploading, so at most
    ``parts_in_flight + 1`` parts are ever held. ``complete`` and ``abort`` are
    separate so that the caller can decide after the producer (pg_dump) has
    exited: a dump whose producer failed must never be completed.
    """

    def __init__(
        self,
        client: S3Client,
        config: StoreConfig,
        key: str,
        *,
        part_size: int = DEFAULT_PART_SIZE,
        parts_in_flight: int = DEFAULT_PARTS_IN_FLIGHT,
        content_type: str = "application/octet-stream",
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        self.client = client
        self.config = config
        self.key = key
        self.part_size = part_size
        self.parts_in_flight = max(1, parts_in_flight)
        self.content_type = content_type
        self.upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._size = 0
        self._sha256 = hashlib.sha256()

    def start(self) -> None:
        response = self.client.create_multipart_upload(
            Bucket=self.config.bucket,
            Key=self.key,
            ContentType=self.content_type,
            **self.config.sse_args(),
        )
        self.upload_id = response["UploadId"]

    def upload_from(self, stream: IO[bytes]) -> None:
        """Upload everything ``stream`` yields until EOF; raises on the first failed part."""
        if self.upload_id is None:
            self.start()
        pending: deque[tuple[int, Future[str]]] = deque()
        with ThreadPoolExecutor(self.parts_in_flight, thread_name_prefix="s3-part") as pool:
            try:
                number = 0
                while True:
                    data = _read_part(stream, part_size_of(number + 1, self.part_size))
                    if not data and number > 0:
                        break
                    number += 1
                    if number > MAX_PARTS:
                        raise TooLarge(
                            f"more than {capacity(self.part_size) // MiB // 1024} GiB: "
                            f"{MAX_PARTS} parts, the most S3 takes, of "
                            f"{self.part_size // MiB} MiB growing to "
                            f"{max(self.part_size, MAX_GROWN_PART_SIZE) // MiB} MiB"
                        )
                    self._sha256.update(data)
                    self._size += len(data)
                    pending.append((number, pool.submit(self._put_part, number, data)))
                    del data
                    # Hold at most parts_in_flight, and surface a failed part at once.
                    while pending and (
                        len(pending) >= self.parts_in_flight or pending[0][1].done()
                    ):
                        self._collect(pending.popleft())
                while pending:
                    self._collect(pending.popleft())
            finally:
                # Leaving the pool waits for parts already uploading, so an
                # abort after this cannot race a part still arriving.
                for _, future in pending:
                    future.cancel()

    def _put_part(self, number: int, data: bytes) -> str:
        assert self.upload_id is not None
        response = self.client.upload_part(
            Bucket=self.config.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
        )
        return response["ETag"]

    def _collect(self, item: tuple[int, Future[str]]) -> None:
        number, future = item
        self._parts.append({"PartNumber": number, "ETag": future.result()})

    def complete(self) -> UploadResult:
        assert self.upload_id is not None
        parts = sorted(self._parts, key=lambda p: p["PartNumber"])
        self.client.complete_multipart_upload(
            Bucket=self.config.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": parts},
        )
        self.upload_id = None
        return UploadResult(self.key, self._size, self._sha256.hexdigest(), len(parts))

    def abort(self) -> None:
        """Best effort: the server drops the parts; retention sweeps up what this misses."""
        if self.upload_id is None:
            return
        upload_id, self.upload_id = self.upload_id, None
        self.client.abort_multipart_upload(
            Bucket=self.config.bucket, Key=self.key, UploadId=upload_id
        )

    @property
    def bytes_read(self) -> int:
        return self._size


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class StoredObject:
    key: str
    size_bytes: int
    last_modified: datetime
    etag: str = ""


@dataclass(frozen=True)
class OpenUpload:
    key: str
    upload_id: str
    initiated: datetime


# A run's dump, by name: "/postgres.dump" or "/postgres.dump.zst".
DUMP_NAMES = tuple("/" + dump_name(c) for c in DumpCompression)


@dataclass
class RunListing:
    """What the bucket holds for one run id (objects, open uploads); no manifest parsing."""

    run_id: str
    started_at: datetime
    objects: list[StoredObject] = field(default_factory=list)
    open_uploads: list[OpenUpload] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return any(o.key.endswith("/" + MANIFEST_NAME) for o in self.objects)

    @property
    def has_dump(self) -> bool:
        """Whether it holds a PostgreSQL dump (of either compression)."""
        return any(o.key.endswith(DUMP_NAMES) for o in self.objects)

    @property
    def size_bytes(self) -> int:
        return sum(o.size_bytes for o in self.objects)


class BackupStore:
    """Reads and writes one bucket's backups; all keys live under ``config.prefix``."""

    def __init__(self, config: StoreConfig, client: S3Client | None = None) -> None:
        self.config = config
        self._client = client

    @property
    def client(self) -> S3Client:
        """The S3 client, made on first use (see make_client)."""
        if self._client is None:
            self._client = make_client(self.config)
        return self._client

    @property
    def bucket(self) -> str:
        return self.config.bucket

    # -- small objects ---------------------------------------------------------

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/json"
    ) -> UploadResult:
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            **self.config.sse_args(),
        )
        return UploadResult(key, len(data), hashlib.sha256(data).hexdigest(), 1)

    def get_bytes(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def object_size(self, key: str) -> int:
        return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]

    def manifest_key(self, tenant: str, run_id: str) -> str:
        return self.config.run_prefix(tenant, run_id) + MANIFEST_NAME

    def write_manifest(self, manifest: Manifest) -> str:
        key = self.manifest_key(manifest.tenant, manifest.run_id)
        self.put_bytes(key, manifest.to_json())
        return key

    def read_manifest(self, tenant: str, run_id: str) -> Manifest | None:
        """The run's manifest, or None when the run is incomplete (no manifest object)."""
        try:
            data = self.get_bytes(self.manifest_key(tenant, run_id))
        except ClientError as exc:
            if missing_object(exc):
                return None
            raise
        return Manifest.from_json(data)

    def download(self, key: str, sink: IO[bytes], chunk_size: int = MiB) -> str:
        """Stream an object into ``sink``; returns its sha256 as computed on the way."""
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        digest = hashlib.sha256()
        for chunk in body.iter_chunks(chunk_size):
            digest.update(chunk)
            sink.write(chunk)
        return digest.hexdigest()

    def iter_object(self, key: str, chunk_size: int = MiB) -> Iterator[bytes]:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        yield from body.iter_chunks(chunk_size)

    # -- runs ------------------------------------------------------------------

    def _objects(self, prefix: str) -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield StoredObject(obj["Key"], obj["Size"], obj["LastModified"],
                                   obj.get("ETag", ""))

    def open_uploads(self, prefix: str) -> list[OpenUpload]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        found = []
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for upload in page.get("Uploads", []):
                found.append(OpenUpload(upload["Key"], upload["UploadId"], upload["Initiated"]))
        return found

    def list_runs(self, tenant: str, *, uploads: bool = True) -> list[RunListing]:
        """Every run id under ``<prefix>/<tenant>/``, oldest first.

        Keys whose second-to-last segment is not a run id are not ours and are
        left out (and so never deleted by retention).  ``uploads=False`` skips
        the open multipart uploads: a reader that only looks for complete runs
        (a drill) then needs no ListBucketMultipartUploads permission.
        """
        tenant_prefix = self.config.tenant_prefix(tenant)
        runs: dict[str, RunListing] = {}

        def listing(key: str) -> RunListing | None:
            run_id = key[len(tenant_prefix):].split("/", 1)[0]
            started = run_started_at(run_id)
            if started is None or "/" not in key[len(tenant_prefix):]:
                return None
            return runs.setdefault(run_id, RunListing(run_id, started))

        for obj in self._objects(tenant_prefix):
            if (run := listing(obj.key)) is not None:
                run.objects.append(obj)
        for upload in self.open_uploads(tenant_prefix) if uploads else ():
            if (run := listing(upload.key)) is not None:
                run.open_uploads.append(upload)
        return sorted(runs.values(), key=lambda r: (r.started_at, r.run_id))

    def manifests(self, tenant: str) -> list[Manifest]:
        """Manifests of the complete runs, oldest first: the backups that exist.

        A manifest this code cannot read (a newer format, a damaged or
        hand-made object) is left out, with a warning once per object: one such
        object must not hide every other backup of the tenant.
        """
        found = []
        # Only objects: open uploads say nothing of complete runs.
        for run in self.list_runs(tenant, uploads=False):
            if not run.complete:
                continue
            try:
                manifest = self._manifest_of(tenant, run)
            except ValidationError as error:
                key = self.manifest_key(tenant, run.run_id)
                if key not in _unreadable_manifests:
                    _unreadable_manifests.add(key)
                    log.warning("manifest s3://%s/%s is unreadable, its run left out: %s",
                                self.bucket, key, error.errors(include_url=False,
                                                               include_input=False)[:3])
                continue
            if manifest is not None:
                found.append(manifest)
        return found

    def _manifest_of(self, tenant: str, run: RunListing) -> Manifest | None:
        """The run's manifest: from memory when this object (by its key, size and
        ETag as listed) was read before, else read. A manifest is written once and
        never changed, yet a policy reads all of its tenant's at every pass, every
        5 s while a run lasts: a policy keeping a year of dailies sent some 400
        GETs each time."""
        key = self.manifest_key(tenant, run.run_id)
        listed = next((o for o in run.objects if o.key == key), None)
        if listed is None or not listed.etag:
            return self.read_manifest(tenant, run.run_id)
        identity = (str(self.client.meta.endpoint_url), self.bucket, key, listed.size_bytes,
                    listed.etag)
        with _manifests_lock:
            held = _manifests_read.get(identity)
            if held is not None:
                _manifests_read.move_to_end(identity)
                return held
        manifest = self.read_manifest(tenant, run.run_id)
        if manifest is not None:
            with _manifests_lock:
                _manifests_read[identity] = manifest
                while len(_manifests_read) > MANIFESTS_KEPT:
                    _manifests_read.popitem(last=False)
        return manifest

    def delete_run(self, tenant: str, run_id: str) -> int:
        """Delete a run's objects and abort its open uploads; returns objects deleted.

        The manifest goes first: if the deletion stops half-way, what is left
        is an incomplete run (garbage), never a "complete" run missing its dump.
        """
        prefix = self.config.run_prefix(tenant, run_id)
        keys = [o.key for o in self._objects(prefix)]
        manifest = prefix + MANIFEST_NAME
        had_manifest = manifest in keys
        if had_manifest:
            self.client.delete_object(Bucket=self.bucket, Key=manifest)
            keys.remove(manifest)
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            if errors := response.get("Errors"):
                first = errors[0]
                raise RuntimeError(
                    f"deleting {first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
        for upload in self.open_uploads(prefix):
            self.abort_upload(upload)
        return len(keys) + had_manifest

    # -- abandoned uploads -------------------------------------------------------

    def abandoned_uploads(
        self, tenant: str, older_than: timedelta, now: datetime | None = None
    ) -> list[OpenUpload]:
        """Open multipart uploads of the tenant's runs older than ``older_than``.

        Age counts from the later of the server's ``Initiated`` and the run id's
        time: some S3-compatible servers report a fixed ``Initiated``, and a run
        cannot start uploading before its id was made, so both must be old.
        """
        now = now or datetime.now(UTC)
        old = []
        for upload in self.open_uploads(self.config.tenant_prefix(tenant)):
            run_id = upload.key[len(self.config.tenant_prefix(tenant)):].split("/", 1)[0]
            started = run_started_at(run_id)
            if started is None:
                continue  # not a run of ours: not ours to abort
            if now - max(upload.initiated, started) > older_than:
                old.append(upload)
        return old

    def abort_upload(self, upload: OpenUpload) -> None:
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id
            )
        except ClientError as exc:
            # Already gone (completed or aborted by someone else): nothing to do.
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise

