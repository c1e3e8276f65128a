"""A lean S3 server for bench/backup.py: ``bench/leans3`` (gofakes3, objects in memory).

moto, the tests' S3 server, is Python: ingesting a 433 MiB dump cost it 4.5
CPU-seconds, as much as PostgreSQL spent producing it. On a 2-core machine that
CPU is taken from the dump and its client, which a real bucket (on other
machines) would never take. This server speaks the same S3 calls for a fraction
of that, so the bench can also show the runner with little beside it. It checks
no credentials and keeps nothing on disk: for the bench only, never for tests.

Built with the machine's Go on first use, cached by a hash of its sources.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SOURCE = Path(__file__).resolve().parent / "leans3"
CACHE = Path.home() / ".cache" / "stackforge" / "bench"
REGION = "us-east-1"
# gofakes3 checks no signature; boto3 and the AWS CLI still want some key.
ACCESS_KEY, SECRET_KEY = "bench", "bench-secret"
LISTENING = re.compile(r"leans3 listening on (\S+)")


def ensure_built() -> Path:
    """The server's binary, built when its sources changed."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update((SOURCE / name).read_bytes())
    binary = CACHE / f"leans3-{digest.hexdigest()[:16]}"
    if not binary.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".partial")
        subprocess.run(["go", "build", "-o", str(partial), "."], cwd=SOURCE, check=True,
                       env={**os.environ, "GOTOOLCHAIN": "local"})
        partial.rename(binary)
    return binary


class LeanS3Server:
    """What bench/backup.py uses of the tests' S3Server, served by leans3."""

    def __init__(self) -> None:
        self._popen: subprocess.Popen[str] | None = None
        self.endpoint = ""

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def start(self) -> None:
        # Only the address comes on stdout. stderr is not a pipe: the HTTP server
        # writes there now and then, and an unread pipe would fill and block it.
        self._popen = subprocess.Popen([str(ensure_built()), "-listen", "127.0.0.1:0"],
                                       stdout=subprocess.PIPE, text=True,
                                       start_new_session=True)
        assert self._popen.stdout is not None
        first = self._popen.stdout.readline()
        found = LISTENING.search(first)
        if found is None:
            self.stop()
            raise SystemExit(f"leans3 did not start: {first!r}")
        self.endpoint = f"http://{found.group(1)}"

    def stop(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": REGION}

    def client(self) -> S3Client:
        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(s3={"addressing_style": "path"}))

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name
