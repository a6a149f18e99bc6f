"""Offline evaluation: run a task over a dataset, score every output, record a comparable run.

    import orbitwatch
    ds = orbitwatch.get_or_create_dataset("faq", items=[{"input": {"question": "..."},
                                                           "expected_output": "...", "context": [...]}])
    result = orbitwatch.evaluate(ds, task=lambda item: my_app(item["input"]["question"]),
                                 scoring_metrics=["hallucination", "answer_relevance", "rouge_l"],
                                 experiment_name="prompt-v2", experiment_config={"model": "gpt-4o-mini"})
    print(result.scores)                      # {"hallucination": 0.05, ...} means over items
    orbitwatch.compare_runs([baseline_run_id, result.run_id])

Where things are stored: ``storage=`` (a :class:`orbitwatch.storage.Storage`, server side) writes
ClickHouse directly; otherwise the query API at ``api_url`` (``ORBITWATCH_API_URL``) is used over
HTTP, so a laptop script needs only ``pip install orbitwatch``. Datasets are versioned: a run
records the version it used. Each task call is traced with ``@track`` (one trace per item, span
type ``chain``) unless ``trace=False``; the item's scores are also attached to that trace
(source ``offline``) so they show next to online scores.
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from orbitwatch.errors import UserError

__all__ = ["evaluate", "Dataset", "get_or_create_dataset", "get_dataset", "compare_runs", "get_run",
           "EvaluationResult", "ItemResult"]


# -- backends: the same operations over ClickHouse (server side) or the HTTP API -----------------------
class _StorageBackend:
    def __init__(self, storage: Any, tenant: str = "") -> None:
        from orbitwatch.processors.evals.store import EvalStore
        self.store, self.tenant = EvalStore(storage), tenant

    def create(self, project: str, name: str, description: str) -> dict[str, Any]:
        return self.store.create_dataset(self.tenant, project, name, description)

    def get(self, project: str, name: str) -> dict[str, Any]:
        return self._wrap(self.store.get_dataset, self.tenant, project, name)

    def items(self, project: str, name: str, version: int | None) -> tuple[int, list[dict[str, Any]]]:
        return self._wrap(self.store.items, self.tenant, project, name, version)

    def add_items(self, project: str, name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return self._wrap(self.store.add_items, self.tenant, project, name, items)

    def delete_items(self, project: str, name: str, ids: list[str]) -> dict[str, Any]:
        return self._wrap(self.store.delete_items, self.tenant, project, name, ids)

    def save_run(self, run: dict[str, Any], items: list[dict[str, Any]]) -> None:
        self._wrap(self.store.save_run, run, items, tenant=self.tenant)

    def add_scores(self, scores: list[dict[str, Any]]) -> None:
        from orbitwatch.processors.evals.store import Feedback
        self.store.add_feedback([Feedback(**s) for s in scores], tenant=self.tenant, source="offline")

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._wrap(self.store.get_run, self.tenant, run_id)

    def compare(self, run_ids: list[str]) -> dict[str, Any]:
        return self._wrap(self.store.compare_runs, self.tenant, run_ids)

    def list_datasets(self, project: str | None) -> list[dict[str, Any]]:
        return self.store.list_datasets(self.tenant, project)

    def versions(self, project: str, name: str) -> list[dict[str, Any]]:
        return self._wrap(self.store.versions, self.tenant, project, name)

    def runs(self, project: str | None, dataset: str = "", limit: int = 50) -> list[dict[str, Any]]:
        return self.store.runs(self.tenant, project=project, dataset=dataset, limit=limit)

    @staticmethod
    def _wrap(fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        from orbitwatch.processors.evals.store import InvalidError, NotFoundError
        try:
            return fn(*args, **kw)
        except (NotFoundError, InvalidError) as exc:
            raise UserError(str(exc)) from None


class _HttpBackend:
    """The query API's ``/api/v1`` evaluation endpoints, with the standard library only."""

    def __init__(self, api_url: str, api_key: str = "", timeout_s: float = 60.0) -> None:
        self.base = api_url.rstrip("/") + "/api/v1"
        self.api_key, self.timeout_s = api_key, timeout_s

    def _req(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        q = {k: v for k, v in query.items() if v is not None}
        url = self.base + path + ("?" + urllib.parse.urlencode(q) if q else "")
        data = json.dumps(body, default=str).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail")
            except Exception:
                detail = exc.reason
            raise UserError(f"{method} {url}: HTTP {exc.code}: {detail}") from None
        except urllib.error.URLError as exc:
            raise UserError(f"cannot reach the Orbitwatch API at {self.base}: {exc.reason} "
                            "(is `orbitwatch up` running? set ORBITWATCH_API_URL or pass storage=)") from None

    def create(self, project: str, name: str, description: str) -> dict[str, Any]:
        return self._req("POST", "/datasets", {"name": name, "project": project, "description": description})

    def get(self, project: str, name: str) -> dict[str, Any]:
        return self._req("GET", f"/datasets/{urllib.parse.quote(name, safe='')}", project=project)

    def items(self, project: str, name: str, version: int | None) -> tuple[int, list[dict[str, Any]]]:
        out = self._req("GET", f"/datasets/{urllib.parse.quote(name, safe='')}/items", project=project,
                        version=version)
        return out["version"], out["items"]

    def add_items(self, project: str, name: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        return self._req("POST", f"/datasets/{urllib.parse.quote(name, safe='')}/items",
                         {"project": project, "items": items})

    def delete_items(self, project: str, name: str, ids: list[str]) -> dict[str, Any]:
        return self._req("POST", f"/datasets/{urllib.parse.quote(name, safe='')}/items/delete",
                         {"project": project, "item_ids": ids})

    def save_run(self, run: dict[str, Any], items: list[dict[str, Any]]) -> None:
        self._req("POST", "/eval-runs", {"run": run, "items": items})

    def add_scores(self, scores: list[dict[str, Any]]) -> None:
        self._req("POST", "/feedback", {"scores": scores}, source="offline")

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._req("GET", f"/eval-runs/{urllib.parse.quote(run_id, safe='')}")

    def compare(self, run_ids: list[str]) -> dict[str, Any]:
        return self._req("GET", "/eval-runs/compare", run_ids=",".join(run_ids))

    def list_datasets(self, project: str | None) -> list[dict[str, Any]]:
        return self._req("GET", "/datasets", project=project)["items"]

    def versions(self, project: str, name: str) -> list[dict[str, Any]]:
        return self.get(project, name)["versions"]

    def runs(self, project: str | None, dataset: str = "", limit: int = 50) -> list[dict[str, Any]]:
        return self._req("GET", "/eval-runs", project=project, dataset=dataset or None, limit=limit)["items"]


def _backend(storage: Any = None, api_url: str | None = None, api_key: str | None = None) -> Any:
    if storage is not None:
        return _StorageBackend(storage)
    from orbitwatch.config import load_settings
    s = load_settings(api_url=api_url, api_key=api_key)
    return _HttpBackend(s.api_url, s.api_key)


def _project(project: str | None) -> str:
    if project:
        return project
    from orbitwatch.config import load_settings
    return load_settings().project


# -- datasets -------------------------------------------------------------------------------------------
class Dataset:
    """A named, versioned dataset. ``items()`` reads a version (default: the latest); ``insert``
    and ``delete`` each make a new version, so runs stay reproducible."""

    def __init__(self, name: str, project: str, backend: Any, info: Mapping[str, Any] | None = None) -> None:
        self.name, self.project, self._backend = name, project, backend
        self.info = dict(info or {})

    @property
    def version(self) -> int:
        return int(self.info.get("version", 0))

    def insert(self, items: Iterable[Mapping[str, Any]]) -> "Dataset":
        self.info = self._backend.add_items(self.project, self.name, [_item_dict(i) for i in items])
        return self

    def delete(self, item_ids: Iterable[str]) -> "Dataset":
        self.info = self._backend.delete_items(self.project, self.name, list(item_ids))
        return self

    def items(self, version: int | None = None) -> list[dict[str, Any]]:
        return self._backend.items(self.project, self.name, version)[1]

    def __repr__(self) -> str:
        return f"<Dataset {self.project}/{self.name} v{self.version}>"


def _item_dict(item: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {"input", "expected_output", "context", "metadata", "id"}
    unknown = set(item) - allowed
    if unknown or "input" not in item:
        raise UserError(f"a dataset item needs 'input' and may have {sorted(allowed - {'input'})}; "
                        f"got keys {sorted(item)}")
    return dict(item)


def get_or_create_dataset(name: str, items: Iterable[Mapping[str, Any]] | None = None, *, description: str = "",
                          project: str | None = None, storage: Any = None, api_url: str | None = None,
                          api_key: str | None = None) -> Dataset:
    """The dataset ``name`` (created if missing); ``items`` are added (duplicates are skipped)."""
    backend, proj = _backend(storage, api_url, api_key), _project(project)
    ds = Dataset(name, proj, backend, backend.create(proj, name, description))
    if items:
        ds.insert(items)
    return ds


def get_dataset(name: str, *, project: str | None = None, storage: Any = None, api_url: str | None = None,
                api_key: str | None = None) -> Dataset:
    backend, proj = _backend(storage, api_url, api_key), _project(project)
    return Dataset(name, proj, backend, backend.get(proj, name))


# -- evaluate -------------------------------------------------------------------------------------------
@dataclass
class ItemResult:
    item_id: str
    input: Any
    expected_output: Any
    output: Any = None
    scores: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    error: str = ""
    trace_id: str = ""
    latency_ms: float = 0.0


@dataclass
class EvaluationResult:
    run_id: str
    name: str
    dataset: str
    dataset_version: int
    scores: dict[str, float]
    items: list[ItemResult]
    duration_s: float

    @property
    def errors(self) -> int:
        return sum(1 for i in self.items if i.error)


def _metrics(scoring_metrics: Sequence[Any]) -> list[Any]:
    from orbitwatch.processors.evals import metrics as M
    out = []
    for m in scoring_metrics:
        if isinstance(m, str):
            try:
                out.append(M.create(m))
            except M.MetricError as exc:
                raise UserError(str(exc)) from None
        elif isinstance(m, M.Metric):
            out.append(m)
        else:
            raise UserError(f"scoring_metrics takes metric names or Metric objects, got {m!r}")
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise UserError(f"two scoring metrics share a name: {names}")
    return out


def _run_item(item: dict[str, Any], task: Callable[[dict[str, Any]], Any], metrics: list[Any],
              traced: Callable[..., Any] | None) -> ItemResult:
    from orbitwatch.processors.evals import extract
    from orbitwatch.processors.evals.metrics import EvalInput, MetricError

    res = ItemResult(item_id=item["id"], input=item["input"], expected_output=item.get("expected_output"))
    started = time.perf_counter()
    try:
        if traced is not None:
            res.output, res.trace_id = traced(item)
        else:
            res.output = task(item)
    except Exception as exc:  # the task is user code: record, keep going
        res.error = f"{type(exc).__name__}: {exc}"
        res.latency_ms = (time.perf_counter() - started) * 1000
        return res
    res.latency_ms = (time.perf_counter() - started) * 1000
    out = res.output
    context = list(item.get("context") or [])
    if isinstance(out, Mapping):
        context = list(out.get("context") or context)
        answer = next((out[k] for k in ("output", "answer", "response") if k in out), out)
    else:
        answer = out
    expected = item.get("expected_output")
    data = EvalInput(input=extract._pick(item["input"], extract._INPUT_KEYS, ("user",)),
                     output=extract._pick(answer, extract._OUTPUT_KEYS, ("assistant",)) if answer is not None else "",
                     context=[str(c) for c in context],
                     expected=None if expected is None else extract._pick(expected, extract._OUTPUT_KEYS,
                                                                           ("assistant",)))
    for m in metrics:
        missing = m.missing(data)
        if missing:
            res.reasons[m.name] = f"not scored: no {', '.join(missing)}"
            continue
        try:
            s = m.score(data)
        except MetricError as exc:
            res.reasons[m.name] = f"not scored: {exc}"
            continue
        except Exception as exc:  # judge errors and the like: per item, never fatal for the run
            res.reasons[m.name] = f"not scored: {type(exc).__name__}: {exc}"
            continue
        res.scores[m.name], res.reasons[m.name] = s.value, s.reason
    return res


def evaluate(dataset: Dataset | str | Sequence[Mapping[str, Any]], task: Callable[[dict[str, Any]], Any],
             scoring_metrics: Sequence[Any] = ("hallucination", "answer_relevance"),
             experiment_name: str = "", experiment_config: Mapping[str, Any] | None = None, *,
             dataset_version: int | None = None, project: str | None = None, workers: int = 4,
             trace: bool = True, storage: Any = None, api_url: str | None = None, api_key: str | None = None
             ) -> EvaluationResult:
    """Run ``task`` on every item of ``dataset`` (a Dataset, a dataset name, or a list of items)
    in ``workers`` threads, score each output with ``scoring_metrics`` (names or Metric objects)
    and record the run. ``task(item)`` gets the item dict (``input``, ``expected_output``,
    ``context``, ``metadata``, ``id``) and returns the output, or a dict with ``output`` and
    optionally ``context`` (documents it retrieved, for the RAG metrics). A task that raises
    marks its item failed; the run goes on."""
    if workers < 1:
        raise UserError("workers must be ≥ 1")
    metrics = _metrics(scoring_metrics)
    backend = _backend(storage, api_url, api_key)
    proj = _project(project)
    if isinstance(dataset, Dataset):
        name, (version, items) = dataset.name, dataset._backend.items(dataset.project, dataset.name, dataset_version)
        backend, proj = dataset._backend, dataset.project
    elif isinstance(dataset, str):
        name, (version, items) = dataset, backend.items(proj, dataset, dataset_version)
    else:
        from orbitwatch.processors.evals.store import DatasetItem
        name, version = "", 0
        items = []
        for raw in dataset:
            it = DatasetItem.model_validate(_item_dict(raw))
            items.append({**it.model_dump(), "id": it.item_id()})
    run_id = uuid.uuid4().hex
    run_name = experiment_name or f"run-{run_id[:8]}"
    traced = _traced_task(task, run_name, proj) if trace else None
    started_at = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="orbitwatch-eval") as pool:
        results = list(pool.map(lambda it: _run_item(it, task, metrics, traced), items))
    duration = time.perf_counter() - t0
    sums: dict[str, list[float]] = {}
    for r in results:
        for k, v in r.scores.items():
            sums.setdefault(k, []).append(v)
    agg = {k: sum(v) / len(v) for k, v in sums.items()}
    run = {"run_id": run_id, "name": run_name, "project": proj, "dataset": name, "dataset_version": version,
           "config": dict(experiment_config or {}), "status": "finished", "started_at": started_at.isoformat(),
           "ended_at": datetime.now(timezone.utc).isoformat()}
    backend.save_run(run, [_jsonable(r.__dict__) for r in results])
    scores = [{"entity_type": "trace", "entity_id": r.trace_id, "trace_id": r.trace_id, "project": proj, "name": k,
               "value": v, "reason": r.reasons.get(k, "")[:2000], "rule": run_name,
               "scorer_version": next((m.scorer_version for m in metrics if m.name == k), "")}
              for r in results if r.trace_id for k, v in r.scores.items()]
    if scores:
        backend.add_scores(scores)
    return EvaluationResult(run_id, run_name, name, version, agg, results, duration)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def _traced_task(task: Callable[[dict[str, Any]], Any], run_name: str, project: str) -> Callable[..., Any]:
    """Wrap ``task`` in a tracked span per item; the wrapper returns (output, trace id)."""
    import threading

    from orbitwatch.tracking import get_current_trace_id, track, update_current_span

    local = threading.local()

    @track(name=f"evaluate:{run_name}", type="chain", project_name=project)
    def run(item: dict[str, Any]) -> Any:
        local.trace_id = get_current_trace_id() or ""
        update_current_span(metadata={"dataset_item_id": item["id"], "experiment": run_name})
        return task(item)

    def call(item: dict[str, Any]) -> tuple[Any, str]:
        local.trace_id = ""
        output = run(item)
        return output, local.trace_id
    return call


def get_run(run_id: str, *, storage: Any = None, api_url: str | None = None, api_key: str | None = None
            ) -> dict[str, Any]:
    return _backend(storage, api_url, api_key).get_run(run_id)


def compare_runs(run_ids: Sequence[str], *, storage: Any = None, api_url: str | None = None,
                 api_key: str | None = None) -> dict[str, Any]:
    """Per-metric means of each run with deltas against the first, and per-item scores."""
    return _backend(storage, api_url, api_key).compare(list(run_ids))
