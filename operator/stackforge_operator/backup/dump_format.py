"""How a logical dump is stored: pg_dump's custom archive, compressed by pg_dump
itself (gzip, the default and what older backups are), or uncompressed and
wrapped in one zstd frame by the runner while it streams to S3.

zstd is the fast path: pg_dump's own gzip runs in pg_dump's single thread and
caps a dump near 28 MB/s of database on this project's machine; zstd level 1
beside it is several times faster (docs/benchmarks.md). A person restores one
by hand with ``zstd -dc postgres.dump.zst | pg_restore -d DB``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import IO

import zstandard

GZIP_FORMAT = "pg_dump-custom"
ZSTD_FORMAT = "pg_dump-custom+zstd"
# Level 1: on md5-like text it stored no more than level 3 (118 vs 122 MiB of a
# 244 MiB archive) for half the CPU (0.9 vs 2.0 s), and on two cores that CPU is
# the dump's wall time. No worker threads: the compression runs in the runner's
# own thread (zstd releases the GIL), beside pg_dump's process and the upload
# threads, which was as fast; zstd's workers buffer whole jobs, which took the
# runner at level 3 from 91 to 145 MiB peak (tests/backup/test_memory.py).
ZSTD_LEVEL = 1
ZSTD_THREADS = 0
ZSTD_READ_SIZE = 1024 * 1024


class DumpCompression(enum.StrEnum):
    GZIP = "gzip"
    ZSTD = "zstd"


def dump_name(compression: DumpCompression) -> str:
    return "postgres.dump.zst" if compression is DumpCompression.ZSTD else "postgres.dump"


def dump_format(compression: DumpCompression) -> str:
    return ZSTD_FORMAT if compression is DumpCompression.ZSTD else GZIP_FORMAT


def pg_dump_level(compression: DumpCompression, requested: int | None) -> int | None:
    """pg_dump's own --compress: none when zstd compresses after it."""
    return 0 if compression is DumpCompression.ZSTD else requested


def compressed(stream: IO[bytes], compression: DumpCompression) -> IO[bytes]:
    """What the upload reads: pg_dump's stdout itself, or zstd over it."""
    if compression is not DumpCompression.ZSTD:
        return stream
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=ZSTD_THREADS).stream_reader(
        stream, read_size=ZSTD_READ_SIZE, closefd=False)


class UndecodableDumpError(ValueError):
    """Stored bytes that are no zstd stream (a corrupt object): the checksum says which."""


def decoder(fmt: str | None) -> Callable[[bytes], bytes] | None:
    """For a stored dump of format ``fmt``: what turns its bytes into pg_restore's
    input (None: they are it already). Unknown formats are refused, never guessed."""
    if fmt in (None, GZIP_FORMAT):
        return None
    if fmt != ZSTD_FORMAT:
        raise ValueError(f"unknown dump format {fmt!r}")
    stream = zstandard.ZstdDecompressor().decompressobj()

    def decode(chunk: bytes) -> bytes:
        try:
            return stream.decompress(chunk)
        except zstandard.ZstdError as error:
            raise UndecodableDumpError(str(error)) from None

    return decode
