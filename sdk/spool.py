"""Optional disk spool: OTLP requests the endpoint refused (after the exporter's retries) are kept
on disk and replayed later — by this process once the endpoint answers again, or by the next
process that uses the same spool directory.

Off by default (telemetry should not fill disks silently). Turn it on with
``ORBITWATCH_SPOOL_DIR=/path`` (or ``ORBITWATCH_SPOOL=1`` for ``<data_dir>/spool``), bounded by
``ORBITWATCH_SPOOL_MAX_BYTES`` (default 256 MiB); beyond that requests are dropped and counted.

Files are whole serialized ``ExportTraceServiceRequest`` s, one per failed request, in a
sub-directory per API key (a hash, never the key). Writes are atomic (temp file + rename); a
replaying process claims a file by renaming it, so two processes never send the same file,
and a claim left by a dead process is released on the next replay.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Callable

log = logging.getLogger("orbitwatch")

SUFFIX = ".otlp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Spool:
    """A directory of failed OTLP requests for one API key."""

    def __init__(self, root: Path, api_key: str, max_bytes: int) -> None:
        self.dir = Path(root) / hashlib.sha256(api_key.encode()).hexdigest()[:16]
        self.max_bytes = max_bytes

    def size(self) -> int:
        try:
            return sum(p.stat().st_size for p in self.dir.iterdir() if p.is_file())
        except FileNotFoundError:
            return 0

    def write(self, request: bytes) -> bool:
        """Store one serialized request; False when the spool is full (the caller counts the loss)."""
        if self.size() + len(request) > self.max_bytes:
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp = self.dir / (name + ".tmp")
        tmp.write_bytes(request)
        os.replace(tmp, self.dir / (name + SUFFIX))
        return True

    def pending(self) -> list[Path]:
        try:
            return sorted(p for p in self.dir.iterdir() if p.suffix == SUFFIX)
        except FileNotFoundError:
            return []

    def _release_dead_claims(self) -> None:
        try:
            entries = list(self.dir.iterdir())
        except FileNotFoundError:
            return
        for p in entries:
            if p.name.endswith(".sending"):
                stem, _, rest = p.name.partition(SUFFIX + ".")
                pid = rest.split(".")[0]
                if pid.isdigit() and not _alive(int(pid)):
                    try:
                        os.replace(p, self.dir / (stem + SUFFIX))
                    except OSError:
                        pass

    def replay(self, send: Callable[[bytes], bool]) -> tuple[int, bool]:
        """Send pending files oldest first until one fails; returns (files sent, all done)."""
        self._release_dead_claims()
        sent = 0
        for path in self.pending():
            claimed = path.with_name(f"{path.name}.{os.getpid()}.sending")
            try:
                os.replace(path, claimed)
            except OSError:
                continue  # another process took it
            try:
                ok = send(claimed.read_bytes())
            except Exception:  # noqa: BLE001
                log.debug("orbitwatch: spool replay failed", exc_info=True)
                ok = False
            if ok:
                claimed.unlink(missing_ok=True)
                sent += 1
            else:
                os.replace(claimed, path)
                return sent, False
        return sent, True


def spool_root(data_dir: Path) -> Path | None:
    """The configured spool directory, or None when spooling is off."""
    explicit = os.environ.get("ORBITWATCH_SPOOL_DIR", "").strip()
    if explicit:
        return Path(os.path.expanduser(explicit))
    if os.environ.get("ORBITWATCH_SPOOL", "").strip().lower() in ("1", "true", "yes", "on"):
        return Path(os.path.expanduser(str(data_dir))) / "spool"
    return None
