"""@track and friends, asserted on the spans an in-memory OpenTelemetry exporter receives."""
from __future__ import annotations

import asyncio
import dataclasses
import json

import numpy as np
import pydantic
import pytest
from opentelemetry import trace as trace_api
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import orbitwatch
from orbitwatch import (extract_trace_context, get_current_trace_id, inject_trace_headers, log_feedback, track,
                        update_current_span, update_current_trace)
from orbitwatch.schemas import attributes as A
from orbitwatch.serialization import TRUNCATION_MARKER


@pytest.fixture
def mem(unique):
    exporter = InMemorySpanExporter()
    orbitwatch.configure(exporter=exporter, project=f"proj-{unique}", endpoint="http://127.0.0.1:1")

    def spans():
        assert orbitwatch.flush(10)
        return {s.name: s for s in exporter.get_finished_spans()}
    spans.exporter = exporter
    yield spans


def test_nested_calls_make_one_trace_with_parent_child_spans(mem):
    @track
    def llm_chain(user_question):
        context = get_context(user_question)
        return call_llm(user_question, context)

    @track(type="retriever")
    def get_context(user_question):
        return ["The dog chased the cat.", "The cat was called Luky."]

    @track(type="llm", tags=["prod"], metadata={"temperature": 0})
    def call_llm(user_question, context):
        update_current_span(model="gpt-4o-mini", provider="openai", total_cost=0.002,
                            usage={"prompt_tokens": 12, "completion_tokens": 7}, context=context)
        return "The dog chased the cat Luky."

    assert llm_chain("What did the dog do?") == "The dog chased the cat Luky."
    spans = mem()
    root, ctx, llm = spans["llm_chain"], spans["get_context"], spans["call_llm"]
    assert root.parent is None
    assert {ctx.context.trace_id, llm.context.trace_id} == {root.context.trace_id}
    assert ctx.parent.span_id == root.context.span_id and llm.parent.span_id == root.context.span_id
    assert json.loads(root.attributes[A.INPUT]) == {"user_question": "What did the dog do?"}
    assert json.loads(root.attributes[A.OUTPUT]) == "The dog chased the cat Luky."
    assert json.loads(ctx.attributes[A.OUTPUT]) == ["The dog chased the cat.", "The cat was called Luky."]
    assert ctx.attributes[A.SPAN_TYPE] == "retriever"
    a = llm.attributes
    assert a[A.SPAN_TYPE] == "llm" and a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.usage.input_tokens"] == 12 and a["gen_ai.usage.output_tokens"] == 7
    assert a[A.COST] == pytest.approx(0.002)
    assert json.loads(a[A.TAGS]) == ["prod"] and json.loads(a[A.METADATA]) == {"temperature": 0}
    assert json.loads(a[A.CONTEXT]) == ["The dog chased the cat.", "The cat was called Luky."]
    assert a[A.PROJECT].startswith("proj-") and llm.resource.attributes[A.PROJECT] == a[A.PROJECT]
    assert llm.resource.attributes["service.name"] == a[A.PROJECT]


def test_exception_marks_span_error_and_is_reraised_unchanged(mem):
    class Boom(Exception):
        pass
    err = Boom("no tokens left")

    @track
    def outer():
        return inner()

    @track(type="tool")
    def inner():
        raise err

    with pytest.raises(Boom) as info:
        outer()
    assert info.value is err
    spans = mem()
    for name in ("outer", "inner"):
        s = spans[name]
        assert s.status.status_code is StatusCode.ERROR
        assert "Boom: no tokens left" in s.status.description
        exc_events = [e for e in s.events if e.name == "exception"]
        assert exc_events and exc_events[0].attributes["exception.type"].endswith("Boom")
        assert A.OUTPUT not in s.attributes


def test_truncation_marks_field_and_keeps_a_prefix(unique):
    exporter = InMemorySpanExporter()
    orbitwatch.configure(exporter=exporter, project=f"p-{unique}", max_field_chars=100)

    @track
    def echo(text):
        return text * 2

    echo("x" * 500)
    orbitwatch.flush(10)
    (span,) = exporter.get_finished_spans()
    assert span.attributes[A.TRUNCATED] == "input,output"
    out = span.attributes[A.OUTPUT]
    assert out.startswith('"' + "x" * 99) and TRUNCATION_MARKER in out and out.endswith("1002 chars]")
    assert len(out) < 160


def test_generator_output_is_aggregated_and_children_nest(mem):
    @track(type="llm")
    def stream(n):
        for i in range(n):
            yield f"tok{i} "
            helper(i)

    @track
    def helper(i):
        return i

    assert list(stream(3)) == ["tok0 ", "tok1 ", "tok2 "]
    spans = mem.exporter.get_finished_spans() if mem() else []
    gen = [s for s in spans if s.name == "stream"][0]
    helpers = [s for s in spans if s.name == "helper"]
    assert json.loads(gen.attributes[A.OUTPUT]) == "tok0 tok1 tok2 "
    assert len(helpers) == 3 and all(h.parent.span_id == gen.context.span_id for h in helpers)


def test_generator_closed_early_ends_span_with_partial_output(mem):
    @track
    def numbers():
        i = 0
        while True:
            yield i
            i += 1

    g = numbers()
    assert [next(g), next(g)] == [0, 1]
    g.close()
    assert json.loads(mem()["numbers"].attributes[A.OUTPUT]) == [0, 1]


def test_generator_error_is_recorded(mem):
    @track
    def bad():
        yield 1
        raise ValueError("mid-stream")

    with pytest.raises(ValueError, match="mid-stream"):
        list(bad())
    s = mem()["bad"]
    assert s.status.status_code is StatusCode.ERROR and json.loads(s.attributes[A.OUTPUT]) == [1]


async def test_async_functions_and_async_generators_nest(mem):
    @track(type="agent")
    async def agent(q):
        docs = await retrieve(q)
        chunks = [c async for c in answer(docs)]
        return "".join(chunks)

    @track(type="retriever")
    async def retrieve(q):
        await asyncio.sleep(0)
        return [f"doc about {q}"]

    @track(type="llm")
    async def answer(docs):
        for word in ("a", "b"):
            await asyncio.sleep(0)
            yield word

    # two concurrent traces must not mix their spans
    r1, r2 = await asyncio.gather(agent("x"), agent("y"))
    assert r1 == r2 == "ab"
    spans = mem.exporter.get_finished_spans() if mem() else []
    roots = [s for s in spans if s.name == "agent"]
    assert len(roots) == 2 and len({r.context.trace_id for r in roots}) == 2
    for root in roots:
        children = [s for s in spans if s.parent and s.parent.span_id == root.context.span_id]
        assert sorted(c.name for c in children) == ["answer", "retrieve"]
        assert all(c.context.trace_id == root.context.trace_id for c in children)
    ans = [s for s in spans if s.name == "answer"][0]
    assert json.loads(ans.attributes[A.OUTPUT]) == "ab" and ans.attributes["gen_ai.operation.name"] == "chat"
    assert roots[0].attributes["gen_ai.operation.name"] == "invoke_agent"


async def test_async_exception(mem):
    @track
    async def fails():
        raise KeyError("k")

    with pytest.raises(KeyError):
        await fails()
    assert mem()["fails"].status.status_code is StatusCode.ERROR


def test_inputs_of_all_kinds_are_captured_as_json(mem):
    @dataclasses.dataclass
    class Doc:
        id: int
        text: str

    class Query(pydantic.BaseModel):
        q: str
        k: int = 3

    class Opaque:
        def __repr__(self):
            return "<Opaque>"

    class Svc:
        @track(name="svc.search", capture_output=False)
        def search(self, query, *extra, doc=None, **opts):
            return object()

    Svc().search(Query(q="hi"), np.float32(1.5), np.arange(3), doc=Doc(1, "t"), obj=Opaque(), s={2, 1})
    s = mem()["svc.search"]
    inp = json.loads(s.attributes[A.INPUT])
    assert inp == {"query": {"q": "hi", "k": 3}, "extra": [1.5, [0, 1, 2]], "doc": {"id": 1, "text": "t"},
                   "opts": {"obj": "<Opaque>", "s": [1, 2]}}
    assert A.OUTPUT not in s.attributes


def test_update_current_span_and_trace(mem):
    @track(name="handle")
    def handle(q):
        update_current_trace(thread_id="thread-1", user_id="u-7", tags=["beta"], metadata={"ab": "B"},
                             name="chat turn")
        return step(q)

    @track
    def step(q):
        update_current_span(output={"forced": True}, feedback_scores=[{"name": "helpful", "value": 1,
                                                                       "reason": "ok"}], expected_output="x")
        return "ignored"

    @track
    def other_user():
        update_current_span(user_id="u-8")

    handle("q")
    other_user()
    spans = mem()
    assert spans["other_user"].attributes[A.USER_ID] == "u-8" and A.SESSION_ID not in spans["other_user"].attributes
    root, child = spans["chat turn"], spans["step"]
    assert root.attributes[A.SESSION_ID] == "thread-1" and child.attributes[A.SESSION_ID] == "thread-1"
    assert root.attributes[A.USER_ID] == "u-7" and child.attributes[A.USER_ID] == "u-7"
    assert json.loads(root.attributes[A.TAGS]) == ["beta"]
    assert json.loads(child.attributes[A.OUTPUT]) == {"forced": True}
    assert json.loads(child.attributes[A.FEEDBACK_SCORES]) == [
        {"name": "helpful", "value": 1.0, "reason": "ok", "category": ""}]
    assert json.loads(child.attributes[A.EXPECTED_OUTPUT]) == "x"


def test_update_outside_a_span_warns_and_bad_values_raise(mem, caplog):
    update_current_span(name="nothing")
    assert "outside a @track" in caplog.text

    @track
    def f():
        update_current_span(usage={"tokens": 3})

    with pytest.raises(ValueError, match="prompt_tokens"):
        f()
    with pytest.raises(ValueError, match="type must be one of"):
        track(type="bogus")


def test_trace_feedback_and_log_feedback_emit_eval_scores(mem):
    @track
    def answer():
        update_current_trace(feedback_scores=[{"name": "thumbs", "value": 1, "category": "user"}])
        return get_current_trace_id()

    trace_id = answer()
    log_feedback(trace_id=trace_id, span_id="00f067aa0ba902b7", name="relevance", value=0.25, reason="meh",
                 annotator="alice")
    mem()
    feedback = [s for s in mem.exporter.get_finished_spans() if s.attributes.get(A.KIND) == "feedback"]
    payloads = [json.loads(s.attributes[A.PAYLOAD])[0] for s in feedback]
    by_name = {p["name"]: p for p in payloads}
    assert by_name["thumbs"]["entity_type"] == "trace" and by_name["thumbs"]["entity_id"] == trace_id
    assert by_name["thumbs"]["category"] == "user" and by_name["thumbs"]["source"] == "sdk"
    rel = by_name["relevance"]
    assert rel["entity_type"] == "span" and rel["entity_id"] == "00f067aa0ba902b7" and rel["trace_id"] == trace_id
    assert rel["value"] == 0.25 and rel["annotator"] == "alice" and rel["reason"] == "meh"
    with pytest.raises(ValueError, match="32 hex"):
        log_feedback(trace_id="nope", name="x", value=1)


def test_w3c_headers_continue_a_trace_across_services(mem):
    @track
    def client_side():
        return inject_trace_headers({"x-other": "1"})

    @track
    def server_side():
        return get_current_trace_id()

    headers = client_side()
    assert headers["traceparent"].startswith("00-") and headers["x-other"] == "1"
    with extract_trace_context({"TraceParent": headers["traceparent"]}) as ctx:
        assert ctx.valid
        server_trace = server_side()
    via_kwarg = server_side(orbitwatch_trace_headers=headers)
    client = mem()["client_side"]
    assert server_trace == via_kwarg == format(client.context.trace_id, "032x")
    servers = [s for s in mem.exporter.get_finished_spans() if s.name == "server_side"]
    assert all(s.parent.span_id == client.context.span_id for s in servers)
    assert not extract_trace_context({"traceparent": "garbage"}).valid


def test_application_tracer_provider_is_not_clobbered_and_traces_join(mem):
    app_exporter = InMemorySpanExporter()
    app_provider = TracerProvider()
    app_provider.add_span_processor(SimpleSpanProcessor(app_exporter))
    app_tracer = app_provider.get_tracer("app")
    global_before = trace_api.get_tracer_provider()

    @track
    def tracked():
        with app_tracer.start_as_current_span("http.client"):
            pass
        return 1

    with app_tracer.start_as_current_span("request") as req:
        tracked()
    assert trace_api.get_tracer_provider() is global_before
    ours = mem()["tracked"]
    app_spans = {s.name: s for s in app_exporter.get_finished_spans()}
    assert set(app_spans) == {"request", "http.client"}  # the app's backend gets only its spans
    assert ours.context.trace_id == req.get_span_context().trace_id
    assert ours.parent.span_id == req.get_span_context().span_id
    assert app_spans["http.client"].parent.span_id == ours.context.span_id


def test_decorator_forms_and_metadata_preserved(mem):
    @track("named")
    def a(x):
        """doc"""
        return x

    @track(project_name="other-project")
    def b():
        return a(1)

    assert a.__name__ == "a" and a.__doc__ == "doc"
    b()
    spans = mem()
    assert spans["b"].attributes[A.PROJECT] == "other-project"
    assert spans["named"].attributes[A.PROJECT] == "other-project"  # nested spans stay in the trace's project
    assert spans["b"].resource.attributes["service.name"] == "other-project"


def test_opik_context_module_alias(mem):
    from orbitwatch import opik_context

    @track
    def f():
        opik_context.update_current_span(metadata={"via": "opik_context"})
        return opik_context.get_current_trace_id()

    trace_id = f()
    s = mem()["f"]
    assert json.loads(s.attributes[A.METADATA]) == {"via": "opik_context"}
    assert trace_id == format(s.context.trace_id, "032x")


async def test_async_generator_closed_early_ends_span(mem):
    @track
    async def tokens():
        for t in ("a", "b", "c"):
            yield t

    agen = tokens()
    assert await agen.__anext__() == "a"
    await agen.aclose()
    assert json.loads(mem()["tokens"].attributes[A.OUTPUT]) == "a"
