"""One model, many dialects: the LLM columns of ``spans`` from whatever instrumentation made the span.

Dialects read (first one that has a value wins, in this order):

1. our SDK's ``orbitwatch.*`` attributes (the caller said it explicitly),
2. OpenInference (``openinference.span.kind``, ``input.value``, ``llm.model_name``,
   ``llm.token_count.*``, ``llm.input_messages.N.message.*``, ``retrieval.documents.N.document.*``),
3. OpenTelemetry GenAI semantic conventions, current (``gen_ai.provider.name``,
   ``gen_ai.input.messages``, ``gen_ai.usage.input_tokens`` ...) and deprecated forms still emitted
   by many libraries (``gen_ai.system``, ``gen_ai.prompt``/``gen_ai.completion`` as attributes,
   as indexed ``gen_ai.prompt.N.content`` attributes, or as ``gen_ai.content.prompt`` events,
   ``gen_ai.usage.prompt_tokens``).

The hot path is a plain span with none of these: a handful of dict lookups decide that and
:func:`normalise` returns ``None`` (all LLM columns default). Attribute values arrive as strings
(arrays/maps JSON-encoded by the decoder), exactly as they are stored in ``span_attributes``.
"""
from __future__ import annotations

import json
import math
from typing import NamedTuple

from orbitwatch.processors.sink.prices import PriceTable


class LLMFields(NamedTuple):
    span_type: str
    model: str
    provider: str
    input: str
    output: str
    input_tokens: int
    output_tokens: int
    cost: float
    session_id: str
    user_id: str
    tags: list[str]
    priced: bool  # False when tokens were given but neither a cost nor a price was known


# OpenInference span kinds -> our span types
_OI_KIND = {"LLM": "llm", "EMBEDDING": "llm", "CHAIN": "chain", "TOOL": "tool", "RETRIEVER": "retriever",
            "RERANKER": "retriever", "AGENT": "agent", "GUARDRAIL": "guardrail", "EVALUATOR": "general",
            "PROMPT": "chain"}
# gen_ai.operation.name -> span type
_GENAI_OP = {"chat": "llm", "text_completion": "llm", "generate_content": "llm", "embeddings": "llm",
             "completion": "llm", "execute_tool": "tool", "invoke_agent": "agent", "create_agent": "agent"}
_SPAN_TYPES = frozenset(("llm", "tool", "retriever", "agent", "chain", "guardrail", "general"))
# Presence of any of these means "look closer"; everything else is a plain span.
_MARKERS = ("orbitwatch.span.type", "openinference.span.kind", "gen_ai.operation.name", "gen_ai.system",
            "gen_ai.provider.name", "gen_ai.request.model", "llm.model_name", "input.value",
            "orbitwatch.input", "orbitwatch.output", "orbitwatch.context")

_MARKER_SET = frozenset(_MARKERS)
# any key that can change an LLM column; a span with none of them gets the defaults
_RELEVANT = _MARKER_SET | {"orbitwatch.session.id", "session.id", "gen_ai.conversation.id", "orbitwatch.user.id",
                           "user.id", "enduser.id", "orbitwatch.tags", "tag.tags", "orbitwatch.cost"}


def _int(v: str | None) -> int:
    if not v:
        return 0
    try:
        return max(0, int(float(v)))
    except ValueError:
        return 0


def _indexed_messages(attrs: dict[str, str], prefix: str, role_key: str, content_key: str) -> str:
    """``prefix.0.<role_key>``/``prefix.0.<content_key>`` ... → JSON list of {role, content}."""
    msgs: list[dict[str, str]] = []
    i = 0
    while True:
        base = f"{prefix}.{i}."
        content = attrs.get(base + content_key)
        role = attrs.get(base + role_key)
        if content is None and role is None:
            # tolerate a gap of one (some libraries start at 1)
            if i == 0:
                i = 1
                continue
            break
        msg = {"role": role or "", "content": content or ""}
        tool = attrs.get(base + "message.tool_calls.0.tool_call.function.name")
        if tool:
            msg["tool_call"] = tool
        msgs.append(msg)
        i += 1
    return json.dumps(msgs, ensure_ascii=False) if msgs else ""


def _documents(attrs: dict[str, str]) -> str:
    docs: list[dict[str, object]] = []
    i = 0
    while True:
        base = f"retrieval.documents.{i}.document."
        content = attrs.get(base + "content")
        if content is None and attrs.get(base + "id") is None:
            break
        doc: dict[str, object] = {"content": content or ""}
        if (did := attrs.get(base + "id")) is not None:
            doc["id"] = did
        if (score := attrs.get(base + "score")) is not None:
            try:
                doc["score"] = float(score)
            except ValueError:
                doc["score"] = score
        docs.append(doc)
        i += 1
    return json.dumps(docs, ensure_ascii=False) if docs else ""


def _json_list(v: str | None) -> list[str]:
    if not v:
        return []
    try:
        obj = json.loads(v)
    except ValueError:
        return [t.strip() for t in v.split(",") if t.strip()]
    if isinstance(obj, list):
        return [_clean(str(x)) for x in obj]
    return [_clean(str(obj))]


def _clean(s: str) -> str:
    """JSON escapes can smuggle lone surrogates ("\\ud800") that no UTF-8 encoder accepts."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "replace").decode("utf-8")


def _event_content(events: list[tuple[str, dict[str, str]]] | None, names: tuple[str, ...], keys: tuple[str, ...]
                   ) -> str:
    """Deprecated GenAI event forms: gen_ai.content.prompt{gen_ai.prompt=...}, gen_ai.user.message{content=...}."""
    if not events:
        return ""
    parts: list[dict[str, str]] = []
    single = ""
    for name, ea in events:
        if name not in names:
            continue
        for k in keys:
            v = ea.get(k)
            if v is not None:
                if name.startswith("gen_ai.content."):
                    single = v
                else:
                    role = ea.get("role") or name.removeprefix("gen_ai.").removesuffix(".message")
                    parts.append({"role": role, "content": v})
                break
    if single:
        return single
    return json.dumps(parts, ensure_ascii=False) if parts else ""


_PROMPT_EVENTS = ("gen_ai.content.prompt", "gen_ai.system.message", "gen_ai.user.message",
                  "gen_ai.assistant.message", "gen_ai.tool.message")
_COMPLETION_EVENTS = ("gen_ai.content.completion", "gen_ai.choice")


def normalise(attrs: dict[str, str], prices: PriceTable,
              events: list[tuple[str, dict[str, str]]] | None = None) -> LLMFields | None:
    """The LLM columns of one span, or ``None`` for a span with no LLM/session semantics at all."""
    if _RELEVANT.isdisjoint(attrs):  # the hot path: one C-level pass over the keys
        return None
    get = attrs.get
    session = get("orbitwatch.session.id") or get("session.id") or get("gen_ai.conversation.id") or ""
    user = get("orbitwatch.user.id") or get("user.id") or get("enduser.id") or ""
    tags_raw = get("orbitwatch.tags") or get("tag.tags")
    if _MARKER_SET.isdisjoint(attrs):
        if not (session or user or tags_raw or get("orbitwatch.cost")):
            return None
        return LLMFields("general", "", "", "", "", 0, 0, _float(get("orbitwatch.cost")), session, user,
                         _json_list(tags_raw), True)

    # -- span type -------------------------------------------------------------------------
    span_type = get("orbitwatch.span.type") or ""
    if span_type not in _SPAN_TYPES:
        span_type = ""
    oi_kind = get("openinference.span.kind")
    if not span_type and oi_kind:
        span_type = _OI_KIND.get(oi_kind.upper(), "general")
    op = get("gen_ai.operation.name")
    if not span_type and op:
        span_type = _GENAI_OP.get(op, "llm")
    genai = bool(op or "gen_ai.system" in attrs or "gen_ai.provider.name" in attrs or "gen_ai.request.model" in attrs)
    if not span_type:
        span_type = "llm" if (genai or "llm.model_name" in attrs) else "general"

    # -- model / provider ------------------------------------------------------------------
    model = get("gen_ai.request.model") or get("llm.model_name") or get("gen_ai.response.model") or ""
    provider = (get("gen_ai.provider.name") or get("gen_ai.system") or get("llm.provider")
                or get("llm.system") or "")

    # -- input / output --------------------------------------------------------------------
    inp = get("orbitwatch.input") or get("input.value") or ""
    out = get("orbitwatch.output") or get("output.value") or ""
    if not inp and oi_kind is not None:
        inp = _indexed_messages(attrs, "llm.input_messages", "message.role", "message.content")
    if not out and oi_kind is not None:
        out = _indexed_messages(attrs, "llm.output_messages", "message.role", "message.content")
        if not out and span_type == "retriever":
            out = _documents(attrs)
    if genai or not (inp and out):
        if not inp:
            inp = (get("gen_ai.input.messages") or get("gen_ai.prompt")
                   or _indexed_messages(attrs, "gen_ai.prompt", "role", "content")
                   or _event_content(events, _PROMPT_EVENTS, ("gen_ai.prompt", "content")))
            if inp and (sysi := get("gen_ai.system_instructions")):
                inp = json.dumps({"system_instructions": _maybe_json(sysi), "messages": _maybe_json(inp)},
                                 ensure_ascii=False)
        if not out:
            out = (get("gen_ai.output.messages") or get("gen_ai.completion")
                   or _indexed_messages(attrs, "gen_ai.completion", "role", "content")
                   or _event_content(events, _COMPLETION_EVENTS, ("gen_ai.completion", "message", "content")))

    # -- tokens and cost -------------------------------------------------------------------
    tin = _int(get("gen_ai.usage.input_tokens") or get("gen_ai.usage.prompt_tokens")
               or get("llm.token_count.prompt"))
    tout = _int(get("gen_ai.usage.output_tokens") or get("gen_ai.usage.completion_tokens")
                or get("llm.token_count.completion"))
    priced = True
    given = get("orbitwatch.cost") or get("llm.cost.total")
    if given is not None:
        cost = _float(given)
    elif tin or tout:
        c = prices.cost(model, tin, tout)
        if c is None and (resp := get("gen_ai.response.model")):
            c = prices.cost(resp, tin, tout)
        priced = c is not None
        cost = c or 0.0
    else:
        cost = 0.0
    return LLMFields(span_type, model, provider, inp, out, tin, tout, cost, session, user,
                     _json_list(tags_raw), priced)


def _float(v: str | None) -> float:
    if not v:
        return 0.0
    try:
        f = float(v)
    except ValueError:
        return 0.0
    return f if math.isfinite(f) else 0.0


def _maybe_json(v: str) -> object:
    try:
        return json.loads(v)
    except ValueError:
        return v
