"""Zstd and gzip logical dumps (#18 item 3): names, formats, what pg_dump is asked
for, decoding, and the runner's argument in the backup Job (the dumps themselves,
made and restored against a real PostgreSQL: tests/drill/test_runner.py)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from stackforge_operator.backup import cli
from stackforge_operator.backup.dump_format import (
    DECODED_PIECE_SIZE,
    GZIP_FORMAT,
    ZSTD_FORMAT,
    DumpCompression,
    UndecodableDumpError,
    compressed,
    decoder,
    dump_format,
    dump_name,
    pg_dump_level,
)
from stackforge_operator.builders import backup
from stackforge_operator.models.backup import BackupPolicySpec
from tests.unit.builders.tenants import tenant

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_names_formats_and_pg_dumps_own_compression() -> None:
    assert (dump_name(DumpCompression.GZIP), dump_format(DumpCompression.GZIP)) == (
        "postgres.dump", GZIP_FORMAT)
    assert (dump_name(DumpCompression.ZSTD), dump_format(DumpCompression.ZSTD)) == (
        "postgres.dump.zst", ZSTD_FORMAT)
    # zstd compresses after pg_dump, which then must not compress too.
    assert pg_dump_level(DumpCompression.ZSTD, None) == 0
    assert pg_dump_level(DumpCompression.ZSTD, 6) == 0
    assert pg_dump_level(DumpCompression.GZIP, None) is None
    assert pg_dump_level(DumpCompression.GZIP, 6) == 6


def test_a_zstd_stream_decodes_chunk_by_chunk_to_what_was_read() -> None:
    original = os.urandom(3 << 20) + b"text " * 400_000
    stream = compressed(io.BytesIO(original), DumpCompression.ZSTD)
    stored = stream.read()
    assert stored[:4] == b"\x28\xb5\x2f\xfd" and len(stored) < len(original)
    decode = decoder(ZSTD_FORMAT)
    assert decode is not None
    chunks = [stored[i:i + 65536] for i in range(0, len(stored), 65536)]
    pieces: list[bytes] = []
    for chunk in chunks:
        decode(chunk, pieces.append)
    assert b"".join(pieces) == original


def test_a_chunk_that_decodes_to_far_more_comes_in_bounded_pieces() -> None:
    """A blank-padded table compresses thousands-fold: one stored chunk decoded in
    one piece was hundreds of MiB, and the drill runner was killed restoring it."""
    original = (b"row " + b" " * 84 + b"\n") * (64 * 1024 * 1024 // 89)
    stored = compressed(io.BytesIO(original), DumpCompression.ZSTD).read()
    assert len(original) // len(stored) > 1000  # one 4 MiB chunk would be >4 GiB
    decode = decoder(ZSTD_FORMAT)
    assert decode is not None
    sizes: list[int] = []
    joined = hashlib.sha256()

    def take(piece: bytes) -> None:
        sizes.append(len(piece))
        joined.update(piece)
    decode(stored, take)  # the whole dump as one stored chunk
    assert max(sizes) <= DECODED_PIECE_SIZE and len(sizes) >= 64
    assert joined.hexdigest() == hashlib.sha256(original).hexdigest()


def test_gzip_dumps_are_read_as_they_are_and_unknown_formats_refused() -> None:
    plain = io.BytesIO(b"PGDMP")
    assert compressed(plain, DumpCompression.GZIP) is plain
    assert decoder(GZIP_FORMAT) is None
    assert decoder(None) is None  # manifests written before formats were recorded
    with pytest.raises(ValueError, match="unknown dump format 'pg_dump-custom\\+lz4'"):
        decoder("pg_dump-custom+lz4")


def test_bytes_that_are_no_zstd_stream_raise_a_named_error() -> None:
    decode = decoder(ZSTD_FORMAT)
    assert decode is not None
    with pytest.raises(UndecodableDumpError):
        decode(b"PGDMP not zstd at all" * 100, lambda _piece: None)


def test_the_runner_takes_the_compression_as_a_flag() -> None:
    parser = cli.build_parser()
    base = ["--tenant", "acme", "--bucket", "backups"]
    assert cli.request_from_args(parser.parse_args(base), parser).compression is \
        DumpCompression.GZIP
    zstd = cli.request_from_args(parser.parse_args([*base, "--dump-compression", "zstd"]),
                                 parser)
    assert zstd.compression is DumpCompression.ZSTD
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--dump-compression", "lz4"])


def _runner_args(changes: dict[str, Any]) -> list[str]:
    spec = yaml.safe_load((EXAMPLES / "backuppolicy-acme.yaml").read_text())["spec"]
    policy = BackupPolicySpec.model_validate({**spec, **changes})
    t = tenant()
    job = backup.cron_job("nightly", t.namespace, policy, t, "0 2 * * *", "Etc/UTC")
    args: list[str] = job["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"][0]["args"]
    return args


def test_a_zstd_policy_asks_its_runner_for_zstd_and_gzip_ones_keep_their_job() -> None:
    assert "--dump-compression" not in _runner_args({})
    assert "--dump-compression" not in _runner_args({"dumpCompression": "Gzip"})
    args = _runner_args({"dumpCompression": "Zstd"})
    assert args[args.index("--dump-compression") + 1] == "zstd"
    with pytest.raises(ValueError, match="dumpCompression"):
        _runner_args({"dumpCompression": "zstd"})


def test_every_policys_runner_asks_a_refusing_database_again_for_a_while() -> None:
    args = _runner_args({})
    assert args[args.index("--connect-wait-seconds") + 1] == str(backup.CONNECT_WAIT_SECONDS)
    assert backup.CONNECT_WAIT_SECONDS > 0
