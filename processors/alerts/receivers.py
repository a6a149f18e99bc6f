"""Receiver formats and the HTTP call: Alertmanager v4 webhook, Slack incoming webhook, and a
generic JSON webhook signed with HMAC-SHA256.

Every request carries ``X-Orbitwatch-Notification-Id`` (also as ``Idempotency-Key``): a retry or a
re-send after a crash reuses it, so a receiver that remembers ids sees each notification once.

Verifying a generic webhook (``type: webhook``)::

    X-Orbitwatch-Timestamp: 1764140000           # unix seconds when this attempt was signed
    X-Orbitwatch-Signature: sha256=<hex>         # HMAC-SHA256(secret, f"{timestamp}.".encode() + raw_body)

    1. read the raw request body bytes (before any JSON parsing);
    2. expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest();
    3. hmac.compare_digest("sha256=" + expected, signature_header) must be true;
    4. reject if |now - timestamp| > 300 s (replay protection).

:func:`verify_signature` does exactly that and is what the tests call.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import quote

import httpx

from orbitwatch.processors.alerts.grouping import Notification
from orbitwatch.processors.alerts.rules import Receiver

SIGNATURE_HEADER = "X-Orbitwatch-Signature"
TIMESTAMP_HEADER = "X-Orbitwatch-Timestamp"
ID_HEADER = "X-Orbitwatch-Notification-Id"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
AM_ALERT_FIELDS = ("status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint")
AM_FIELDS = ("version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels", "commonLabels",
             "commonAnnotations", "externalURL", "alerts")


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generator_url(external_url: str, fingerprint: str) -> str:
    return f"{external_url.rstrip('/')}/api/v1/alerts/history?fingerprint={quote(fingerprint)}"


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {k: v for k, v in first.items() if all(d.get(k) == v for d in dicts[1:])}


def alertmanager_payload(n: Notification, external_url: str) -> dict[str, Any]:
    """The Alertmanager webhook JSON, version 4 (notify/webhook/webhook.go)."""
    return {
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": _common([a.labels for a in n.alerts]),
        "commonAnnotations": _common([a.annotations for a in n.alerts]),
        "externalURL": external_url,
        "alerts": [{
            "status": a.status,
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(a.ends_at if a.status == "resolved" else None),
            "generatorURL": generator_url(external_url, a.fingerprint),
            "fingerprint": a.fingerprint,
        } for a in n.alerts],
    }


def slack_payload(n: Notification, external_url: str) -> dict[str, Any]:
    """Slack incoming-webhook message: a text line plus one coloured attachment per alert."""
    firing = sum(a.status == "firing" for a in n.alerts)
    title = ", ".join(f"{k}={v}" for k, v in n.group_labels.items()) or n.group_key
    head = f"[{n.status.upper()}{f':{firing}' if firing else ''}] {title}"
    return {
        "text": head,
        "attachments": [{
            "color": "danger" if a.status == "firing" else "good",
            "title": f"{a.status.upper()}: {a.annotations.get('summary') or a.labels.get('alertname', '')}",
            "title_link": generator_url(external_url, a.fingerprint),
            "text": a.annotations.get("description", ""),
            "fields": [{"title": k, "value": v, "short": True} for k, v in sorted(a.labels.items())],
            "ts": int(a.starts_at),
        } for a in n.alerts],
    }


def webhook_payload(n: Notification, external_url: str) -> dict[str, Any]:
    """The generic signed webhook body: the Alertmanager fields plus our notification id and values."""
    body = alertmanager_payload(n, external_url)
    body["version"] = "orbitwatch/1"
    body["notificationId"] = n.id
    for a, src in zip(body["alerts"], n.alerts):
        a["value"] = src.value
        a["rule"] = src.rule
    return body


FORMATS = {"alertmanager": alertmanager_payload, "slack": slack_payload, "webhook": webhook_payload}


def render_body(receiver: Receiver, n: Notification, external_url: str) -> bytes:
    return json.dumps(FORMATS[receiver.type](n, external_url), separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, body: bytes, timestamp: str, signature: str, tolerance: float = 300.0,
                     now: float | None = None) -> bool:
    """The documented verification procedure (module docstring), for receivers written in Python."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, body, ts), signature or "")


@dataclass
class Outcome:
    kind: Literal["delivered", "retry", "failed"]
    status: int = 0
    detail: str = ""
    retry_after: float | None = None


def post(client: httpx.Client, receiver: Receiver, notification_id: str, body: bytes) -> Outcome:
    """One attempt. 2xx delivered; 408/429/5xx, timeouts and connection errors retry; any other
    status fails permanently (a 4xx will not get better by asking again)."""
    headers = {"Content-Type": "application/json", "User-Agent": "orbitwatch-alerts/1",
               ID_HEADER: notification_id, "Idempotency-Key": notification_id, **receiver.headers}
    if receiver.type == "webhook":
        if not receiver.signing_secret():
            return Outcome("failed", 0, f"no signing secret: environment variable {receiver.secret_env!r} is not set")
        ts = int(time.time())
        headers[TIMESTAMP_HEADER] = str(ts)
        headers[SIGNATURE_HEADER] = sign(receiver.signing_secret(), body, ts)
    try:
        resp = client.post(receiver.url, content=body, headers=headers, timeout=receiver.timeout)
    except httpx.TimeoutException as exc:
        return Outcome("retry", 0, f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return Outcome("retry", 0, f"{type(exc).__name__}: {exc}")
    if 200 <= resp.status_code < 300:
        return Outcome("delivered", resp.status_code)
    detail = resp.text[:500]
    if resp.status_code in (408, 429) or resp.status_code >= 500:
        retry_after = None
        try:
            retry_after = float(resp.headers["Retry-After"]) if "Retry-After" in resp.headers else None
        except ValueError:
            pass
        return Outcome("retry", resp.status_code, detail, retry_after)
    return Outcome("failed", resp.status_code, detail)
