"""A loopback PostgreSQL archiving through pgBackRest into the tests' TLS S3 server.

For what is tested apart from a pod (tests/backup/test_pgbackrest_s3.py) and
for the physical backup benchmark (bench/physical_backup.py): the server's
archive_command pushes into an encrypted repository with the pods' options
(builders/archiving.py), configured by a file instead of the environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support import postgres_server as pg
from tests.support.fixtures_backup import running_s3_server
from tests.support.s3_server import S3Server

STANZA = "main"
REPOSITORY_PATH = "/tenants/archiving/incarnation-1"


@dataclass(frozen=True)
class Archiving:
    server: pg.PostgresServer
    s3: S3Server
    bucket: str
    config: Path
    cipher_pass: str


def _config(s3: S3Server, bucket: str, server: pg.PostgresServer, state: Path,
            cipher_pass: str, io_timeout: int) -> str:
    assert s3.ca_bundle is not None
    return "\n".join([
        "[global]",
        "repo1-type=s3",
        f"repo1-s3-bucket={bucket}",
        # A name the certificate carries: pgBackRest 2.45 matches DNS names only.
        "repo1-s3-endpoint=localhost",
        f"repo1-storage-port={s3.port}",
        f"repo1-s3-region={s3.region}",
        f"repo1-s3-key={s3.credentials.access_key_id}",
        f"repo1-s3-key-secret={s3.credentials.secret_access_key}",
        "repo1-s3-uri-style=path",
        f"repo1-storage-ca-file={state / 'ca.pem'}",
        f"repo1-path={REPOSITORY_PATH}",
        "repo1-cipher-type=aes-256-cbc",
        f"repo1-cipher-pass={cipher_pass}",
        "compress-type=zst",
        # As the pods have it (builders/archiving.py): small files in bundles.
        "repo1-bundle=y",
        "archive-async=y",
        f"spool-path={state / 'spool'}",
        f"lock-path={state / 'lock'}",
        f"log-path={state / 'log'}",
        "log-level-file=off",
        # What each command did, on its output (the keys are redacted there).
        "log-level-console=info",
        # Fail within a test's patience, not pgBackRest's default minute.
        f"io-timeout={io_timeout}",
        "",
        f"[{STANZA}]",
        f"pg1-path={server.data_dir}",
        f"pg1-socket-path={server.socket_dir}",
        f"pg1-port={server.port}",
        f"pg1-user={server.superuser}",
        "",
    ])


@contextmanager
def archiving_server(*, io_timeout: int = 10,
                     settings: dict[str, str] | None = None) -> Iterator[Archiving]:
    """The server, started, and its repository's configuration (no stanza yet);
    ``settings``: more of the server's (archive_timeout, ...)."""
    if shutil.which("pgbackrest") is None:
        raise RuntimeError("pgbackrest not found (apt-get install pgbackrest); .ci/run installs it")
    if not pg.available():
        raise RuntimeError("PostgreSQL not found (apt-get install postgresql); .ci/run installs it")
    with running_s3_server(tls=True) as s3:
        bucket = s3.create_bucket()
        state = Path(tempfile.mkdtemp(prefix="sf-pgbackrest-"))
        config = state / "pgbackrest.conf"
        cipher_pass = secrets.token_urlsafe(24)
        server = pg.PostgresServer(settings={
            "wal_level": "replica",
            "archive_mode": "on",
            "archive_command": f"pgbackrest --config={config} --stanza={STANZA} archive-push %p",
            **(settings or {}),
        })
        try:
            assert s3.ca_bundle is not None
            shutil.copy(s3.ca_bundle, state / "ca.pem")
            config.write_text(_config(s3, bucket, server, state, cipher_pass, io_timeout))
            config.chmod(0o600)
            for path in (state, *state.iterdir()):
                os.chown(path, server.os_user.uid, server.os_user.gid)
            server.start()
            yield Archiving(server, s3, bucket, config, cipher_pass)
        finally:
            server.stop()
            shutil.rmtree(state, ignore_errors=True)


def pgbackrest(archiving: Archiving, *command: str,
               timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A pgBackRest command as the server's user (it reads the data directory)."""
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        ["pgbackrest", f"--config={archiving.config}", f"--stanza={STANZA}", *command],
        capture_output=True, text=True, timeout=timeout, check=False,
        **archiving.server.os_user.popen_kwargs())
