"""An append-only, segmented record log per topic: the embedded bus's stand-in for a Kafka partition.

Why a log on disk at all: ``orbitwatch up`` acknowledges an OTLP export as soon as the records
are on the in-process bus. Without a log, a hard kill (SIGKILL, OOM) would lose everything that was
acknowledged but not yet written to ClickHouse. With it, every record is appended (``write(2)``,
i.e. in the OS page cache) *before* the export is acknowledged, and a restart replays each topic
from the offsets its consumers had committed. Power loss can still lose the last records the kernel
had not written back (we do not ``fsync`` per request; that would cap ingest at the disk's sync rate).

Layout: ``<dir>/<topic>/<base offset:020d>.log``; a frame is::

    u32 length of the rest | u32 crc32 of the rest | u64 timestamp ms | u32 key length (0xFFFFFFFF = None)
    | key | u16 header count | (u16 name length, name, u32 value length, value)* | value

A torn frame at the end of the newest segment (crash mid-write) fails its length or CRC check and is
cut off on open; everything before it is kept.
"""
from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

_HEAD = struct.Struct(">II")  # length, crc
_META = struct.Struct(">QI")  # timestamp ms, key length
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_NO_KEY = 0xFFFFFFFF


@dataclass(slots=True)
class LogRecord:
    """One record on the bus (what a Kafka record is: key, value, headers, timestamp)."""

    value: bytes
    key: bytes | None = None
    headers: dict[str, bytes] = field(default_factory=dict)
    timestamp_ms: int = 0

    def size(self) -> int:
        return len(self.value) + (len(self.key) if self.key else 0) + 32


def encode_frame(rec: LogRecord) -> bytes:
    parts = [_META.pack(rec.timestamp_ms, _NO_KEY if rec.key is None else len(rec.key))]
    if rec.key is not None:
        parts.append(rec.key)
    parts.append(_U16.pack(len(rec.headers)))
    for name, val in rec.headers.items():
        nb = name.encode()
        parts += [_U16.pack(len(nb)), nb, _U32.pack(len(val)), val]
    parts.append(rec.value)
    body = b"".join(parts)
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def decode_frames(data: bytes) -> tuple[list[LogRecord], int]:
    """Records in ``data`` and the byte length of the valid prefix (a torn tail is excluded)."""
    out: list[LogRecord] = []
    pos, n = 0, len(data)
    while pos + _HEAD.size <= n:
        length, crc = _HEAD.unpack_from(data, pos)
        start, end = pos + _HEAD.size, pos + _HEAD.size + length
        if end > n or zlib.crc32(data[start:end]) != crc:
            break
        ts, klen = _META.unpack_from(data, start)
        p = start + _META.size
        key = None
        if klen != _NO_KEY:
            key, p = data[p:p + klen], p + klen
        (hcount,) = _U16.unpack_from(data, p)
        p += 2
        headers: dict[str, bytes] = {}
        for _ in range(hcount):
            (nl,) = _U16.unpack_from(data, p)
            name = data[p + 2:p + 2 + nl].decode()
            p += 2 + nl
            (vl,) = _U32.unpack_from(data, p)
            headers[name] = data[p + 4:p + 4 + vl]
            p += 4 + vl
        out.append(LogRecord(value=data[p:end], key=key, headers=headers, timestamp_ms=ts))
        pos = end
    return out, pos


class TopicLog:
    """The on-disk part of one topic: append, replay from an offset, drop fully consumed segments.

    Not thread-safe; the bus calls it from the event loop thread only.
    """

    def __init__(self, directory: Path, segment_bytes: int = 64 << 20) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self._segments: list[int] = sorted(int(p.stem) for p in self.dir.glob("*.log") if p.stem.isdigit())
        self.next_offset = 0
        self._active = None
        self._active_size = 0
        if self._segments:
            last = self._segments[-1]
            path = self._path(last)
            data = path.read_bytes()
            recs, valid = decode_frames(data)
            if valid < len(data):  # torn tail from a crash mid-write: cut it off
                with open(path, "r+b") as f:
                    f.truncate(valid)
            self.next_offset = last + len(recs)
            self._active_size = valid
            self._active = open(path, "ab")
        else:
            self._open_segment(0)

    def _path(self, base: int) -> Path:
        return self.dir / f"{base:020d}.log"

    def _open_segment(self, base: int) -> None:
        if self._active is not None:
            self._active.close()
        self._active = open(self._path(base), "ab")
        self._active_size = 0
        if not self._segments or self._segments[-1] != base:
            self._segments.append(base)

    def append(self, records: list[LogRecord]) -> int:
        """Append and hand the bytes to the OS; returns the offset of the first record."""
        first = self.next_offset
        if self._active_size >= self.segment_bytes:
            self._open_segment(self.next_offset)
        buf = b"".join(encode_frame(r) for r in records)
        self._active.write(buf)
        self._active.flush()
        self._active_size += len(buf)
        self.next_offset += len(records)
        return first

    def sync(self) -> None:
        if self._active is not None:
            self._active.flush()
            os.fsync(self._active.fileno())

    def read_from(self, offset: int) -> Iterator[tuple[int, LogRecord]]:
        """Replay (offset, record) from ``offset`` to the end (used once, on start)."""
        for i, base in enumerate(self._segments):
            nxt = self._segments[i + 1] if i + 1 < len(self._segments) else None
            if nxt is not None and nxt <= offset:
                continue
            recs, _ = decode_frames(self._path(base).read_bytes())
            for j, rec in enumerate(recs):
                if base + j >= offset:
                    yield base + j, rec

    def truncate_before(self, offset: int) -> int:
        """Delete segments whose records are all below ``offset`` (committed by every consumer).

        The active segment is rotated first when it is entirely committed, so the base offset
        survives in the new (empty) segment's name and offsets never restart from zero."""
        if offset >= self.next_offset and self._active_size > 0:
            self._open_segment(self.next_offset)
        removed = 0
        while len(self._segments) > 1 and self._segments[1] <= offset:
            base = self._segments.pop(0)
            try:
                self._path(base).unlink()
            except FileNotFoundError:
                pass
            removed += 1
        return removed

    def disk_bytes(self) -> int:
        return sum(self._path(b).stat().st_size for b in self._segments if self._path(b).exists())

    def close(self) -> None:
        if self._active is not None:
            self._active.flush()
            self._active.close()
            self._active = None
