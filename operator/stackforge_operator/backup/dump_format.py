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
from typing import IO, cast

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


# The most decoded archive handed on at once. A stored chunk is no bound: a
# blank-padded table compresses a hundredfold and more at level 1, so one 4 MiB
# chunk decoded in one piece was hundreds of MiB, and the drill runner (256 MiB)
# was killed on every restore of such a dump.
DECODED_PIECE_SIZE = 1024 * 1024

# decode(stored chunk, emit): hands every decoded piece to ``emit`` as it comes.
Decode = Callable[[bytes, Callable[[bytes], None]], None]


class _Pieces:
    """What the decompressor writes into: each piece goes to the current emit."""

    def __init__(self) -> None:
        self.emit: Callable[[bytes], None] = lambda _piece: None

    def write(self, piece: bytes) -> int:
        data = bytes(piece)
        self.emit(data)
        return len(data)


def decoder(fmt: str | None) -> Decode | None:
    """For a stored dump of format ``fmt``: what turns its bytes into pg_restore's
    input, in pieces of at most DECODED_PIECE_SIZE (None: they are it already).
    Unknown formats are refused, never guessed."""
    if fmt in (None, GZIP_FORMAT):
        return None
    if fmt != ZSTD_FORMAT:
        raise ValueError(f"unknown dump format {fmt!r}")
    pieces = _Pieces()
    # (The decompressor only calls write; _Pieces is no whole file.)
    stream = zstandard.ZstdDecompressor().stream_writer(
        cast("IO[bytes]", pieces), write_size=DECODED_PIECE_SIZE, closefd=False)

    def decode(chunk: bytes, emit: Callable[[bytes], None]) -> None:
        pieces.emit = emit
        try:
            stream.write(chunk)
        except zstandard.ZstdError as error:
            raise UndecodableDumpError(str(error)) from None

    return decode
