"""The alert Processor: drift / data-quality / eval records and scheduled span-health queries in,
alert transitions (``alerts`` table, ``orbitwatch.alerts`` topic) and notifications out.

Durability (why a SIGKILL neither forgets a firing alert nor re-notifies it): everything that
matters is written through to ClickHouse at the end of every ``handle``/``tick`` — before the
runner commits input offsets — in this order:

1. new notifications into ``alert_outbox`` (pending) — only then are they handed to delivery;
2. ``alerts`` history rows (ReplacingMergeTree on fingerprint/starts_at/status: replays collapse);
3. changed instances and groups into ``alert_state``.

A crash before 3 replays the batch against the older state and recomputes the same
notification ids (see grouping.py), which the outbox drops, so receivers get nothing twice.
Delivery runs on the outbox's own threads, never inside ``handle``. If ClickHouse is down the
unsaved writes stay in memory, are retried first on the next call, and ``RetryableError`` makes
the runner re-deliver the batch. ``snapshot()`` is therefore empty: ClickHouse is the one source
of truth, so a runner's snapshot store can never disagree with it.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from orbitwatch.processors.alerts import metrics
from orbitwatch.processors.alerts.defaults import AlertConfig, effective_config
from orbitwatch.processors.alerts.grouping import Group, GroupedAlert, Grouper, Notification
from orbitwatch.processors.alerts.health import measure
from orbitwatch.processors.alerts.outbox import VERSION, Outbox
from orbitwatch.processors.alerts.receivers import generator_url
from orbitwatch.processors.alerts.rules import Rule, RuleError, RulesFile, parse_rules
from orbitwatch.processors.alerts.state import AlertInstance, Transition
from orbitwatch.processors.base import Emit, Message, RetryableError
from orbitwatch.schemas import records as r
from orbitwatch.schemas.envelope import decode, encode
from orbitwatch.schemas.topics import ALERTS, DLQ, DRIFT, EVALS

log = logging.getLogger(__name__)
STATE_COLUMNS = ("processor", "kind", "key", "payload", "updated_at", "version", "is_deleted")
ERROR_HEADER = "orbitwatch-error"
RULES_POLL_SECONDS = 5.0
IDLE_HORIZON = 24 * 3600.0  # keep an inactive series' window high-water mark this long


def _dt(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)


class AlertProcessor:
    """See the module docstring. ``clock`` is injectable so tests can drive ``for`` and intervals."""

    name = "alerts"
    topics = (DRIFT.name, EVALS.name)

    def __init__(self, config: AlertConfig, storage: Any, *, external_url: str = "http://127.0.0.1:8080",
                 alert_webhook: str = "", clock: Any = time.time, emit_alerts: bool = True,
                 base_doc: RulesFile | None = None) -> None:
        self.config = config
        self.base_doc = base_doc  # the rules file's document (an uploaded one replaces it)
        self.storage = storage
        self.external_url = external_url
        self.alert_webhook = alert_webhook
        self.clock = clock
        self.emit_alerts = emit_alerts
        self.instances: dict[str, AlertInstance] = {}
        self.grouper = Grouper()
        self.outbox = Outbox(storage, config.receivers, external_url, self.name)
        self._lock = threading.RLock()
        self._dirty: set[str] = set()
        self._persisted: set[str] = set()
        self._tombstones: set[str] = set()
        self._unsaved_history: list[r.Alert] = []
        self._unsaved_notifications: list[Notification] = []
        self._next_run: dict[str, float] = {}
        self._rules_version = 0
        self._next_rules_poll = 0.0
        self._next_prune = 0.0
        self._load()

    # -- startup --------------------------------------------------------------------------------
    def _load(self) -> None:
        if self.storage is None:
            return
        self._poll_rules(self.clock(), force=True)
        rows = self.storage.query(
            "SELECT kind, key, payload FROM alert_state FINAL WHERE processor = {p:String} AND is_deleted = 0",
            {"p": self.name})[1]
        for kind, key, payload in rows:
            data = json.loads(payload)
            if kind == "instance":
                self.instances[key] = AlertInstance.from_json(data)
                self._persisted.add(key)
            elif kind == "group":
                self.grouper.groups[key] = Group.from_json(data)
        self.outbox.load()
        firing = sum(i.status == "firing" for i in self.instances.values())
        if self.instances or self.grouper.groups:
            log.info("alerts: restored %d instance(s) (%d firing) and %d group(s)", len(self.instances), firing,
                     len(self.grouper.groups))

    def _poll_rules(self, now: float, force: bool = False) -> list[Transition]:
        """Pick up a rules document uploaded through the API (newest version wins)."""
        if self.storage is None or (not force and now < self._next_rules_poll):
            return []
        self._next_rules_poll = now + RULES_POLL_SECONDS
        try:
            rows = self.storage.query(
                "SELECT version, yaml FROM alert_rules FINAL WHERE processor = {p:String} "
                "ORDER BY version DESC LIMIT 1", {"p": self.name})[1]
        except Exception as exc:
            log.warning("alerts: cannot read uploaded rules: %s", exc)
            return []
        if not rows or int(rows[0][0]) <= self._rules_version:
            return []
        version, text = int(rows[0][0]), rows[0][1]
        self._rules_version = version
        if not text.strip():  # DELETE /alerts/rules: back to the rules file / built-ins
            return self.apply_rules(self.base_doc, now)
        try:
            doc = parse_rules(text, f"uploaded rules v{version}")
        except RuleError as exc:
            log.error("alerts: ignoring %s", exc)
            return []
        return self.apply_rules(doc, now)

    def apply_rules(self, doc: RulesFile | None, now: float | None = None) -> list[Transition]:
        """Switch to a new rules document; alerts of rules that disappeared are resolved."""
        now = self.clock() if now is None else now
        with self._lock:
            self.config = effective_config(self.alert_webhook, doc)
            self.outbox.set_receivers(self.config.receivers)
            out: list[Transition] = []
            for fp, inst in list(self.instances.items()):
                if inst.rule not in self.config.rules:
                    out.extend(inst.force_resolve(inst.rule, now))
                    self._dirty.add(fp)
            log.info("alerts: %d rule(s) active: %s", len(self.config.rules), ", ".join(self.config.rules))
            return out

    # -- input ----------------------------------------------------------------------------------
    def handle(self, batch: list[Message]) -> list[Emit]:
        with self._lock:
            now = self.clock()
            emits: list[Emit] = []
            transitions: list[Transition] = []
            touched: dict[str, Rule] = {}
            for msg in batch:
                try:
                    rec = decode(msg.value)
                except ValueError as exc:
                    metrics.RECORDS.labels(kind="unknown", outcome="rejected").inc()
                    emits.append(Emit(DLQ.name, msg.value, f"{msg.topic}/{msg.partition}/{msg.offset}".encode(),
                                      {ERROR_HEADER: f"alerts: {exc}".encode()[:1000]}))
                    continue
                if isinstance(rec, r.DriftResult):
                    transitions += self._on_result(rec, "drift", now)
                elif isinstance(rec, r.DataQuality):
                    transitions += self._on_result(rec, "data_quality", now)
                elif isinstance(rec, r.EvalScore):
                    self._on_score(rec, now, touched)
                else:
                    metrics.RECORDS.labels(kind=type(rec).__name__, outcome="unmatched").inc()
            for fp, rule in touched.items():
                transitions += self._evaluate_scores(rule, self.instances[fp], now)
            return emits + self._commit(transitions, now)

    def _instance(self, rule: Rule, labels: dict[str, str]) -> AlertInstance:
        fresh = AlertInstance.new(rule, labels)
        inst = self.instances.get(fresh.fingerprint)
        if inst is None:
            inst = self.instances[fresh.fingerprint] = fresh
        self._dirty.add(inst.fingerprint)
        return inst

    def _on_result(self, rec: r.DriftResult | r.DataQuality, kind: str, now: float) -> list[Transition]:
        out: list[Transition] = []
        matched = False
        for rule in self.config.rules.values():
            if rule.kind != kind or not rule.selects(rec.project, rec.model, rec.metric):
                continue
            if not rule.selects_feature(rec.feature):
                continue
            if kind == "drift" and not getattr(rec, "is_primary", True) and rule.wants_primary_only():
                continue
            if not rec.is_final and not rule.include_provisional:
                metrics.RECORDS.labels(kind=kind, outcome="provisional_skipped").inc()
                continue
            matched = True
            labels = {"project": rec.project, "model": rec.model, "model_version": rec.model_version,
                      "feature": rec.feature, "metric": rec.metric}
            if rec.tenant:
                labels["tenant"] = rec.tenant
            inst = self._instance(rule, labels)
            drifted = rec.drifted if isinstance(rec, r.DriftResult) else None
            breach = inst.breaching(rule, rec.value, drifted)
            threshold = rule.threshold if rule.threshold is not None else getattr(rec, "threshold", 0.0)
            window = f"{rec.window_start.timestamp():020.6f}"
            samples = getattr(rec, "sample_size", 0)
            out += inst.evaluate(rule, breach, rec.value, window, now, samples=samples, threshold=threshold)
        metrics.RECORDS.labels(kind=kind, outcome="evaluated" if matched else "unmatched").inc()
        return out

    def _on_score(self, rec: r.EvalScore, now: float, touched: dict[str, Rule]) -> None:
        matched = False
        ts = rec.timestamp.timestamp()
        for rule in self.config.rules.values():
            if rule.kind != "eval" or rule.score != rec.name or not rule.selects(rec.project):
                continue
            if ts < now - rule.window:
                metrics.RECORDS.labels(kind="eval", outcome="too_old").inc()
                continue
            matched = True
            labels = {b: str(getattr(rec, b)) for b in rule.by}
            labels["score"] = rec.name
            inst = self._instance(rule, labels)
            size = max(1, int(rule.window // 60))
            key = str(int(ts // size * size))
            b = inst.buckets.setdefault(key, [0.0, 0, 0, float("-inf")])
            b[0] += rec.value
            b[1] += 1
            b[2] += 1 if rec.value > rule.score_threshold else 0
            b[3] = max(b[3], rec.value)
            touched[inst.fingerprint] = rule
        metrics.RECORDS.labels(kind="eval", outcome="evaluated" if matched else "unmatched").inc()

    def _evaluate_scores(self, rule: Rule, inst: AlertInstance, now: float) -> list[Transition]:
        """Aggregate the scores still inside the window; one vote per ``interval`` slot."""
        cutoff = now - rule.window
        size = max(1, int(rule.window // 60))
        for key in [k for k in inst.buckets if int(k) + size <= cutoff]:
            del inst.buckets[key]
        total = sum(b[0] for b in inst.buckets.values())
        count = int(sum(b[1] for b in inst.buckets.values()))
        above = sum(b[2] for b in inst.buckets.values())
        if count == 0:
            value = 0.0
        elif rule.aggregate == "mean":
            value = total / count
        elif rule.aggregate == "share_above":
            value = above / count
        else:
            value = max(b[3] for b in inst.buckets.values())
        breach = count >= rule.min_samples and inst.breaching(rule, value)
        slot = f"{int(now // rule.effective_interval()):014d}"
        self._dirty.add(inst.fingerprint)
        return inst.evaluate(rule, breach, value, slot, now, samples=count)

    # -- schedule -------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Emit]:
        with self._lock:
            transitions = self._poll_rules(now)
            for fp, inst in self.instances.items():
                rule = self.config.rules.get(inst.rule)
                if rule is not None and inst.status == "pending":
                    fired = inst.maybe_fire(rule, now)
                    if fired:
                        self._dirty.add(fp)
                        transitions += fired
            for rule in self.config.rules.values():
                if rule.kind not in ("eval", "span_health") or now < self._next_run.get(rule.name, 0.0):
                    continue
                self._next_run[rule.name] = now + rule.effective_interval()
                if rule.kind == "eval":
                    for inst in [i for i in self.instances.values() if i.rule == rule.name]:
                        transitions += self._evaluate_scores(rule, inst, now)
                else:
                    transitions += self._evaluate_health(rule, now)
            if now >= self._next_prune:
                self._next_prune = now + 600
                self.prune(now)
            due = self.grouper.next_due()
            if (not transitions and not self._dirty and not self._unsaved_history
                    and not self._unsaved_notifications and (due is None or due > now)):
                return []
            return self._commit(transitions, now)

    def prune(self, now: float, horizon: float = IDLE_HORIZON) -> int:
        """Forget inactive series not evaluated for ``horizon`` seconds (their rows are deleted)."""
        old = [fp for fp, i in self.instances.items()
               if i.status == "inactive" and i.streak == 0 and not i.buckets and i.last_eval < now - horizon]
        for fp in old:
            self.instances[fp].window = ""
            self._dirty.add(fp)
        return len(old)

    def _evaluate_health(self, rule: Rule, now: float) -> list[Transition]:
        if self.storage is None:
            return []
        try:
            found = measure(self.storage, rule, now)
        except Exception as exc:
            metrics.HEALTH_QUERY_ERRORS.labels(rule=rule.name).inc()
            log.warning("alerts: span-health rule %s query failed: %s", rule.name, exc)
            return []
        out: list[Transition] = []
        slot = f"{int(now // rule.effective_interval()):014d}"
        seen: set[str] = set()
        for m in found:
            inst = self._instance(rule, {**m.labels, "metric": rule.metric})
            seen.add(inst.fingerprint)
            breach = m.samples >= rule.min_samples and inst.breaching(rule, m.value)
            out += inst.evaluate(rule, breach, m.value, slot, now, samples=m.samples)
        for fp, inst in self.instances.items():  # no data this time: not breaching
            if inst.rule == rule.name and fp not in seen and inst.status != "inactive":
                self._dirty.add(fp)
                out += inst.evaluate(rule, False, 0.0, slot, now, samples=0)
        return out

    # -- output ---------------------------------------------------------------------------------
    def _commit(self, transitions: list[Transition], now: float) -> list[Emit]:
        history: list[r.Alert] = []
        for tr in transitions:
            inst = tr.instance
            metrics.TRANSITIONS.labels(rule=inst.rule, status=tr.status).inc()
            if tr.status == "pending":
                continue
            starts = inst.starts_at if inst.starts_at is not None else now
            ends = tr.at if tr.status == "resolved" else None
            rule = self.config.rules.get(inst.rule)
            history.append(r.Alert(
                rule=inst.rule, fingerprint=inst.fingerprint, status=tr.status,
                severity=inst.labels.get("severity", rule.severity if rule else "warning"),
                labels=inst.labels, annotations=inst.annotations, value=inst.value, starts_at=_dt(starts),
                ends_at=_dt(ends), generator_url=generator_url(self.external_url, inst.fingerprint),
                transition_at=_dt(tr.at)))
            alert = GroupedAlert(fingerprint=inst.fingerprint, rule=inst.rule, status=tr.status,
                                 labels=dict(inst.labels), annotations=dict(inst.annotations), starts_at=starts,
                                 ends_at=ends, value=inst.value)
            for receiver, conf in self.config.routes_for(inst.labels):
                self.grouper.add(receiver, conf, alert, now)
            if tr.status == "resolved":
                inst.starts_at = None
        self._unsaved_history += history
        self._unsaved_notifications += self.grouper.flush(now)
        self._persist()
        emits = []
        if self.emit_alerts:
            emits = [Emit(ALERTS.name, encode(a), a.fingerprint.encode()) for a in history]
        return emits

    def _persist(self) -> None:
        """Outbox first, then history, then state (the order the module docstring relies on).
        Delivery starts as soon as the outbox row exists: a failure of the later writes replays
        to the same notification ids, which the outbox already knows."""
        if self.storage is None:
            self._unsaved_history.clear()
            self.outbox.submit(self.outbox.write(self._unsaved_notifications))
            self._unsaved_notifications.clear()
            return
        try:
            items = self.outbox.write(self._unsaved_notifications)
            self._unsaved_notifications = []
            self.outbox.submit(items)
            if self._unsaved_history:
                self.storage.insert_models("alerts", self._unsaved_history)
                self._unsaved_history = []
            self._save_state()
        except Exception as exc:
            metrics.STATE_WRITE_ERRORS.inc()
            raise RetryableError(f"alerts: cannot persist alert state: {exc}") from exc

    def _save_state(self) -> None:
        now = _dt(time.time())
        rows: list[list[Any]] = []
        dirty = self._dirty
        for fp in dirty:
            inst = self.instances.get(fp)
            if inst is None:
                continue
            if inst.is_idle:
                del self.instances[fp]
                if fp in self._persisted:
                    rows.append([self.name, "instance", fp, "{}", now, VERSION.next(), 1])
                continue
            rows.append([self.name, "instance", fp, json.dumps(inst.to_json()), now, VERSION.next(), 0])
        groups = self.grouper.take_dirty()
        for g in groups:
            rows.append([self.name, "group", g.key, json.dumps(g.to_json()), now, VERSION.next(), 0])
        try:
            self.storage.insert_rows("alert_state", STATE_COLUMNS, rows)
        except Exception:
            self.grouper.dirty.update(g.key for g in groups)
            raise
        for row in rows:
            if row[1] == "instance":
                (self._persisted.discard if row[6] else self._persisted.add)(row[2])
        self._dirty = set()

    # -- runner contract ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Empty on purpose: state is written through to ClickHouse (module docstring)."""
        return {}

    def restore(self, state: dict[str, Any]) -> None:
        """Nothing to restore from a runner snapshot; ``__init__`` already loaded ClickHouse state."""

    def active(self) -> list[AlertInstance]:
        with self._lock:
            return [i for i in self.instances.values() if i.status != "inactive"]

    def close(self, drain: float = 0.0) -> None:
        """Stop delivery threads (after up to ``drain`` seconds of delivering what is queued)."""
        self.outbox.close(drain)
