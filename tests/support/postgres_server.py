"""A throwaway PostgreSQL server from Debian's packages, for tests and the benchmark.

The server is the real ``postgres`` binary: ``initdb`` into a fresh directory,
then the postmaster as a child of this process, listening on a free loopback
port (password auth, so the runner's ``PGPASSWORD`` really matters) and on a
unix socket inside its directory (trust, for the harness's own ``psql``).
PostgreSQL refuses to run as root, so under root everything runs as the
``postgres`` system user the Debian package creates.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from stackforge_operator.devcluster.ports import free_port

_PR_SET_PDEATHSIG = 1


def find_bin_dir() -> Path:
    """The newest ``/usr/lib/postgresql/<ver>/bin`` that has a server, or $PG_BIN_DIR."""
    override = os.environ.get("PG_BIN_DIR")
    if override:
        return Path(override)
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise FileNotFoundError(
            "no PostgreSQL server under /usr/lib/postgresql: apt-get install postgresql"
        )
    return candidates[-1]


def available() -> bool:
    try:
        find_bin_dir()
    except FileNotFoundError:
        return False
    return True


@dataclass(frozen=True)
class PgUser:
    """The account the server runs as (the current one unless we are root)."""

    uid: int
    gid: int
    name: str

    @classmethod
    def for_server(cls) -> PgUser:
        if os.geteuid() != 0:
            return cls(os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name)
        entry = pwd.getpwnam(os.environ.get("PG_TEST_OS_USER", "postgres"))
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name)

    def popen_kwargs(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _die_with_parent() -> None:
    # Runs after subprocess has switched user (so the setting is not cleared by
    # the credential change): if the test runner is killed, the postmaster dies
    # too, and its backends follow it on their own.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass(frozen=True)
class PgConnection:
    """How a client (the backup runner) reaches the server over TCP with a password."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)

    def env(self, database: str) -> dict[str, str]:
        """libpq environment variables: the runner takes its connection only from these."""
        return {
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": database,
        }


class PostgresServer:
    """One postmaster in a temporary directory; ``start()`` then ``stop()``."""

    def __init__(self, base_dir: Path | None = None, *, bin_dir: Path | None = None,
                 settings: Mapping[str, str] | None = None) -> None:
        """``settings``: server parameters on top of the defaults below."""
        self.bin_dir = bin_dir or find_bin_dir()
        self.settings = dict(settings or {})
        self.os_user = PgUser.for_server()
        # Not pytest's tmp_path: that is private to root (0700), and the server
        # may run as another user, so it gets a directory of its own.
        self.root = Path(tempfile.mkdtemp(prefix="sf-pg-", dir=base_dir))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "run"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.superuser = "postgres"
        self.password = secrets.token_urlsafe(18)
        self._popen: subprocess.Popen[bytes] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def connection(self) -> PgConnection:
        return PgConnection("127.0.0.1", self.port, self.superuser, self.password)

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def version(self) -> str:
        out = subprocess.run(
            [self.bin("postgres"), "--version"], capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def start(self, timeout: float = 60.0, *, initdb: bool = True,
              environment: Mapping[str, str] | None = None) -> None:
        """``initdb=False``: start on the data directory already there (a
        restored one); ``environment``: added to the server's (its
        restore_command's, say)."""
        self.socket_dir.mkdir()
        os.chown(self.root, self.os_user.uid, self.os_user.gid)
        os.chown(self.socket_dir, self.os_user.uid, self.os_user.gid)
        if initdb:
            self._initdb()
        argv = [
            self.bin("postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.socket_dir}",
            # Throwaway data: durability only costs time here.
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            "-c", "max_connections=50",
            "-c", "log_min_messages=warning",
            *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")),
        ]
        with self.log_path.open("ab") as log:
            self._popen = subprocess.Popen(  # type: ignore[call-overload]
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
                env={**os.environ, **(environment or {})},
                **self.os_user.popen_kwargs(),
            )
        self._wait_ready(timeout)

    def _initdb(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        os.chown(pwfile, self.os_user.uid, self.os_user.gid)
        pwfile.chmod(0o600)
        try:
            self._as_server_user(
                self.bin("initdb"),
                "--pgdata", str(self.data_dir),
                "--username", self.superuser,
                "--pwfile", str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            )
        finally:
            pwfile.unlink()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._popen is not None
            if self._popen.poll() is not None:
                raise RuntimeError(f"postgres exited during start-up:\n{self.log_tail()}")
            ready = subprocess.run(
                [self.bin("pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(self.port)],
                check=False,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"postgres not ready after {timeout}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT), then remove the directory; no process is left."""
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(signal.SIGINT)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait(timeout=timeout)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def _as_server_user(self, *argv: str) -> None:
        result = subprocess.run(  # type: ignore[call-overload]
            list(argv), capture_output=True, text=True, check=False, **self.os_user.popen_kwargs()
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stderr}")

    # ------------------------------------------------------------------ SQL helpers

    def psql(
        self,
        sql: str,
        database: str = "postgres",
        *,
        check: bool = True,
        timeout: float = 600.0,
        variables: Mapping[str, str] | None = None,
    ) -> str:
        """Run SQL as the superuser over the unix socket; returns unaligned tuples-only output.

        ``variables`` become psql variables: write ``:'name'`` for a quoted
        literal and ``:"name"`` for a quoted identifier, never an f-string.
        """
        settings = [f"--set={k}={v}" for k, v in (variables or {}).items()]
        result = subprocess.run(
            [
                self.bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", *settings,
                "-h", str(self.socket_dir), "-p", str(self.port),
                "-U", self.superuser, "-d", database, "-f", "-",
            ],
            input=sql, capture_output=True, text=True, timeout=timeout, check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def create_database(self, name: str) -> str:
        self.psql('CREATE DATABASE :"db"', variables={"db": name})
        return name

    def drop_database(self, name: str) -> None:
        self.psql('DROP DATABASE IF EXISTS :"db" WITH (FORCE)', variables={"db": name})

    def row_counts(self, database: str) -> dict[str, int]:
        """Exact row count of every user table, keyed ``schema.table``."""
        tables = self.psql(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') "
            "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%' ORDER BY 1",
            database,
        ).split()
        counts = {}
        for table in tables:
            schema, name = table.split(".", 1)
            counts[table] = int(self.psql(
                'SELECT count(*) FROM :"schema".:"name"', database,
                variables={"schema": schema, "name": name},
            ))
        return counts

    def table_checksum(self, database: str, schema: str, table: str) -> str:
        """md5 over every row's text, in text order: equal data gives equal checksums."""
        return self.psql(
            "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
            'FROM :"schema".:"table" t',
            database,
            variables={"schema": schema, "table": table},
        ).strip()

    def backend_pids(self, application_name: str) -> list[int]:
        out = self.psql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = :'app'",
            variables={"app": application_name},
        )
        return [int(line) for line in out.split()]

    def terminate_backends(self, application_name: str) -> int:
        out = self.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = :'app'",
            variables={"app": application_name},
        )
        return int(out.strip() or 0)


# ---------------------------------------------------------------------- seed data


def seed_small(server: PostgresServer, database: str) -> dict[str, int]:
    """A few tables of every common shape (two schemas, a FK, bytea, json); returns counts."""
    server.psql(
        """
        CREATE SCHEMA shop;
        CREATE TABLE shop.customers (
            id bigint PRIMARY KEY, name text NOT NULL, email text UNIQUE, meta jsonb
        );
        CREATE TABLE shop.orders (
            id bigserial PRIMARY KEY,
            customer_id bigint NOT NULL REFERENCES shop.customers(id),
            total numeric(12, 2) NOT NULL,
            placed_at timestamptz NOT NULL,
            blob bytea
        );
        CREATE TABLE public.audit_log (id serial PRIMARY KEY, line text);
        CREATE TABLE public.empty_table (id int);
        INSERT INTO shop.customers
            SELECT g, 'customer ' || g, 'c' || g || '@example.test',
                   jsonb_build_object('tier', g % 3, 'tags', jsonb_build_array('a', g))
            FROM generate_series(1, 500) g;
        INSERT INTO shop.orders (customer_id, total, placed_at, blob)
            SELECT 1 + g % 500, (g * 7 % 10000) / 100.0,
                   timestamptz '2026-01-01' + g * interval '37 minutes',
                   decode(md5(g::text), 'hex')
            FROM generate_series(1, 4000) g;
        INSERT INTO public.audit_log (line)
            SELECT 'event ' || g || E' with\\ttab and ''quote''' FROM generate_series(1, 1234) g;
        """,
        database,
    )
    return server.row_counts(database)


def seed_bulk(server: PostgresServer, database: str, mebibytes: int) -> None:
    """About ``mebibytes`` of table data that compresses like real rows (~2.5:1).

    UNLOGGED only makes loading fast (no WAL): pg_dump dumps its rows like any
    other table's. Rows go in batches so that no single statement runs long.
    """
    # md5 text is 32 hex chars; each row is ~ 120 bytes on disk with overhead.
    rows = mebibytes * 1024 * 1024 // 120
    server.psql(
        "CREATE UNLOGGED TABLE IF NOT EXISTS public.bulk "
        "(id bigint, a text, b text, n double precision)",
        database,
    )
    batch = 2_000_000
    for start in range(0, rows, batch):
        stop = min(rows, start + batch)
        server.psql(
            "INSERT INTO public.bulk SELECT g, md5(g::text), md5((g * 31)::text), random() "
            "FROM generate_series(:first::bigint, :last::bigint) g",
            database,
            variables={"first": str(start + 1), "last": str(stop)},
        )


def database_size(server: PostgresServer, database: str) -> int:
    return int(server.psql("SELECT pg_database_size(:'db')", variables={"db": database}))


def env_for(
    server: PostgresServer, database: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A process environment for the runner: PATH etc. plus the libpq variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "AWS_"))}
    env.update(server.connection.env(database))
    env.update(extra or {})
    return env
