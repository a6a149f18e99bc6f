"""LLM tracing: the Opik-style ``@track`` decorator and its helpers, on OpenTelemetry spans.

Each call of a tracked function is one span; nested tracked calls are its children, so a
top-level call is one trace. Generators and async generators are spans from the call until
they are exhausted or closed, their output being the aggregated yields (joined when they are
all strings). Exceptions mark the span ERROR, are recorded as an exception event and are
re-raised unchanged.

Living next to an application's own OpenTelemetry setup (the rule, chosen so traces join
without touching anything the application owns):

* ``@track`` spans are created by Orbitwatch's *own* TracerProvider (see
  :mod:`orbitwatch.transport`); the global provider is never replaced or modified.
* Parenting uses the *current OpenTelemetry context*, which all providers share. A tracked
  function called inside an application span becomes that span's child (same trace id), and
  application spans started inside a tracked function (e.g. by an HTTP client
  instrumentation) become children of the tracked span. The application's backend receives
  its spans, Orbitwatch receives its own; both carry the same trace id.
* Orbitwatch samples everything it is asked to record (``ALWAYS_ON``), independent of the
  application's sampler.

Attributes follow the OpenTelemetry GenAI conventions where they exist (``gen_ai.*``) and
``orbitwatch.*`` (:mod:`orbitwatch.schemas.attributes`) for the rest; inputs/outputs are
JSON, truncated per :mod:`orbitwatch.serialization`.
"""
from __future__ import annotations

import functools
import inspect
import logging
import re
from typing import Any, Callable, Iterable, Mapping, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace as trace_api
from opentelemetry.trace import Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from orbitwatch import transport as _transport_mod
from orbitwatch.schemas import attributes as A
from orbitwatch.serialization import dumps, to_json

log = logging.getLogger("orbitwatch")

F = TypeVar("F", bound=Callable[..., Any])

_STATE_KEY = otel_context.create_key("orbitwatch-track-span")
_PROPAGATOR = TraceContextTextMapPropagator()
_HEADERS_KWARG = "orbitwatch_trace_headers"
_MISSING: Any = object()

GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
# span type → gen_ai.operation.name (semconv well-known values)
_OPERATIONS = {"llm": "chat", "tool": "execute_tool", "agent": "invoke_agent"}

_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning("orbitwatch: " + message, *args)


class _TraceState:
    """What ``update_current_trace`` changes: shared by all tracked spans of one local trace."""

    __slots__ = ("root", "project", "session_id", "user_id")

    def __init__(self, project: str) -> None:
        self.root: _SpanState | None = None
        self.project = project
        self.session_id: str | None = None
        self.user_id: str | None = None


class _SpanState:
    """A tracked span while it runs; attribute changes are collected and set once at the end."""

    __slots__ = ("span", "trace", "span_type", "attrs", "metadata", "tags", "feedback", "truncated",
                 "output_set", "max_chars")

    def __init__(self, span: Any, trace: _TraceState, span_type: str, max_chars: int) -> None:
        self.span = span
        self.trace = trace
        self.span_type = span_type
        self.attrs: dict[str, Any] = {}
        self.metadata: dict[str, Any] | None = None
        self.tags: list[str] | None = None
        self.feedback: list[dict[str, Any]] | None = None
        self.truncated: set[str] | None = None
        self.output_set = False
        self.max_chars = max_chars

    def set_json(self, key: str, field: str, value: Any) -> None:
        text, cut = to_json(value, self.max_chars)
        self.attrs[key] = text
        if cut:
            if self.truncated is None:
                self.truncated = set()
            self.truncated.add(field)

    def update(self, *, name: str | None = None, input: Any = _MISSING, output: Any = _MISSING,
               metadata: Mapping[str, Any] | None = None, tags: Iterable[str] | None = None,
               usage: Mapping[str, Any] | None = None, model: str | None = None, provider: str | None = None,
               total_cost: float | None = None, feedback_scores: Iterable[Mapping[str, Any]] | None = None,
               context: Iterable[str] | None = None, expected_output: Any = _MISSING,
               span_type: str | None = None, session_id: str | None = None, user_id: str | None = None) -> None:
        if session_id:
            self.attrs[A.SESSION_ID] = str(session_id)
        if user_id:
            self.attrs[A.USER_ID] = str(user_id)
        if name:
            self.span.update_name(str(name))
        if input is not _MISSING:
            self.set_json(A.INPUT, "input", input)
        if output is not _MISSING:
            self.set_json(A.OUTPUT, "output", output)
            self.output_set = True
        if expected_output is not _MISSING:
            self.set_json(A.EXPECTED_OUTPUT, "expected_output", expected_output)
        if metadata:
            if not isinstance(metadata, Mapping):
                raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
            self.metadata = {**(self.metadata or {}), **metadata}
        if tags:
            self.tags = _merge_tags(self.tags, tags)
        if usage:
            self.attrs.update(_usage_attrs(usage))
        if model:
            self.attrs[GEN_AI_REQUEST_MODEL] = str(model)
        if provider:
            self.attrs[GEN_AI_PROVIDER] = str(provider)
        if total_cost is not None:
            self.attrs[A.COST] = float(total_cost)
        if feedback_scores:
            self.feedback = (self.feedback or []) + [_check_score(s) for s in feedback_scores]
        if context is not None:
            if isinstance(context, str):
                context = [context]
            self.set_json(A.CONTEXT, "context", [str(c) for c in context])
        if span_type:
            _check_type(span_type)
            self.span_type = span_type
            self.attrs[A.SPAN_TYPE] = span_type
            op = _OPERATIONS.get(span_type)
            if op:
                self.attrs[GEN_AI_OPERATION] = op

    def finish(self, output: Any, exc: BaseException | None, capture_output: bool) -> None:
        attrs = self.attrs
        if capture_output and not self.output_set and output is not _MISSING:
            self.set_json(A.OUTPUT, "output", output)
        if self.metadata is not None:
            self.set_json(A.METADATA, "metadata", self.metadata)
        if self.tags is not None:
            attrs[A.TAGS] = dumps(self.tags)
        if self.feedback is not None:
            attrs[A.FEEDBACK_SCORES] = dumps(self.feedback)
        trace = self.trace
        if trace.session_id is not None and A.SESSION_ID not in attrs:
            attrs[A.SESSION_ID] = trace.session_id
        if trace.user_id is not None and A.USER_ID not in attrs:
            attrs[A.USER_ID] = trace.user_id
        if self.truncated:
            attrs[A.TRUNCATED] = ",".join(sorted(self.truncated))
        span = self.span
        if exc is not None:
            span.record_exception(exc, escaped=True)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        if attrs:
            span.set_attributes(attrs)
        span.end()


def _merge_tags(existing: list[str] | None, tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    out = list(existing or [])
    for t in tags:
        t = str(t)
        if t not in out:
            out.append(t)
    return out


def _usage_attrs(usage: Mapping[str, Any]) -> dict[str, int]:
    """OpenAI-style (prompt/completion) or semconv-style (input/output) token counts."""
    if not isinstance(usage, Mapping):
        dump = getattr(usage, "model_dump", None)
        usage = dump() if callable(dump) else vars(usage)
    out: dict[str, int] = {}
    for key, attr in (("prompt_tokens", GEN_AI_INPUT_TOKENS), ("input_tokens", GEN_AI_INPUT_TOKENS),
                      ("completion_tokens", GEN_AI_OUTPUT_TOKENS), ("output_tokens", GEN_AI_OUTPUT_TOKENS)):
        value = usage.get(key)
        if value is not None:
            out[attr] = int(value)
    if not out and usage:
        raise ValueError(f"usage needs prompt_tokens/completion_tokens or input_tokens/output_tokens, got "
                         f"{sorted(usage)}")
    return out


def _check_score(score: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(score, Mapping) or "name" not in score or "value" not in score:
        raise ValueError(f"a feedback score needs 'name' and 'value', got {score!r}")
    unknown = set(score) - {"name", "value", "reason", "category", "annotator"}
    if unknown:
        raise ValueError(f"unknown feedback score fields {sorted(unknown)}")
    return {"name": str(score["name"]), "value": float(score["value"]), "reason": str(score.get("reason") or ""),
            "category": str(score.get("category") or "")}


def _check_type(span_type: str) -> None:
    if span_type not in A.SPAN_TYPES:
        raise ValueError(f"type must be one of {', '.join(A.SPAN_TYPES)}; got {span_type!r}")


class _Options:
    """Per-decorated-function settings, and what was precomputed from its signature."""

    __slots__ = ("name", "span_type", "tags", "metadata", "capture_input", "capture_output", "project", "flush",
                 "names", "skip", "sig", "use_bind", "_tracer", "_tracer_of", "base_attrs")

    def __init__(self, func: Callable[..., Any], name: str | None, span_type: str, tags: Any, metadata: Any,
                 capture_input: bool, capture_output: bool, project: str | None, flush: bool) -> None:
        self.name = name or getattr(func, "__name__", "span")
        self.span_type = span_type
        self.tags = _merge_tags(None, tags) if tags else None
        self.metadata = dict(metadata) if metadata else None
        self.capture_input = capture_input
        self.capture_output = capture_output
        self.project = project
        self.flush = flush
        self._tracer: Any = None
        self._tracer_of: Any = None
        self.base_attrs: dict[str, Any] = {A.SPAN_TYPE: span_type}
        op = _OPERATIONS.get(span_type)
        if op:
            self.base_attrs[GEN_AI_OPERATION] = op
        if span_type == "tool":
            self.base_attrs["gen_ai.tool.name"] = self.name
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):
            sig = None
        self.sig = sig
        params = list(sig.parameters.values()) if sig else []
        kinds = inspect.Parameter
        self.use_bind = sig is None or any(p.kind == kinds.VAR_POSITIONAL for p in params)
        self.names = [p.name for p in params if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)]
        self.skip = params[0].name if params and params[0].name in ("self", "cls") else None

    def capture(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.use_bind:
            try:
                bound = self.sig.bind_partial(*args, **kwargs)  # type: ignore[union-attr]
                inp = dict(bound.arguments)
            except Exception:  # noqa: BLE001
                inp = {"args": list(args), **kwargs}
        else:
            inp = dict(zip(self.names, args, strict=False))
            if kwargs:
                inp.update(kwargs)
        if self.skip is not None:
            inp.pop(self.skip, None)
        return inp


def _start(opts: _Options, args: tuple[Any, ...], kwargs: dict[str, Any], parent_ctx: Any = None
           ) -> tuple[_SpanState, object]:
    transport = _transport_mod._transport or _transport_mod.get_transport()
    if parent_ctx is None:
        parent_ctx = otel_context.get_current()
    parent = parent_ctx.get(_STATE_KEY)
    if parent is not None:
        trace = parent.trace
        project = opts.project or trace.project
    else:
        project = opts.project or transport.project
        trace = _TraceState(project)
    if opts._tracer_of is transport and project == (opts.project or transport.project):
        tracer = opts._tracer
    else:
        tracer = transport.tracer(project)
        if project == (opts.project or transport.project):
            opts._tracer, opts._tracer_of = tracer, transport
    attrs = dict(opts.base_attrs)
    attrs[A.PROJECT] = project
    span = tracer.start_span(opts.name, context=parent_ctx, attributes=attrs)
    state = _SpanState(span, trace, opts.span_type, transport.max_field_chars)
    if trace.root is None:
        trace.root = state
    if opts.capture_input:
        state.set_json(A.INPUT, "input", opts.capture(args, kwargs))
    if opts.metadata is not None:
        state.metadata = dict(opts.metadata)
    if opts.tags is not None:
        state.tags = list(opts.tags)
    ctx = otel_context.set_value(_STATE_KEY, state, trace_api.set_span_in_context(span, parent_ctx))
    return state, otel_context.attach(ctx)


def _end(opts: _Options, state: _SpanState, token: object, output: Any, exc: BaseException | None) -> None:
    try:
        otel_context.detach(token)
    except Exception:  # noqa: BLE001
        pass
    try:
        state.finish(output, exc, opts.capture_output)
        if opts.flush and state.trace.root is state:
            _transport_mod.flush()
    except Exception:  # noqa: BLE001 - tracing must never break the traced program
        log.debug("orbitwatch: finishing span failed", exc_info=True)


def _safe_start(opts: _Options, args: tuple[Any, ...], kwargs: dict[str, Any]
                ) -> tuple[_SpanState | None, object, dict[str, Any]]:
    parent_ctx = None
    if kwargs and _HEADERS_KWARG in kwargs:
        kwargs = dict(kwargs)
        headers = kwargs.pop(_HEADERS_KWARG)
        parent_ctx = extract_trace_context(headers or {}).context
    try:
        state, token = _start(opts, args, kwargs, parent_ctx)
        return state, token, kwargs
    except Exception:  # noqa: BLE001
        _warn_once(f"start:{opts.name}", "could not start a span for %s; calling it untraced", opts.name)
        log.debug("orbitwatch: start failed", exc_info=True)
        return None, None, kwargs


def _aggregate(items: list[Any]) -> Any:
    if items and all(isinstance(i, str) for i in items):
        return "".join(items)
    return items


def _decorate(func: F, opts: _Options) -> F:
    if inspect.isasyncgenfunction(func):
        @functools.wraps(func)
        async def agen_wrapper(*args: Any, **kwargs: Any) -> Any:
            state, token, kwargs = _safe_start(opts, args, kwargs)
            if state is None:
                async for item in func(*args, **kwargs):
                    yield item
                return
            ctx = otel_context.get_current()
            otel_context.detach(token)
            items: list[Any] = []
            agen = func(*args, **kwargs)
            exc: BaseException | None = None
            try:
                while True:
                    tok = otel_context.attach(ctx)
                    try:
                        item = await agen.__anext__()
                    except StopAsyncIteration:
                        break
                    finally:
                        otel_context.detach(tok)
                    items.append(item)
                    yield item
            except GeneratorExit:
                await agen.aclose()
                raise
            except BaseException as e:
                exc = e
                raise
            finally:
                tok = otel_context.attach(ctx)
                _end(opts, state, tok, _aggregate(items), exc)
        return agen_wrapper  # type: ignore[return-value]

    if inspect.isgeneratorfunction(func):
        @functools.wraps(func)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
            state, token, kwargs = _safe_start(opts, args, kwargs)
            if state is None:
                return (yield from func(*args, **kwargs))
            ctx = otel_context.get_current()
            otel_context.detach(token)
            items: list[Any] = []
            gen = func(*args, **kwargs)
            exc: BaseException | None = None
            result: Any = None
            try:
                sent: Any = None
                while True:
                    tok = otel_context.attach(ctx)
                    try:
                        item = gen.send(sent)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    finally:
                        otel_context.detach(tok)
                    items.append(item)
                    sent = yield item
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as e:
                exc = e
                raise
            finally:
                tok = otel_context.attach(ctx)
                _end(opts, state, tok, _aggregate(items), exc)
            return result
        return gen_wrapper  # type: ignore[return-value]

    if inspect.iscoroutinefunction(func):
        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            state, token, kwargs = _safe_start(opts, args, kwargs)
            if state is None:
                return await func(*args, **kwargs)
            try:
                result = await func(*args, **kwargs)
            except BaseException as e:
                _end(opts, state, token, _MISSING, e)
                raise
            _end(opts, state, token, result, None)
            return result
        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        state, token, kwargs = _safe_start(opts, args, kwargs)
        if state is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as e:
            _end(opts, state, token, _MISSING, e)
            raise
        _end(opts, state, token, result, None)
        return result
    return wrapper  # type: ignore[return-value]


@overload
def track(func: F) -> F: ...
@overload
def track(func: str | None = None, *, name: str | None = None, type: str = "general", tags: Iterable[str] | None = None,
          metadata: Mapping[str, Any] | None = None, capture_input: bool = True, capture_output: bool = True,
          project_name: str | None = None, flush: bool = False) -> Callable[[F], F]: ...


def track(func: Any = None, *, name: str | None = None, type: str = "general",  # noqa: A002 - Opik's name
          tags: Iterable[str] | None = None, metadata: Mapping[str, Any] | None = None,
          capture_input: bool = True, capture_output: bool = True, project_name: str | None = None,
          flush: bool = False) -> Any:
    """Trace every call of the decorated function as a span (use bare or with options).

    ``type`` is one of llm, tool, retriever, agent, chain, guardrail, general; ``project_name``
    overrides the configured project for traces started here; ``flush=True`` flushes when the
    outermost tracked call returns (short scripts, serverless handlers). Callers may pass
    ``orbitwatch_trace_headers=<incoming headers>`` to continue a distributed trace.
    """
    _check_type(type)
    if isinstance(func, str):  # @track("name")
        name, func = func, None

    def decorate(f: F) -> F:
        if not callable(f):
            raise TypeError(f"@track decorates functions, got {f!r}")
        return _decorate(f, _Options(f, name, type, tags, metadata, capture_input, capture_output, project_name,
                                     flush))
    return decorate(func) if func is not None else decorate


# -- helpers used inside tracked code -------------------------------------------------------------

def _current_state() -> _SpanState | None:
    return otel_context.get_value(_STATE_KEY)  # type: ignore[return-value]


def update_current_span(name: str | None = None, input: Any = _MISSING, output: Any = _MISSING,  # noqa: A002
                        metadata: Mapping[str, Any] | None = None, tags: Iterable[str] | None = None,
                        usage: Mapping[str, Any] | None = None, model: str | None = None,
                        provider: str | None = None, total_cost: float | None = None,
                        feedback_scores: Iterable[Mapping[str, Any]] | None = None,
                        context: Iterable[str] | None = None, expected_output: Any = _MISSING,
                        type: str | None = None, thread_id: str | None = None,  # noqa: A002
                        session_id: str | None = None, user_id: str | None = None) -> None:
    """Change the innermost running tracked span (set when it ends).

    ``usage`` takes OpenAI-style ``prompt_tokens``/``completion_tokens`` or
    ``input_tokens``/``output_tokens``; ``feedback_scores`` is a list of
    ``{name, value, reason?, category?}``; ``context`` is the list of context strings an LLM
    span was given (used by the hallucination/context evaluators). An explicit ``output``
    replaces the captured return value. Outside a tracked function this warns once and does nothing.
    """
    state = _current_state()
    if state is None:
        _warn_once("no-span", "update_current_span() called outside a @track-ed function; ignored")
        return
    state.update(name=name, input=input, output=output, metadata=metadata, tags=tags, usage=usage, model=model,
                 provider=provider, total_cost=total_cost, feedback_scores=feedback_scores, context=context,
                 expected_output=expected_output, span_type=type, session_id=session_id or thread_id,
                 user_id=user_id)


def update_current_trace(name: str | None = None, input: Any = _MISSING, output: Any = _MISSING,  # noqa: A002
                         metadata: Mapping[str, Any] | None = None, tags: Iterable[str] | None = None,
                         thread_id: str | None = None, session_id: str | None = None, user_id: str | None = None,
                         feedback_scores: Iterable[Mapping[str, Any]] | None = None) -> None:
    """Change the current trace: its root tracked span, and session/user ids of all its spans.

    ``thread_id`` (Opik's name) and ``session_id`` are the same thing. Trace feedback scores
    are sent at once as ``feedback`` records with ``entity_type="trace"``.
    """
    state = _current_state()
    if state is None:
        _warn_once("no-trace", "update_current_trace() called outside a @track-ed function; ignored")
        return
    trace = state.trace
    root = trace.root or state
    root.update(name=name, input=input, output=output, metadata=metadata, tags=tags)
    sid = session_id or thread_id
    if sid:
        trace.session_id = str(sid)
    if user_id:
        trace.user_id = str(user_id)
    if feedback_scores:
        trace_id = format(root.span.get_span_context().trace_id, "032x")
        for s in feedback_scores:
            s = _check_score(s)
            log_feedback(trace_id=trace_id, name=s["name"], value=s["value"], reason=s["reason"],
                         category=s["category"], project_name=trace.project)


def get_current_trace_id() -> str | None:
    """Hex trace id of the current span (tracked or the application's), or None."""
    ctx = trace_api.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def get_current_span_id() -> str | None:
    """Hex span id of the current span (tracked or the application's), or None."""
    ctx = trace_api.get_current_span().get_span_context()
    return format(ctx.span_id, "016x") if ctx.is_valid else None


def inject_trace_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """Add W3C ``traceparent`` (and ``tracestate``) for the current span to ``headers``; returns it."""
    carrier: dict[str, str] = {} if headers is None else headers
    _PROPAGATOR.inject(carrier)
    return carrier


class TraceContext:
    """A remote parent from incoming headers; ``with`` it to make tracked calls its children."""

    def __init__(self, context: otel_context.Context, valid: bool) -> None:
        self.context = context
        self.valid = valid
        self._tokens: list[object] = []

    def __enter__(self) -> "TraceContext":
        self._tokens.append(otel_context.attach(self.context))
        return self

    def __exit__(self, *exc: Any) -> None:
        otel_context.detach(self._tokens.pop())

    @property
    def trace_id(self) -> str | None:
        ctx = trace_api.get_current_span(self.context).get_span_context()
        return format(ctx.trace_id, "032x") if ctx.is_valid else None


def extract_trace_context(headers: Mapping[str, str]) -> TraceContext:
    """Read W3C ``traceparent`` from incoming ``headers`` (any case); see :class:`TraceContext`.

    Missing or malformed headers give a context without a parent (tracked calls start new traces).
    """
    lowered = {str(k).lower(): v for k, v in dict(headers).items()}
    ctx = _PROPAGATOR.extract(lowered, context=otel_context.Context())
    valid = trace_api.get_current_span(ctx).get_span_context().is_valid
    return TraceContext(ctx, valid)


_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


def log_feedback(trace_id: str, span_id: str | None = None, *, name: str, value: float, reason: str = "",
                 category: str = "", annotator: str = "", project_name: str | None = None) -> None:
    """Record a score for a finished trace (or one of its spans), e.g. a user's thumbs-up.

    Sent as a span ``orbitwatch.kind="feedback"`` whose ``orbitwatch.payload`` is a JSON list of
    :class:`orbitwatch.schemas.records.EvalScore` (source ``sdk``); the sink writes ``eval_scores``.
    Raises ValueError for malformed ids or a non-numeric value.
    """
    from orbitwatch.schemas.records import EvalScore
    trace_id = str(trace_id).lower().replace("-", "")
    if not _HEX32.match(trace_id):
        raise ValueError(f"trace_id must be 32 hex characters, got {trace_id!r}")
    if span_id is not None:
        span_id = str(span_id).lower()
        if not _HEX16.match(span_id):
            raise ValueError(f"span_id must be 16 hex characters, got {span_id!r}")
    transport = _transport_mod.get_transport()
    project = project_name or transport.project
    score = EvalScore(project=project, entity_type="span" if span_id else "trace", entity_id=span_id or trace_id,
                      trace_id=trace_id, name=str(name), value=float(value), reason=reason, category=category,
                      annotator=annotator, source="sdk")
    payload = dumps([score.model_dump(mode="json")])
    span = transport.tracer(project).start_span(
        "feedback", context=otel_context.Context(),
        attributes={A.KIND: "feedback", A.PAYLOAD: payload, A.PROJECT: project})
    span.end()
