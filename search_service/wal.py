"""Append-only write-ahead log of a collection's adds and deletes.

Record layout (little-endian)::

    magic u32 = 0x31574653 | op u8 (1 add, 2 delete) | 3 zero bytes
    | payload length u64 | crc32 u32 of (the 16 header bytes before it + payload)
    payload, add:    n u32 | dim u32 | ids int64[n] | vectors float32[n*dim]
    payload, delete: n u32 | ids int64[n]

Each record is written then fsync'ed before the request is answered. A crash can
leave a torn last record (short header, short payload or a CRC mismatch); replay stops
at the first record that does not check out and truncates the file there, so the next
append starts from a clean end. Vectors are logged already normalised.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from search_service.fsutil import fsync_dir
from search_service.vectors import IdArray, Matrix

logger = logging.getLogger(__name__)

MAGIC = 0x31574653
_HEAD = struct.Struct("<IB3xQ")  # magic, op, payload length
_CRC = struct.Struct("<I")
HEADER_SIZE = _HEAD.size + _CRC.size
_OPS = {1: "add", 2: "delete"}
_CODES = {"add": 1, "delete": 2}
_U32 = struct.Struct("<I")
_U32X2 = struct.Struct("<II")


@dataclass(frozen=True)
class LogRecord:
    """One logged write: ``ids`` shape (n,) int64, ``vectors`` (n, dim) float32 for adds."""

    op: Literal["add", "delete"]
    ids: IdArray
    vectors: Matrix | None = None


def _record_parts(record: LogRecord) -> list[bytes | memoryview]:
    """Header and payload pieces of ``record``, without copying the arrays."""
    ids = np.ascontiguousarray(record.ids, dtype="<i8")
    parts: list[bytes | memoryview]
    if record.op == "add":
        assert record.vectors is not None
        vecs = np.ascontiguousarray(record.vectors, dtype="<f4")
        parts = [_U32X2.pack(ids.size, vecs.shape[1]), ids.data.cast("B"), vecs.data.cast("B")]
    else:
        parts = [_U32.pack(ids.size), ids.data.cast("B")]
    head = _HEAD.pack(MAGIC, _CODES[record.op], sum(len(p) for p in parts))
    crc = zlib.crc32(head)
    for part in parts:
        crc = zlib.crc32(part, crc)
    return [head, _CRC.pack(crc), *parts]


def encode_record(record: LogRecord) -> bytes:
    return b"".join(_record_parts(record))


def _decode_payload(op: str, payload: bytes) -> LogRecord:
    if op == "add":
        n, dim = _U32X2.unpack_from(payload)
        off = _U32X2.size
        ids = np.frombuffer(payload, dtype="<i8", count=n, offset=off).astype(np.int64)
        vecs = np.frombuffer(payload, dtype="<f4", count=n * dim, offset=off + 8 * n)
        return LogRecord("add", ids, vecs.astype(np.float32).reshape(n, dim))
    (n,) = _U32.unpack_from(payload)
    ids = np.frombuffer(payload, dtype="<i8", count=n, offset=_U32.size).astype(np.int64)
    return LogRecord("delete", ids)


def _read_one(f: BinaryIO) -> LogRecord | None:
    """The next record, or None at EOF or at a torn/corrupt record."""
    header = f.read(HEADER_SIZE)
    if len(header) < HEADER_SIZE:
        return None
    magic, code, length = _HEAD.unpack_from(header)
    (crc,) = _CRC.unpack_from(header, _HEAD.size)
    if magic != MAGIC or code not in _OPS or length > (1 << 40):
        return None
    payload = f.read(length)
    if len(payload) < length or zlib.crc32(payload, zlib.crc32(header[: _HEAD.size])) != crc:
        return None
    try:
        return _decode_payload(_OPS[code], payload)
    except (struct.error, ValueError):
        return None


def replay(path: Path) -> Iterator[LogRecord]:
    """Yield the intact records of ``path`` in order; truncate a torn tail afterwards."""
    with open(path, "rb") as f:
        good_end = 0
        while (record := _read_one(f)) is not None:
            good_end = f.tell()
            yield record
        size = os.fstat(f.fileno()).st_size
    if size > good_end:
        logger.warning(
            "log %s: dropping %d bytes of torn or corrupt data after offset %d",
            path,
            size - good_end,
            good_end,
        )
        with open(path, "r+b") as f:
            f.truncate(good_end)
            os.fsync(f.fileno())


class LogWriter:
    """Appends records durably (write + fsync) to one log segment."""

    def __init__(self, path: Path) -> None:
        created = not path.exists()
        self.path = path
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for the segment's life
        if created:
            os.fsync(self._file.fileno())
            fsync_dir(path.parent)
        self.size = self._file.tell()
        self.records = 0

    def append(self, record: LogRecord) -> None:
        parts = _record_parts(record)
        try:
            for part in parts:
                self._file.write(part)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            # Never leave a half record in front of later ones (e.g. on a full disk).
            self._file.truncate(self.size)
            raise
        self.size += sum(len(p) for p in parts)
        self.records += 1

    def close(self) -> None:
        self._file.close()
