"""Reads and writes of the evaluation tables: feedback, comments, datasets and evaluation runs.

One module used by the HTTP API (``api/routes_evals.py``) and by server-side ``evaluate()``, so
both agree on the SQL. Every method takes the caller's tenant; ``""`` is the default tenant of a
deployment without auth.

Dataset versioning: a change (items added and/or deleted) makes version N+1; an item's rows record
``added_in``/``deleted_in``, so ``items(name, version=k)`` reads any past version. Item ids are
content hashes (input, expected output, context): adding an existing item is a no-op.
"""
from __future__ import annotations

import hashlib
import json
import math
import threading
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orbitwatch.schemas.records import EvalScore
from orbitwatch.storage import Storage


class NotFoundError(LookupError):
    """The dataset / run / comment does not exist (for this tenant and project)."""


class InvalidError(ValueError):
    """The request cannot be stored as given; the message says why."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _json(v: Any) -> str:
    """Always JSON (a string too), so "4" and 4 come back as what was stored."""
    return json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)


def _unjson(s: str) -> Any:
    if s == "":
        return None
    try:
        return json.loads(s)
    except ValueError:
        return s


class DatasetItem(BaseModel):
    """An item to evaluate: ``input`` for the task, ``expected_output`` (reference), ``context``
    (documents for RAG metrics) and free ``metadata``. ``id`` defaults to a content hash."""

    model_config = ConfigDict(extra="forbid")
    input: Any
    expected_output: Any = None
    context: list[str] = []
    metadata: dict[str, Any] = {}
    id: str = ""

    def item_id(self) -> str:
        if self.id:
            return self.id
        blob = json.dumps([self.input, self.expected_output, self.context], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]


class Feedback(BaseModel):
    """A human (``ui``) or SDK score on a span or trace. Several annotators may score the same item."""

    model_config = ConfigDict(extra="forbid")
    entity_type: str = Field("trace", pattern="^(span|trace)$")
    entity_id: str = Field(min_length=1, max_length=200)
    trace_id: str = ""
    project: str = ""
    name: str = Field(min_length=1, max_length=200)
    value: float
    reason: str = Field("", max_length=10_000)
    category: str = Field("", max_length=200)
    annotator: str = Field("", max_length=200)
    scorer_version: str = Field("", max_length=200)
    rule: str = Field("", max_length=200)  # offline scores: the experiment (run) name

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be a finite number")
        return v


class EvalStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._lock = threading.Lock()  # serialises version bumps within this process

    # -- feedback scores --------------------------------------------------------------------------
    def add_feedback(self, items: Iterable[Feedback], tenant: str = "", source: str = "ui") -> list[EvalScore]:
        rows = []
        for f in items:
            trace_id = f.trace_id or (f.entity_id if f.entity_type == "trace" else "")
            rows.append(EvalScore(tenant=tenant, project=f.project, entity_type=f.entity_type,
                                  entity_id=f.entity_id, trace_id=trace_id, name=f.name, value=f.value,
                                  reason=f.reason, source=source, category=f.category, annotator=f.annotator,
                                  scorer_version=f.scorer_version or ("human" if source == "ui" else ""),
                                  rule=f.rule, timestamp=_now()))
        self.storage.insert_models("eval_scores", rows)
        return rows

    def scores(self, tenant: str | None, *, trace_id: str = "", entity_type: str = "", entity_id: str = "",
               project: str | None = None, source: str = "") -> list[dict[str, Any]]:
        conds, params = ["1"], {}
        for col, val in (("trace_id", trace_id), ("entity_type", entity_type), ("entity_id", entity_id),
                         ("source", source)):
            if val:
                conds.append(f"{col} = {{{col}:String}}")
                params[col] = val
        if tenant is not None:
            conds.append("tenant = {tenant:String}")
            params["tenant"] = tenant
        if project:
            conds.append("project = {project:String}")
            params["project"] = project
        return self.storage.query_dicts(
            "SELECT project, entity_type, entity_id, trace_id, name, value, reason, source, category, annotator, "
            f"scorer_version, rule, timestamp FROM eval_scores FINAL WHERE {' AND '.join(conds)} "
            "ORDER BY entity_id, name, source, annotator LIMIT 10000", params)

    def delete_feedback(self, tenant: str, project: str, entity_type: str, entity_id: str, name: str,
                        annotator: str) -> None:
        """Remove one annotator's ``ui`` score (a lightweight delete; other sources stay)."""
        self.storage.command(
            "DELETE FROM eval_scores WHERE tenant = {t:String} AND project = {p:String} AND entity_type = {et:String}"
            " AND entity_id = {e:String} AND name = {n:String} AND annotator = {a:String} AND source = 'ui'",
            {"t": tenant, "p": project, "et": entity_type, "e": entity_id, "n": name, "a": annotator})

    # -- comments ---------------------------------------------------------------------------------
    def add_comment(self, tenant: str, project: str, entity_type: str, entity_id: str, text: str,
                    author: str = "", trace_id: str = "") -> dict[str, Any]:
        if entity_type not in ("span", "trace"):
            raise InvalidError("entity_type must be span or trace")
        if not text.strip():
            raise InvalidError("comment text is empty")
        now = _now()
        row = {"tenant": tenant, "project": project, "entity_type": entity_type, "entity_id": entity_id,
               "trace_id": trace_id or (entity_id if entity_type == "trace" else ""),
               "comment_id": uuid.uuid4().hex, "text": text, "author": author, "created_at": now,
               "updated_at": now, "deleted": 0}
        self.storage.insert_rows("comments", list(row), [list(row.values())])
        return {k: v for k, v in row.items() if k not in ("deleted", "tenant")}

    def comments(self, tenant: str | None, *, entity_id: str = "", trace_id: str = "",
                 project: str | None = None) -> list[dict[str, Any]]:
        conds, params = ["deleted = 0"], {}
        if entity_id:
            conds.append("entity_id = {e:String}")
            params["e"] = entity_id
        if trace_id:
            conds.append("trace_id = {tr:String}")
            params["tr"] = trace_id
        if tenant is not None:
            conds.append("tenant = {t:String}")
            params["t"] = tenant
        if project:
            conds.append("project = {p:String}")
            params["p"] = project
        return self.storage.query_dicts(
            "SELECT project, entity_type, entity_id, trace_id, comment_id, text, author, created_at, updated_at "
            f"FROM comments FINAL WHERE {' AND '.join(conds)} ORDER BY created_at LIMIT 10000", params)

    def delete_comment(self, tenant: str | None, comment_id: str) -> None:
        rows = self.storage.query_dicts(
            "SELECT * FROM comments FINAL WHERE comment_id = {c:String} AND deleted = 0"
            + (" AND tenant = {t:String}" if tenant is not None else ""), {"c": comment_id, "t": tenant or ""})
        if not rows:
            raise NotFoundError(f"no comment {comment_id!r}")
        row = dict(rows[0], deleted=1, updated_at=_now())
        self.storage.insert_rows("comments", list(row), [list(row.values())])

    # -- datasets ---------------------------------------------------------------------------------
    def _dataset_row(self, tenant: str, project: str, name: str) -> dict[str, Any] | None:
        rows = self.storage.query_dicts(
            "SELECT * FROM datasets FINAL WHERE tenant = {t:String} AND project = {p:String} AND name = {n:String}",
            {"t": tenant, "p": project, "n": name})
        return rows[0] if rows else None

    def create_dataset(self, tenant: str, project: str, name: str, description: str = "") -> dict[str, Any]:
        """Create (or return, unchanged, the existing) dataset ``name`` at version 0."""
        if not name.strip() or len(name) > 200:
            raise InvalidError("dataset name must be 1-200 characters")
        with self._lock:
            row = self._dataset_row(tenant, project, name)
            if row is not None:
                return self._public(row)
            now = _now()
            row = {"tenant": tenant, "project": project, "name": name, "description": description,
                   "version": 0, "item_count": 0, "created_at": now, "updated_at": now}
            self.storage.insert_rows("datasets", list(row), [list(row.values())])
            return self._public(row)

    def get_dataset(self, tenant: str, project: str, name: str) -> dict[str, Any]:
        row = self._dataset_row(tenant, project, name)
        if row is None:
            raise NotFoundError(f"no dataset {name!r} in project {project!r}")
        return self._public(row)

    def list_datasets(self, tenant: str | None, project: str | None = None) -> list[dict[str, Any]]:
        conds, params = ["1"], {}
        if tenant is not None:
            conds.append("tenant = {t:String}")
            params["t"] = tenant
        if project:
            conds.append("project = {p:String}")
            params["p"] = project
        return [self._public(r) for r in self.storage.query_dicts(
            f"SELECT * FROM datasets FINAL WHERE {' AND '.join(conds)} ORDER BY project, name", params)]

    def versions(self, tenant: str, project: str, name: str) -> list[dict[str, Any]]:
        self.get_dataset(tenant, project, name)
        return self.storage.query_dicts(
            "SELECT version, change, added, deleted, item_count, created_at FROM dataset_versions FINAL "
            "WHERE tenant = {t:String} AND project = {p:String} AND name = {n:String} ORDER BY version",
            {"t": tenant, "p": project, "n": name})

    def add_items(self, tenant: str, project: str, name: str, items: Iterable[DatasetItem | dict],
                  change: str = "add items") -> dict[str, Any]:
        """Add items as a new version (items already in the latest version are skipped; when none is
        new the version does not change). Creates the dataset if needed."""
        parsed = [i if isinstance(i, DatasetItem) else DatasetItem.model_validate(i) for i in items]
        self.create_dataset(tenant, project, name)
        with self._lock:
            ds = self._dataset_row(tenant, project, name)
            assert ds is not None
            current = set(self._item_ids(tenant, project, name, ds["version"]))
            new, seen = [], set()
            for it in parsed:
                iid = it.item_id()
                if iid in current or iid in seen:
                    continue
                seen.add(iid)
                new.append(it)
            if not new:
                return self._public(ds)
            version = ds["version"] + 1
            now = _now()
            cols = ["tenant", "project", "dataset", "item_id", "input", "expected_output", "context", "metadata",
                    "added_in", "deleted_in", "updated_at"]
            self.storage.insert_rows("dataset_items", cols, [
                [tenant, project, name, it.item_id(), _json(it.input),
                 "" if it.expected_output is None else _json(it.expected_output), list(it.context),
                 _json(it.metadata), version, 0, now] for it in new])
            return self._bump(ds, version, change, added=len(new), deleted=0, count=len(current) + len(new))

    def delete_items(self, tenant: str, project: str, name: str, item_ids: Iterable[str]) -> dict[str, Any]:
        """Remove items from the dataset as a new version (old versions still contain them)."""
        wanted = set(item_ids)
        with self._lock:
            ds = self._dataset_row(tenant, project, name)
            if ds is None:
                raise NotFoundError(f"no dataset {name!r} in project {project!r}")
            rows = [r for r in self._items(tenant, project, name, ds["version"]) if r["item_id"] in wanted]
            unknown = wanted - {r["item_id"] for r in rows}
            if unknown:
                raise NotFoundError(f"not in dataset {name!r}: {', '.join(sorted(unknown))}")
            if not rows:
                return self._public(ds)
            version = ds["version"] + 1
            now = _now()
            for r in rows:
                r.update(deleted_in=version, updated_at=now)
            cols = list(rows[0])
            self.storage.insert_rows("dataset_items", cols, [[r[c] for c in cols] for r in rows])
            return self._bump(ds, version, "delete items", added=0, deleted=len(rows),
                              count=ds["item_count"] - len(rows))

    def _bump(self, ds: dict[str, Any], version: int, change: str, added: int, deleted: int, count: int
              ) -> dict[str, Any]:
        now = _now()
        self.storage.insert_rows("dataset_versions", ["tenant", "project", "name", "version", "change", "added",
                                                      "deleted", "item_count", "created_at"],
                                 [[ds["tenant"], ds["project"], ds["name"], version, change, added, deleted,
                                   count, now]])
        row = dict(ds, version=version, item_count=count, updated_at=now)
        self.storage.insert_rows("datasets", list(row), [list(row.values())])
        return self._public(row)

    def _items(self, tenant: str, project: str, name: str, version: int) -> list[dict[str, Any]]:
        return self.storage.query_dicts(
            "SELECT * FROM dataset_items FINAL WHERE tenant = {t:String} AND project = {p:String} "
            "AND dataset = {n:String} AND added_in <= {v:UInt32} AND (deleted_in = 0 OR deleted_in > {v:UInt32}) "
            "ORDER BY added_in, item_id", {"t": tenant, "p": project, "n": name, "v": version})

    def _item_ids(self, tenant: str, project: str, name: str, version: int) -> list[str]:
        return [r["item_id"] for r in self._items(tenant, project, name, version)]

    def items(self, tenant: str, project: str, name: str, version: int | None = None) -> tuple[int, list[dict]]:
        """(version, items) of ``name`` at ``version`` (default: latest)."""
        ds = self.get_dataset(tenant, project, name)
        v = ds["version"] if version is None else version
        if v < 0 or v > ds["version"]:
            raise NotFoundError(f"dataset {name!r} has versions 0..{ds['version']}, not {v}")
        return v, [{"id": r["item_id"], "input": _unjson(r["input"]), "expected_output": _unjson(r["expected_output"]),
                    "context": list(r["context"]), "metadata": _unjson(r["metadata"]) or {}}
                   for r in self._items(tenant, project, name, v)]

    @staticmethod
    def _public(row: dict[str, Any]) -> dict[str, Any]:
        return {k: row[k] for k in ("project", "name", "description", "version", "item_count", "created_at",
                                    "updated_at")}

    # -- online scoring rules managed through the API -------------------------------------------------
    def put_rule(self, tenant: str, rule: Any) -> dict[str, Any]:
        """Store (create or replace) an online scoring rule; ``rule`` is a validated rules.Rule."""
        body = rule.model_copy(update={"tenant": tenant}).model_dump(mode="json")
        self.storage.insert_rows("eval_rules", ["tenant", "name", "body", "deleted", "updated_at"],
                                 [[tenant, rule.name, json.dumps(body), 0, _now()]])
        return body

    def delete_rule(self, tenant: str, name: str) -> None:
        if not any(r["name"] == name for r in self.rules(tenant)):
            raise NotFoundError(f"no eval rule {name!r}")
        self.storage.insert_rows("eval_rules", ["tenant", "name", "body", "deleted", "updated_at"],
                                 [[tenant, name, "", 1, _now()]])

    def rules(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Stored rules (every tenant's when ``tenant`` is None), as JSON objects."""
        rows = self.storage.query_dicts(
            "SELECT body FROM eval_rules FINAL WHERE deleted = 0"
            + (" AND tenant = {t:String}" if tenant is not None else "") + " ORDER BY tenant, name",
            {"t": tenant or ""})
        return [json.loads(r["body"]) for r in rows]

    # -- evaluation runs --------------------------------------------------------------------------
    def save_run(self, run: dict[str, Any], items: list[dict[str, Any]], tenant: str = "") -> None:
        """Store a run (``run_id``, ``name``, ``project``, ``dataset``, ``dataset_version``, ``config``,
        ``status``, ``started_at``, ``ended_at``) and its items (``item_id``, ``trace_id``, ``input``,
        ``expected_output``, ``output``, ``scores``, ``reasons``, ``error``, ``latency_ms``). Aggregate
        scores (means over items that have the score) are computed here."""
        if not run.get("run_id"):
            raise InvalidError("run_id is required")
        now = _now()
        sums: dict[str, list[float]] = {}
        errors = 0
        rows = []
        for it in items:
            scores = {k: float(v) for k, v in (it.get("scores") or {}).items()}
            for k, v in scores.items():
                if not math.isfinite(v):
                    raise InvalidError(f"item {it.get('item_id')!r}: score {k} is not finite")
                sums.setdefault(k, []).append(v)
            errors += 1 if it.get("error") else 0
            rows.append([tenant, run.get("project", ""), run["run_id"], str(it.get("item_id", "")),
                         str(it.get("trace_id", "")), _json(it.get("input")),
                         "" if it.get("expected_output") is None else _json(it.get("expected_output")),
                         "" if it.get("output") is None else _json(it.get("output")), scores,
                         {k: str(v)[:2000] for k, v in (it.get("reasons") or {}).items()},
                         str(it.get("error") or "")[:2000], float(it.get("latency_ms") or 0.0), now])
        self.storage.insert_rows("eval_run_items", ["tenant", "project", "run_id", "item_id", "trace_id", "input",
                                                    "expected_output", "output", "scores", "reasons", "error",
                                                    "latency_ms", "timestamp"], rows)
        agg = {k: sum(v) / len(v) for k, v in sums.items()}
        row = [tenant, run.get("project", ""), run["run_id"], run.get("name", ""), run.get("dataset", ""),
               int(run.get("dataset_version") or 0), _json(run.get("config") or {}), run.get("status", "finished"),
               _dt(run.get("started_at")) or now, _dt(run.get("ended_at")), len(items), errors, agg, now]
        self.storage.insert_rows("eval_runs", ["tenant", "project", "run_id", "name", "dataset", "dataset_version",
                                               "config", "status", "started_at", "ended_at", "item_count",
                                               "error_count", "scores", "updated_at"], [row])

    def runs(self, tenant: str | None, *, project: str | None = None, dataset: str = "", name: str = "",
             limit: int = 100) -> list[dict[str, Any]]:
        conds, params = ["1"], {"lim": limit}
        for col, val in (("project", project), ("dataset", dataset), ("name", name)):
            if val:
                conds.append(f"{col} = {{{col}:String}}")
                params[col] = val
        if tenant is not None:
            conds.append("tenant = {t:String}")
            params["t"] = tenant
        rows = self.storage.query_dicts(
            "SELECT project, run_id, name, dataset, dataset_version, config, status, started_at, ended_at, "
            f"item_count, error_count, scores FROM eval_runs FINAL WHERE {' AND '.join(conds)} "
            "ORDER BY started_at DESC LIMIT {lim:UInt32}", params)
        for r in rows:
            r["config"] = _unjson(r["config"]) or {}
            r["scores"] = dict(r["scores"])
        return rows

    def get_run(self, tenant: str | None, run_id: str, with_items: bool = True) -> dict[str, Any]:
        conds = "run_id = {r:String}" + (" AND tenant = {t:String}" if tenant is not None else "")
        found = self.storage.query_dicts(
            "SELECT project, run_id, name, dataset, dataset_version, config, status, started_at, ended_at, "
            f"item_count, error_count, scores FROM eval_runs FINAL WHERE {conds}", {"r": run_id, "t": tenant or ""})
        if not found:
            raise NotFoundError(f"no evaluation run {run_id!r}")
        run = found[0]
        run["config"] = _unjson(run["config"]) or {}
        run["scores"] = dict(run["scores"])
        if with_items:
            items = self.storage.query_dicts(
                "SELECT item_id, trace_id, input, expected_output, output, scores, reasons, error, latency_ms "
                f"FROM eval_run_items FINAL WHERE {conds} ORDER BY item_id", {"r": run_id, "t": tenant or ""})
            for it in items:
                for k in ("input", "expected_output", "output"):
                    it[k] = _unjson(it[k])
                it["scores"], it["reasons"] = dict(it["scores"]), dict(it["reasons"])
            run["items"] = items
        return run

    def compare_runs(self, tenant: str | None, run_ids: list[str]) -> dict[str, Any]:
        """Per-metric means of each run with the difference to the first (the baseline), and per
        item the scores of every run, for items present in any of them."""
        if len(run_ids) < 2:
            raise InvalidError("compare needs at least two run ids")
        runs = [self.get_run(tenant, r) for r in run_ids]
        base = runs[0]
        names = sorted({n for r in runs for n in r["scores"]})
        metrics = {}
        for n in names:
            vals = {r["run_id"]: r["scores"].get(n) for r in runs}
            b = vals[base["run_id"]]
            metrics[n] = {"runs": vals, "delta_vs_baseline": {
                rid: (None if v is None or b is None else v - b) for rid, v in vals.items() if rid != base["run_id"]}}
        by_item: dict[str, dict[str, Any]] = {}
        for r in runs:
            for it in r["items"]:
                entry = by_item.setdefault(it["item_id"], {"item_id": it["item_id"], "input": it["input"],
                                                           "expected_output": it["expected_output"], "runs": {}})
                entry["runs"][r["run_id"]] = {"output": it["output"], "scores": it["scores"], "error": it["error"]}
        return {"baseline": base["run_id"],
                "runs": [{k: r[k] for k in r if k != "items"} for r in runs],
                "metrics": metrics, "items": list(by_item.values())}


def _dt(v: Any) -> datetime | None:
    if v is None or v == "":
        return None
    if isinstance(v, datetime):
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
    if isinstance(v, (int, float)):
        return datetime.fromtimestamp(v, timezone.utc)
    try:
        return datetime.fromisoformat(str(v).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidError(f"not a timestamp: {v!r}") from None
