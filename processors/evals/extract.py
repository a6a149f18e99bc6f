"""From a normalised span row to what metrics read: question, answer, context, reference.

The sink stores ``input``/``output`` as JSON text in whatever shape the application used (a
string, ``{"question": ...}``, chat ``messages``, an OpenAI completion), so this module picks the
text a human would call "the question" and "the answer" out of the common shapes, and falls back
to all string leaves. Context comes from, in order:

* ``orbitwatch.context`` on the LLM span (JSON list given explicitly by the application),
* OpenInference ``retrieval.documents.N.document.content`` attributes (on any span),
* the output of retriever spans (our SDK's retriever spans return the documents: a JSON list of
  strings or of objects with ``content``/``text``/``page_content``).
"""
from __future__ import annotations

import json
import re
from typing import Any

from orbitwatch.schemas import attributes as A
from orbitwatch.schemas.records import SpanRow

_INPUT_KEYS = ("question", "query", "input", "prompt", "user_input", "user_message", "message", "text",
               "content", "messages", "args", "kwargs")
_OUTPUT_KEYS = ("answer", "output", "completion", "response", "result", "text", "content", "choices",
                "message", "messages", "generations")
_DOC_KEYS = ("content", "page_content", "text", "document", "chunk", "body")
_DOC_ATTR = re.compile(r"^retrieval\.documents\.(\d+)\.document\.content$")
MAX_CHARS = 64_000  # longer texts are cut: scoring cost must stay bounded per span


def _load(text: str) -> Any:
    if not text:
        return ""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _leaves(obj: Any, out: list[str], depth: int = 0) -> None:
    if depth > 6:
        return
    if isinstance(obj, str):
        if obj.strip():
            out.append(obj)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out.append(str(obj))
    elif isinstance(obj, dict):
        for v in obj.values():
            _leaves(v, out, depth + 1)
    elif isinstance(obj, list):
        for v in obj:
            _leaves(v, out, depth + 1)


def _messages_text(msgs: list[Any], roles: tuple[str, ...]) -> str | None:
    for m in reversed(msgs):
        if isinstance(m, dict) and m.get("role") in roles:
            content = m.get("content")
            if isinstance(content, list):  # [{"type": "text", "text": ...}]
                parts: list[str] = []
                _leaves([c.get("text", "") if isinstance(c, dict) else c for c in content], parts)
                return "\n".join(parts)
            return content if isinstance(content, str) else None
    return None


def _pick(obj: Any, keys: tuple[str, ...], roles: tuple[str, ...]) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, list) and obj and all(isinstance(m, dict) and "role" in m for m in obj):
        found = _messages_text(obj, roles)
        if found is not None:
            return found
    if isinstance(obj, dict):
        if "choices" in obj and isinstance(obj["choices"], list) and obj["choices"]:
            c = obj["choices"][0]
            if isinstance(c, dict):
                msg = c.get("message") or {}
                if isinstance(msg, dict) and isinstance(msg.get("content"), str):
                    return msg["content"]
                if isinstance(c.get("text"), str):
                    return c["text"]
        for k in keys:
            if k in obj and obj[k] not in (None, "", [], {}):
                return _pick(obj[k], keys, roles)
    parts: list[str] = []
    _leaves(obj, parts)
    return "\n".join(parts)


def input_text(span: SpanRow) -> str:
    return _pick(_load(span.input), _INPUT_KEYS, ("user",))[:MAX_CHARS]


def output_text(span: SpanRow) -> str:
    return _pick(_load(span.output), _OUTPUT_KEYS, ("assistant",))[:MAX_CHARS]


def _doc_text(doc: Any) -> str:
    if isinstance(doc, str):
        return doc
    if isinstance(doc, dict):
        for k in _DOC_KEYS:
            v = doc.get(k)
            if isinstance(v, str) and v.strip():
                return v
            if isinstance(v, dict):
                return _doc_text(v)
    parts: list[str] = []
    _leaves(doc, parts)
    return "\n".join(parts)


def _docs(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        for k in ("documents", "docs", "context", "contexts", "results", "chunks", "output"):
            if isinstance(obj.get(k), list):
                return _docs(obj[k])
        text = _doc_text(obj)
        return [text] if text else []
    if isinstance(obj, list):
        return [t for t in (_doc_text(d) for d in obj) if t.strip()]
    if isinstance(obj, str) and obj.strip():
        return [obj]
    return []


def attribute_documents(attrs: dict[str, str]) -> list[str]:
    """OpenInference ``retrieval.documents.N.document.content`` in N order."""
    found = []
    for k, v in attrs.items():
        m = _DOC_ATTR.match(k)
        if m and v.strip():
            found.append((int(m.group(1)), v))
    return [v for _, v in sorted(found)]


def explicit_context(span: SpanRow) -> list[str]:
    """Context the LLM span itself carries (``orbitwatch.context`` or OpenInference documents)."""
    docs: list[str] = []
    raw = span.span_attributes.get(A.CONTEXT)
    if raw:
        docs.extend(_docs(_load(raw)))
    docs.extend(attribute_documents(span.span_attributes))
    return [d[:MAX_CHARS] for d in docs]


def retriever_documents(span: SpanRow) -> list[str]:
    """The documents a retriever span returned (attributes first, else its output)."""
    docs = attribute_documents(span.span_attributes)
    if not docs:
        docs = _docs(_load(span.output))
    return [d[:MAX_CHARS] for d in docs]


def expected_output(span: SpanRow) -> str | None:
    raw = span.span_attributes.get(A.EXPECTED_OUTPUT)
    if not raw:
        return None
    return _pick(_load(raw), _OUTPUT_KEYS, ("assistant",))[:MAX_CHARS] or None
