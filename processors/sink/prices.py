"""Model prices (USD per 1M input / output tokens) for the ``cost`` column of LLM spans.

Shipped defaults live in ``prices.json`` next to this module. A deployment overrides or extends
them with a JSON or YAML file of the same shape (``{"model": [input_per_1m, output_per_1m]}`` or
``{"model": {"input": .., "output": ..}}``) named by ``ORBITWATCH_PRICES``, or found at
``<data_dir>/prices.json`` / ``prices.yaml``; entries in the file win over the defaults.

A span that carries ``orbitwatch.cost`` (or OpenInference ``llm.cost.total``) keeps that cost; the
table is only used when the caller did not say. Unknown models cost 0 and are counted in the
``orbitwatch_sink_unpriced_spans_total`` metric, so a missing price is visible, not silent.
"""
from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

PRICES_ENV = "ORBITWATCH_PRICES"


class PriceTableError(ValueError):
    """The price file cannot be read or has the wrong shape; the message names the file and entry."""


def _parse(obj: Any, source: str) -> dict[str, tuple[float, float]]:
    if not isinstance(obj, dict):
        raise PriceTableError(f"{source}: expected a mapping of model -> [input, output] per 1M tokens")
    table: dict[str, tuple[float, float]] = {}
    for model, price in obj.items():
        if str(model).startswith("_"):
            continue  # comments
        try:
            if isinstance(price, dict):
                inp, out = float(price.get("input", 0.0)), float(price.get("output", 0.0))
            else:
                inp, out = (float(x) for x in price)
        except (TypeError, ValueError):
            raise PriceTableError(f"{source}: price of {model!r} must be [input, output] or "
                                  f"{{input:, output:}} in USD per 1M tokens, got {price!r}") from None
        if inp < 0 or out < 0:
            raise PriceTableError(f"{source}: negative price for {model!r}")
        table[str(model).lower()] = (inp, out)
    return table


def load_file(path: str | Path) -> dict[str, tuple[float, float]]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise PriceTableError(f"cannot read price file {p}: {exc.strerror}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml
            obj = yaml.safe_load(text)
        else:
            obj = json.loads(text)
    except Exception as exc:
        raise PriceTableError(f"price file {p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    return _parse(obj, str(p))


def defaults() -> dict[str, tuple[float, float]]:
    text = (resources.files("orbitwatch.processors.sink") / "prices.json").read_text()
    return _parse(json.loads(text), "shipped prices.json")


class PriceTable:
    """Looks up a model's price; lookups are cached, since a stream repeats a few model names."""

    def __init__(self, table: dict[str, tuple[float, float]]) -> None:
        self._table = {k.lower(): v for k, v in table.items()}
        # longest keys first, so "gpt-4o-mini-2024" matches gpt-4o-mini before gpt-4o
        self._prefixes = sorted(self._table, key=len, reverse=True)
        self._cache: dict[str, tuple[float, float] | None] = {}

    @classmethod
    def load(cls, data_dir: Path | None = None, path: str | Path | None = None) -> "PriceTable":
        """Defaults, overridden by ``path`` / ``$ORBITWATCH_PRICES`` / ``<data_dir>/prices.{json,yaml}``."""
        table = defaults()
        chosen = path or os.environ.get(PRICES_ENV) or None
        if not chosen and data_dir is not None:
            for name in ("prices.json", "prices.yaml", "prices.yml"):
                if (Path(data_dir) / name).is_file():
                    chosen = Path(data_dir) / name
                    break
        if chosen:
            table.update(load_file(chosen))
        return cls(table)

    def lookup(self, model: str) -> tuple[float, float] | None:
        if not model:
            return None
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._find(model.lower())
        if len(self._cache) < 10_000:
            self._cache[model] = found
        return found

    def _find(self, name: str) -> tuple[float, float] | None:
        candidates = [name]
        if "/" in name:  # "openai/gpt-4o", "models/gemini-1.5-pro"
            candidates.append(name.rsplit("/", 1)[1])
        for cand in candidates:
            if cand in self._table:
                return self._table[cand]
        for cand in candidates:
            for key in self._prefixes:
                if cand.startswith(key) and (len(cand) == len(key) or cand[len(key)] in "-:@._"):
                    return self._table[key]
        return None

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD for the tokens, or None when the model has no price."""
        price = self.lookup(model)
        if price is None:
            return None
        return (input_tokens * price[0] + output_tokens * price[1]) / 1_000_000
