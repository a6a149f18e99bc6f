"""The persistent notification outbox and its delivery threads.

Guarantee (what a receiver sees): **at-least-once delivery, exactly-once per notification id**.

1. A notification is inserted into ``alert_outbox`` as ``pending`` *before* any attempt; the insert
   returns only once ClickHouse has the part, so a SIGKILL after it loses nothing.
2. One thread per receiver posts pending notifications (FIFO per group, so a resolve never
   overtakes its firing), retrying timeouts, connection errors, 408, 429 (honouring Retry-After)
   and 5xx with exponential back-off and jitter; any other status is a permanent failure, logged
   with the response body and stored as ``failed``.
3. After a 2xx the row is re-written as ``delivered``. On start every ``pending`` row is re-queued.

The only duplicate possible is a crash in the instant between the receiver's 2xx and step 3; the
re-send then carries the same ``X-Orbitwatch-Notification-Id`` / ``Idempotency-Key`` header, so a
receiver that keeps recent ids (the test receiver does) still acts once.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from orbitwatch.processors.alerts import metrics
from orbitwatch.processors.alerts.grouping import Notification
from orbitwatch.processors.alerts.receivers import Outcome, post, render_body
from orbitwatch.processors.alerts.rules import Receiver

log = logging.getLogger(__name__)
MAX_KNOWN_IDS = 200_000
COLUMNS = ("processor", "notification_id", "receiver", "group_key", "status", "payload", "attempts",
           "last_http_status", "last_error", "created_at", "updated_at", "version")


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


class _Version:
    """Strictly increasing row versions (wall-clock ns, bumped on ties) for ReplacingMergeTree."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


VERSION = _Version()


@dataclass
class Item:
    id: str
    receiver: str
    group_key: str
    body: bytes
    created_at: float
    attempts: int = 0
    next_at: float = 0.0
    status: str = "pending"
    last_http_status: int = 0
    last_error: str = ""


def backoff(receiver: Receiver, attempts: int, retry_after: float | None = None) -> float:
    """Exponential back-off with 'equal jitter' (half fixed, half random), capped at backoff_max;
    a receiver's Retry-After wins when it asks for longer."""
    base = min(receiver.backoff_max, receiver.backoff_initial * (2 ** max(0, attempts - 1)))
    delay = base / 2 + random.uniform(0, base / 2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, receiver.backoff_max))
    return delay


class Outbox:
    def __init__(self, storage: Any, receivers: dict[str, Receiver], external_url: str,
                 processor: str = "alerts") -> None:
        self.storage = storage
        self.receivers = dict(receivers)
        self.external_url = external_url
        self.processor = processor
        self._cond = threading.Condition()
        self._items: dict[str, list[Item]] = {}  # receiver → FIFO of undelivered items
        # notification ids already in the outbox (dedup of replays; only recent ids can be replayed)
        self._known: OrderedDict[str, None] = OrderedDict()
        self._threads: dict[str, threading.Thread] = {}
        self._busy: set[str] = set()
        self._stop = False
        self._warned: set[str] = set()

    # -- persistence ----------------------------------------------------------------------------
    def _row(self, it: Item, now: float) -> list[Any]:
        return [self.processor, it.id, it.receiver, it.group_key, it.status, it.body.decode(), it.attempts,
                it.last_http_status, it.last_error[:2000], _dt(it.created_at), _dt(now), VERSION.next()]

    def _save(self, items: list[Item]) -> None:
        if self.storage is None or not items:
            return
        now = time.time()
        self.storage.insert_rows("alert_outbox", COLUMNS, [self._row(it, now) for it in items])

    def load(self, since_days: float = 7.0) -> int:
        """Re-queue pending rows left by a previous process; remember recent ids for dedup."""
        if self.storage is None:
            return 0
        rows = self.storage.query_dicts(
            "SELECT notification_id, receiver, group_key, status, payload, attempts, created_at "
            "FROM alert_outbox FINAL WHERE processor = {p:String} AND created_at > now64() - toIntervalSecond({s:UInt64}) "
            "ORDER BY created_at, notification_id", {"p": self.processor, "s": int(since_days * 86400)})
        queued = []
        for r in rows:
            self._remember(r["notification_id"])
            if r["status"] == "pending":
                created = r["created_at"]
                created_ts = created.replace(tzinfo=timezone.utc).timestamp() if created.tzinfo is None else created.timestamp()
                queued.append(Item(id=r["notification_id"], receiver=r["receiver"], group_key=r["group_key"],
                                   body=r["payload"].encode(), created_at=created_ts, attempts=int(r["attempts"])))
        self._enqueue(queued)
        if queued:
            log.info("alert outbox: re-queued %d undelivered notification(s) from a previous run", len(queued))
        return len(queued)

    def _remember(self, nid: str) -> None:
        self._known[nid] = None
        while len(self._known) > MAX_KNOWN_IDS:
            self._known.popitem(last=False)

    # -- producer side (called from handle/tick) ------------------------------------------------
    def write(self, notifications: list[Notification]) -> list[Item]:
        """Render and persist; returns the items to :meth:`submit` once the caller's own state is
        saved. Ids already in the outbox are dropped (replay after a crash)."""
        items: list[Item] = []
        for n in notifications:
            if n.id in self._known:
                metrics.NOTIFICATIONS.labels(receiver=n.receiver, outcome="duplicate").inc()
                continue
            receiver = self.receivers.get(n.receiver)
            if receiver is None:
                metrics.NOTIFICATIONS.labels(receiver=n.receiver, outcome="no_receiver").inc()
                if n.receiver not in self._warned:
                    self._warned.add(n.receiver)
                    log.warning("alert notification for receiver %r dropped: no such receiver configured "
                                "(set --alert-webhook / ORBITWATCH_ALERT_WEBHOOK or define it in the rules file)",
                                n.receiver)
                continue
            items.append(Item(id=n.id, receiver=n.receiver, group_key=n.group_key,
                              body=render_body(receiver, n, self.external_url), created_at=time.time()))
        self._save(items)
        for it in items:
            self._remember(it.id)
            metrics.NOTIFICATIONS.labels(receiver=it.receiver, outcome="queued").inc()
        return items

    def submit(self, items: list[Item]) -> None:
        self._enqueue(items)

    def _enqueue(self, items: list[Item]) -> None:
        if not items:
            return
        with self._cond:
            for it in items:
                self._items.setdefault(it.receiver, []).append(it)
                metrics.OUTBOX_PENDING.labels(receiver=it.receiver).inc()
                if it.receiver not in self._threads:
                    t = threading.Thread(target=self._run, args=(it.receiver,), daemon=True,
                                         name=f"alert-delivery-{it.receiver}")
                    self._threads[it.receiver] = t
                    t.start()
            self._cond.notify_all()

    def set_receivers(self, receivers: dict[str, Receiver]) -> None:
        with self._cond:
            self.receivers = dict(receivers)
            self._cond.notify_all()

    # -- delivery threads -----------------------------------------------------------------------
    def _pick(self, receiver: str, now: float) -> tuple[Item | None, float]:
        """Earliest due item whose group has nothing older still undelivered; and the next due time."""
        blocked: set[str] = set()
        wake = now + 1.0
        for it in self._items.get(receiver, []):
            if it.group_key in blocked:
                continue
            blocked.add(it.group_key)
            if it.next_at <= now:
                return it, now
            wake = min(wake, it.next_at)
        return None, wake

    def _run(self, name: str) -> None:
        with httpx.Client() as client:
            while True:
                with self._cond:
                    while True:
                        if self._stop:
                            return
                        now = time.time()
                        item, wake = self._pick(name, now)
                        if item is not None:
                            self._busy.add(name)
                            break
                        self._cond.wait(max(0.01, wake - now))
                try:
                    self._attempt(client, item)
                finally:
                    with self._cond:
                        self._busy.discard(name)
                        self._cond.notify_all()

    def _attempt(self, client: httpx.Client, it: Item) -> None:
        receiver = self.receivers.get(it.receiver)
        if receiver is None:
            outcome = Outcome("failed", 0, "receiver no longer configured")
        else:
            outcome = post(client, receiver, it.id, it.body)
        it.attempts += 1
        it.last_http_status, it.last_error = outcome.status, outcome.detail
        if outcome.kind == "retry" and receiver is not None and it.attempts < receiver.max_attempts:
            delay = backoff(receiver, it.attempts, outcome.retry_after)
            it.next_at = time.time() + delay
            metrics.NOTIFICATIONS.labels(receiver=it.receiver, outcome="retry").inc()
            log.info("alert notification %s to %s: attempt %d got %s %s; retrying in %.2fs", it.id, it.receiver,
                     it.attempts, outcome.status or "", outcome.detail[:200], delay)
            self._persist(it)
            return
        if outcome.kind == "delivered":
            it.status = "delivered"
            metrics.DELIVERY_SECONDS.labels(receiver=it.receiver).observe(max(0.0, time.time() - it.created_at))
        else:
            it.status = "failed"
            log.warning("alert notification %s to %s failed permanently after %d attempt(s): HTTP %s %s",
                        it.id, it.receiver, it.attempts, outcome.status, outcome.detail)
        metrics.NOTIFICATIONS.labels(receiver=it.receiver, outcome=it.status).inc()
        with self._cond:
            queue = self._items.get(it.receiver, [])
            if it in queue:
                queue.remove(it)
                metrics.OUTBOX_PENDING.labels(receiver=it.receiver).dec()
        self._persist(it)

    def _persist(self, it: Item) -> None:
        try:
            self._save([it])
        except Exception as exc:  # the receiver has it; a lost status row means one re-send at most
            metrics.STATE_WRITE_ERRORS.inc()
            log.warning("alert outbox: cannot record %s as %s: %s", it.id, it.status, exc)

    # -- lifecycle ------------------------------------------------------------------------------
    def pending(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._items.values())

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until nothing is queued or in flight (tests, graceful shutdown)."""
        deadline = time.time() + timeout
        with self._cond:
            while any(self._items.values()) or self._busy:
                left = deadline - time.time()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def close(self, drain: float = 0.0) -> None:
        if drain:
            self.wait_idle(drain)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads.values():
            t.join(timeout=5)
