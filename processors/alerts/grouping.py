"""Alertmanager-style aggregation groups: group_by, group_wait, group_interval, repeat_interval,
dedup and send_resolved.

Each (receiver, group_by label values) is a group. A new group waits ``group_wait`` before its
first notification; afterwards it is re-examined every ``group_interval`` and notifies only when
something changed (a new firing alert, or a resolved one with ``send_resolved``), or when
``repeat_interval`` has passed with alerts still firing — Alertmanager's ``needsUpdate``.

Notification ids are ``hash(receiver, group key, seq)`` with ``seq`` persisted per group (groups
are kept, empty, after their alerts resolve, so ``seq`` never repeats). If the process dies after
writing a notification to the outbox but before saving the group, the replayed input produces the
same ``seq`` and therefore the same id, which the outbox drops as a duplicate.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from orbitwatch.processors.alerts.rules import GroupSettings


@dataclass
class GroupedAlert:
    fingerprint: str
    rule: str
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float
    ends_at: float | None = None
    value: float = 0.0


@dataclass
class Notification:
    """One message to one receiver about one group (rendered per receiver type at send time)."""

    id: str
    receiver: str
    group_key: str
    status: Literal["firing", "resolved"]
    group_labels: dict[str, str]
    alerts: list[GroupedAlert]
    created_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Notification":
        return cls(**{**d, "alerts": [GroupedAlert(**a) for a in d["alerts"]]})


@dataclass
class Group:
    key: str
    receiver: str
    group_labels: dict[str, str]
    settings: dict[str, Any]
    alerts: dict[str, GroupedAlert] = field(default_factory=dict)
    next_flush: float | None = None
    last_notify: float | None = None
    notified_firing: list[str] = field(default_factory=list)
    notified_resolved: list[str] = field(default_factory=list)
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Group":
        return cls(**{**d, "alerts": {k: GroupedAlert(**a) for k, a in d["alerts"].items()}})

    @property
    def conf(self) -> GroupSettings:
        return GroupSettings(**self.settings)

    def needs_update(self, firing: set[str], resolved: set[str], now: float) -> bool:
        """Alertmanager's dedup decision (notify/notify.go ``needsUpdate``)."""
        conf = self.conf
        if self.last_notify is None:
            return bool(firing)
        if not firing.issubset(self.notified_firing):
            return True
        if not firing and self.notified_firing:
            return True
        if conf.send_resolved and not resolved.issubset(self.notified_resolved):
            return True
        return bool(firing) and now - self.last_notify >= conf.repeat_interval


def group_key(receiver: str, group_by: list[str], labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Alertmanager-like key: ``{}/receiver:{a="x",b="y"}`` over the group_by labels present."""
    gl = {k: labels[k] for k in group_by if k in labels}
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(gl.items()))
    return f"{{}}/{receiver}:{{{inner}}}", gl


class Grouper:
    def __init__(self) -> None:
        self.groups: dict[str, Group] = {}
        self.dirty: set[str] = set()

    def add(self, receiver: str, conf: GroupSettings, alert: GroupedAlert, now: float) -> None:
        key, gl = group_key(receiver, conf.group_by, alert.labels)
        g = self.groups.get(key)
        if g is None:
            g = self.groups[key] = Group(key=key, receiver=receiver, group_labels=gl, settings=conf.model_dump())
        g.settings = conf.model_dump()
        if alert.status == "resolved" and alert.fingerprint not in g.alerts and alert.fingerprint not in g.notified_firing:
            return  # never seen firing here (e.g. fired and resolved inside group_wait): nothing to tell
        g.alerts[alert.fingerprint] = alert
        if g.next_flush is None:  # idle group: a new episode starts with group_wait
            start = now + conf.group_wait
            if g.last_notify is not None:
                start = max(start, g.last_notify + conf.group_interval)
            g.next_flush = start
        self.dirty.add(key)

    def next_due(self) -> float | None:
        times = [g.next_flush for g in self.groups.values() if g.next_flush is not None]
        return min(times) if times else None

    def flush(self, now: float, make_id: Any = None) -> list[Notification]:
        """Notifications for every group whose time has come."""
        out: list[Notification] = []
        for g in list(self.groups.values()):
            if g.next_flush is None or g.next_flush > now:
                continue
            conf = g.conf
            firing = {fp for fp, a in g.alerts.items() if a.status == "firing"}
            resolved = {fp for fp, a in g.alerts.items() if a.status == "resolved"}
            if g.needs_update(firing, resolved, now):
                send = [a for a in g.alerts.values() if a.status == "firing" or conf.send_resolved]
                if send:
                    g.seq += 1
                    out.append(Notification(
                        id=notification_id(g.receiver, g.key, g.seq), receiver=g.receiver, group_key=g.key,
                        status="firing" if firing else "resolved", group_labels=dict(g.group_labels),
                        alerts=sorted(send, key=lambda a: (a.status, a.fingerprint)), created_at=now))
                g.notified_firing, g.notified_resolved = sorted(firing), sorted(resolved)
                g.last_notify = now
                self.dirty.add(g.key)
            for fp in resolved:
                del g.alerts[fp]
                self.dirty.add(g.key)
            g.next_flush = now + conf.group_interval if g.alerts else None
            if g.next_flush is None:
                self.dirty.add(g.key)  # only the periodic re-check of a busy group is not worth a write
        return out

    def take_dirty(self) -> list[Group]:
        keys, self.dirty = self.dirty, set()
        return [self.groups[k] for k in keys if k in self.groups]


def notification_id(receiver: str, key: str, seq: int) -> str:
    return hashlib.sha256(f"{receiver}\x00{key}\x00{seq}".encode()).hexdigest()[:32]
