"""Prometheus metrics of the alert processor (module level: one registration per process)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TRANSITIONS = Counter("orbitwatch_alert_transitions_total",
                      "Alert state transitions (pending, firing, resolved)", ["rule", "status"])
RECORDS = Counter("orbitwatch_alert_records_total",
                  "Input records seen by the alert processor, by kind and outcome "
                  "(evaluated, unmatched, provisional_skipped, rejected)", ["kind", "outcome"])
STALE_RESULTS = Counter("orbitwatch_alert_stale_results_total",
                        "Drift/quality results for a window older than one already evaluated (ignored)",
                        ["rule"])
TEMPLATE_ERRORS = Counter("orbitwatch_alert_template_errors_total",
                          "Annotation templates that failed to render (the raw template is sent)")
NOTIFICATIONS = Counter("orbitwatch_alert_notifications_total",
                        "Notifications by receiver and outcome (queued, delivered, retry, failed, "
                        "duplicate, no_receiver)", ["receiver", "outcome"])
OUTBOX_PENDING = Gauge("orbitwatch_alert_outbox_pending", "Notifications waiting for delivery", ["receiver"])
DELIVERY_SECONDS = Histogram("orbitwatch_alert_delivery_seconds",
                             "From outbox write to the receiver's 2xx", ["receiver"],
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 15, 60, 300, 3600))
HEALTH_QUERY_ERRORS = Counter("orbitwatch_alert_health_query_errors_total",
                              "Span-health rule queries that failed (retried next interval)", ["rule"])
STATE_WRITE_ERRORS = Counter("orbitwatch_alert_state_write_errors_total",
                             "Failed writes of alert state/outbox/history to ClickHouse")
