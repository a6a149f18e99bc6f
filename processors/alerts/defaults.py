"""Built-in rules and the effective configuration (defaults + rules file + ``--alert-webhook``).

Zero config: ``ORBITWATCH_ALERT_WEBHOOK=URL`` alone yields an Alertmanager-v4 receiver called
``default`` and two rules:

- ``FeatureDrift``: any real feature of any model whose final drift window says ``drifted``
  (labels alertname, project, model, model_version, feature, metric, severity); resolved by the
  first final window that is not drifted.
- ``HighHallucinationRate``: mean ``hallucination`` eval score of a project over the last 5 minutes
  above 0.5 (with at least 3 scores), evaluated every 10 s; resolved when it falls to 0.4 or below
  (hysteresis) or when fewer than 3 scores remain in the window. The *mean score* was chosen over
  "share of spans above 0.5" because judges return graded scores and the mean uses all of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from orbitwatch.processors.alerts.rules import (GroupSettings, Receiver, Route, RouteDefaults, Rule, RulesFile)

DEFAULT_RULES: tuple[Rule, ...] = (
    Rule(name="FeatureDrift", kind="drift", feature="any", severity="warning",
         annotations={"summary": "Feature {labels[feature]} of {labels[model]} {labels[model_version]} drifted",
                      "description": "{labels[metric]} = {value:.4g} (threshold {threshold:.4g}) in project "
                                     "{labels[project]}"}),
    Rule(name="HighHallucinationRate", kind="eval", score="hallucination", aggregate="mean",
         threshold=0.5, resolve_threshold=0.4, window=300, interval=10, min_samples=3, by=["project"],
         severity="warning",
         annotations={"summary": "Hallucination rate of project {labels[project]} is {value:.2f}",
                      "description": "mean hallucination score over the last {window} is {value:.3f} "
                                     "(threshold {threshold}) from {samples} scores"}),
)


@dataclass
class AlertConfig:
    """Everything the engine needs, after merging defaults, the rules file and the webhook setting."""

    rules: dict[str, Rule]
    receivers: dict[str, Receiver]
    route: RouteDefaults = field(default_factory=RouteDefaults)
    routes: list[Route] = field(default_factory=list)

    def routes_for(self, labels: dict[str, str]) -> list[tuple[str, GroupSettings]]:
        """(receiver, grouping) pairs for an alert's labels, Alertmanager-style first match wins."""
        base = GroupSettings(**self.route.model_dump(exclude={"receiver"}))
        out: list[tuple[str, GroupSettings]] = []
        for route in self.routes:
            if route.matches(labels):
                out.append((route.receiver, route.settings(base)))
                if not route.continue_:
                    return out
        return out or [(self.route.receiver, base)]


def effective_config(alert_webhook: str = "", doc: RulesFile | None = None) -> AlertConfig:
    rules: dict[str, Rule] = {}
    if doc is None or doc.defaults:
        rules.update({r.name: r for r in DEFAULT_RULES})
    receivers: dict[str, Receiver] = {}
    if alert_webhook:
        receivers["default"] = Receiver(name="default", type="alertmanager", url=alert_webhook)
    if doc is None:
        return AlertConfig(rules=rules, receivers=receivers)
    rules.update({r.name: r for r in doc.rules})  # a file rule with a default's name replaces it
    receivers.update({r.name: r for r in doc.receivers})
    return AlertConfig(rules=rules, receivers=receivers, route=doc.route, routes=list(doc.routes))
