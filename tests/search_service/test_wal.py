"""The write-ahead log: round trip, torn and corrupt tails dropped at replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from search_service.wal import HEADER_SIZE, LogRecord, LogWriter, encode_record, replay

pytestmark = pytest.mark.unit


def _records() -> list[LogRecord]:
    rng = np.random.default_rng(1)
    return [
        LogRecord("add", np.array([1, 2, 3]), rng.standard_normal((3, 4)).astype(np.float32)),
        LogRecord("delete", np.array([2])),
        LogRecord("add", np.array([9]), rng.standard_normal((1, 4)).astype(np.float32)),
    ]


def _write(path: Path, records: list[LogRecord]) -> None:
    writer = LogWriter(path)
    for record in records:
        writer.append(record)
    writer.close()


def _same(a: LogRecord, b: LogRecord) -> bool:
    if a.op != b.op or not np.array_equal(a.ids, b.ids):
        return False
    if a.vectors is None or b.vectors is None:
        return a.vectors is None and b.vectors is None
    return np.array_equal(a.vectors, b.vectors)


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "log.wal"
    _write(path, _records())
    got = list(replay(path))
    assert len(got) == 3
    assert all(_same(g, w) for g, w in zip(got, _records(), strict=True))


@pytest.mark.parametrize("cut", [1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 5])
def test_torn_last_record_is_dropped_and_truncated(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "log.wal"
    records = _records()
    _write(path, records[:2])
    good_size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(encode_record(records[2])[:cut])  # a crash in the middle of a write
    got = list(replay(path))
    assert len(got) == 2 and all(_same(g, w) for g, w in zip(got, records, strict=False))
    assert path.stat().st_size == good_size
    # Appending after recovery continues from the clean end.
    writer = LogWriter(path)
    writer.append(records[2])
    writer.close()
    assert len(list(replay(path))) == 3


def test_corrupt_last_record_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "log.wal"
    _write(path, _records())
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last record's payload
    path.write_bytes(bytes(data))
    got = list(replay(path))
    assert [r.op for r in got] == ["add", "delete"]
    assert np.array_equal(got[0].ids, [1, 2, 3])


def test_garbage_header_stops_replay(tmp_path: Path) -> None:
    path = tmp_path / "log.wal"
    _write(path, _records()[:1])
    with open(path, "ab") as f:
        f.write(b"\x00" * 40)
    assert len(list(replay(path))) == 1
