"""An S3-compatible server process (moto's standalone server), spoken to over HTTP(S).

Used by the tests and by ``stackforge-operator dev`` (whose backups and drills
need somewhere to write); moto is a development dependency, so nothing in the
operator itself imports this module.

moto's server is a separate process with a real HTTP listener on a loopback
port (or the node's address): boto3 in the runner talks to it exactly as it
would to AWS or MinIO, and so does pgBackRest, over TLS: it runs moto's
application behind ``s3app.py``, which ends every response as pgBackRest needs.

Authentication is really enforced: at start-up the harness creates an IAM
user with an access key (moto accepts unsigned set-up requests until told
otherwise), then switches moto to enforcing mode through its
``/moto-api/reset-auth`` endpoint (the server-mode twin of
``INITIAL_NO_AUTH_ACTION_COUNT``).  From then on every S3 request is checked:
an unknown access key gets ``InvalidAccessKeyId``, a wrong secret
``SignatureDoesNotMatch``, a user without the permission ``AccessDenied``.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import httpx
from botocore.config import Config

from stackforge_operator.devcluster.pki import KeyPair, create_server_tls
from stackforge_operator.devcluster.ports import free_port

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_PR_SET_PDEATHSIG = 1
REGION = "us-east-1"

_ALLOW_ALL: dict[str, object] = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
# Can list and read but not write: a backup with these keys is refused.
_READ_ONLY: dict[str, object] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetObject"], "Resource": "*"}
    ],
}


def moto_server_path() -> str | None:
    beside_python = Path(sys.executable).parent / "moto_server"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("moto_server")


def available() -> bool:
    return moto_server_path() is not None


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
        }


class S3Server:
    """One ``moto_server`` process with IAM authentication enforced.

    With ``tls=True`` it serves HTTPS with a certificate of its own CA
    (:attr:`ca_bundle`), for ``host`` and 127.0.0.1: what pods on the real node
    reach it at (``host`` is then the node address), and what pgBackRest needs.
    """

    def __init__(self, *, host: str = "127.0.0.1", tls: bool = False,
                 server_names: Sequence[str] = ()) -> None:
        """``server_names``: DNS names the certificate carries besides ``localhost``
        (pgBackRest matches its endpoint against names only, never addresses)."""
        self.host = host
        self.port = free_port()
        self.tls = tls
        self.endpoint = f"{'https' if tls else 'http'}://{host}:{self.port}"
        self.region = REGION
        self.dir = Path(tempfile.mkdtemp(prefix="sf-s3-"))
        self.ca_bundle: Path | None = None
        # The serving certificate and key: a proxy put in front of the server
        # (the tests' S3 fault proxy) serves the same names with them.
        self.serving_tls: KeyPair | None = None
        self._tls_args: list[str] = []
        if tls:
            ca, server = create_server_tls(self.dir / "tls", "stackforge-test-s3",
                                           server_names=("localhost", *server_names),
                                           server_ips=tuple({host, "127.0.0.1"}))
            self.ca_bundle = ca.cert
            self.serving_tls = server
            self._tls_args = ["--ssl-cert", str(server.cert), "--ssl-key", str(server.key)]
        self.log_path = self.dir / "moto.log"
        self._popen: subprocess.Popen[bytes] | None = None
        self.credentials = S3Credentials("", "")
        self.read_only_credentials = S3Credentials("", "")

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def start(self, timeout: float = 30.0) -> None:
        binary = moto_server_path()
        if binary is None:
            raise FileNotFoundError("moto_server not found: pip install 'moto[server]'")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        # Keep large objects on disk rather than in the server's memory.
        env["TMPDIR"] = str(self.dir)
        # Path-style only: moto would otherwise take the first label of any dotted
        # host name it is reached by (a Service name, say) for a bucket.
        env["S3_IGNORE_SUBDOMAIN_BUCKETNAME"] = "true"
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(
                # moto's server with framed responses (s3app.py says why).
                [sys.executable, "-m", "stackforge_operator.devcluster.s3app",
                 "-H", self.host, "-p", str(self.port), *self._tls_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True, preexec_fn=_die_with_parent,
            )
        self._wait_listening(timeout)
        self.credentials = self._create_user("stackforge-backup", _ALLOW_ALL)
        self.read_only_credentials = self._create_user("stackforge-read-only", _READ_ONLY)
        # From here on every request must be signed by a known key.
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(self.ca_bundle)) if self.ca_bundle else True)
        response = httpx.post(f"{self.endpoint}/moto-api/reset-auth", content=b"0", timeout=10,
                              verify=verify)
        response.raise_for_status()

    def _wait_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._popen is not None
            if self._popen.poll() is not None:
                raise RuntimeError(f"moto_server exited during start-up:\n{self.log_tail()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.1)
                continue
            return
        self.stop()
        raise TimeoutError(f"moto_server not listening after {timeout}s")

    def _create_user(self, name: str, policy: dict[str, object]) -> S3Credentials:
        # Before auth is switched on moto accepts any signature, so set-up
        # signs with placeholder keys.
        iam = boto3.client(
            "iam", endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id="setup", aws_secret_access_key="setup",  # noqa: S106 - moto accepts any key before auth is on
            verify=self.verify,
        )
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="backup", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return S3Credentials(key["AccessKeyId"], key["SecretAccessKey"])

    def stop(self, timeout: float = 15.0) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait(timeout=timeout)
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def verify(self) -> str | bool:
        """What a client verifies the server with: its CA file, or the default."""
        return str(self.ca_bundle) if self.ca_bundle else True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    # ------------------------------------------------------------------ clients

    def client(self, credentials: S3Credentials | None = None) -> S3Client:
        creds = credentials or self.credentials
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
            verify=self.verify,
        )

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or f"sf-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def env(self) -> dict[str, str]:
        """Environment for a process that uploads with the full-access key."""
        return {**self.credentials.env(), "AWS_DEFAULT_REGION": self.region}
