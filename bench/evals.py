"""Local hallucination scorer: quality (AUROC on the labelled set) and throughput (spans/s, one core).

    python bench/evals.py [--seconds 10]

Throughput is measured on synthetic spans of ~1 KB answer + ~4 KB context (4 chunks), each span
distinct (no cache effects), scored with the full ``hallucination`` metric. The baseline measured
in the same run is a plain lexical-overlap scorer (answer token set vs context token set), the
cheapest thing one could call a hallucination check; the ratio tells how much the claim-level
analysis costs relative to it on this (noisy, shared) machine. Prints one line.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

from orbitwatch.processors.evals.metrics import EvalInput, create

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("river city bridge tower museum engineer company survey harbour railway canal telescope mission "
         "expedition island mountain desert glacier forest valley station library cathedral festival "
         "treaty council charter voyage crew summit lighthouse observatory").split()
NAMES = ("Amundsen Hillary Curie Fleming Gutenberg Darwin Newton Halley Roebling Lesseps Mendeleev Franklin "
         "Watson Crick Galileo Hubble Armstrong Collins Aldrin Eiffel").split()


def auroc(scored: list[tuple[float, int]]) -> float:
    pos = [s for s, y in scored if y]
    neg = [s for s, y in scored if not y]
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def sentence(rng: random.Random) -> str:
    w = rng.sample(WORDS, 6)
    return (f"The {w[0]} near {rng.choice(NAMES)} {w[1].title()} was completed in {rng.randint(1700, 2020)} "
            f"by the {w[2]} {w[3]} after {rng.randint(2, 90)} years of {w[4]} and {w[5]} work.")


def make_span(rng: random.Random) -> EvalInput:
    chunks = []
    for _ in range(4):
        text = ""
        while len(text) < 1000:
            text += sentence(rng) + " "
        chunks.append(text.strip())
    ctx_sents = [s for c in chunks for s in re.split(r"(?<=\.) ", c)]
    answer = ""
    while len(answer) < 1000:  # mostly grounded sentences, some invented
        answer += (rng.choice(ctx_sents) if rng.random() < 0.7 else sentence(rng)) + " "
    return EvalInput(input="What was completed and when?", output=answer.strip(), context=chunks)


def overlap_baseline(item: EvalInput) -> float:
    a = set(re.findall(r"\w+", item.output.lower()))
    c = set(re.findall(r"\w+", " ".join(item.context).lower()))
    return 1 - len(a & c) / max(1, len(a))


def processor_rate(spans: list[EvalInput], seconds: float) -> float:
    """LLM spans/s through EvalProcessor.handle (retriever + LLM span envelopes, default rule, scores
    written to an embedded ClickHouse), in batches of 200 LLM spans."""
    import tempfile
    from datetime import datetime, timezone

    from orbitwatch.processors.base import Message
    from orbitwatch.processors.evals import EvalConfig, EvalProcessor, RuleSet
    from orbitwatch.schemas import envelope
    from orbitwatch.schemas.records import SpanRow
    from orbitwatch.storage import Storage, migrate

    ts = datetime(2026, 1, 1, tzinfo=timezone.utc)
    msgs: list[Message] = []
    for i, s in enumerate(spans):
        tid = f"{i:032x}"
        for sid, kind, inp, out in ((f"r{i}", "retriever", s.input, s.context), (f"l{i}", "llm", s.input, s.output)):
            row = SpanRow(timestamp=ts, trace_id=tid, span_id=sid, span_name=kind, span_type=kind, project="bench",
                          input=json.dumps(inp), output=json.dumps(out))
            msgs.append(Message("orbitwatch.llm_spans", envelope.encode(row), tid.encode()))
    with tempfile.TemporaryDirectory() as d:
        st = Storage(f"chdb://{d}")
        migrate(st)
        proc = EvalProcessor(st, RuleSet.default(), EvalConfig(join_wait_s=60))
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            for k in range(0, len(msgs), 400):
                proc.handle(msgs[k:k + 400])
                n += 200
                if time.perf_counter() - t0 >= seconds:
                    break
        elapsed = time.perf_counter() - t0
        st.close()
    return n / elapsed


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8.0, help="time budget for each throughput run")
    args = ap.parse_args()
    rows = [json.loads(l) for l in (ROOT / "tests/data/hallucination/labelled.jsonl").open()]
    metric = create("hallucination")
    quality = auroc([(metric.score(EvalInput(r["input"], r["output"], r["context"])).value, r["label"]) for r in rows])
    base_quality = auroc([(overlap_baseline(EvalInput(r["input"], r["output"], r["context"])), r["label"])
                          for r in rows])
    rng = random.Random(7)
    spans = [make_span(rng) for _ in range(400)]
    sizes = (sum(len(s.output) for s in spans) / len(spans), sum(len(" ".join(s.context)) for s in spans) / len(spans))

    def rate(fn) -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            for s in spans:
                fn(s)
                n += 1
                if n % 50 == 0 and time.perf_counter() - t0 >= args.seconds:
                    break
        return n / (time.perf_counter() - t0)

    base_rate = rate(overlap_baseline)
    ours = rate(metric.score)
    proc_rate = processor_rate(spans, args.seconds)
    print(f"evals: hallucination AUROC {quality:.3f} on {len(rows)} labelled examples (target >= 0.85; "
          f"token-overlap baseline {base_quality:.3f}) | local scorer {ours:.0f} spans/s on one core with "
          f"{sizes[0] / 1024:.1f} KB answer + {sizes[1] / 1024:.1f} KB context (target >= 500; "
          f"{ours / base_rate:.3f}x the overlap baseline's {base_rate:.0f}/s) | eval processor, default rule "
          f"(4 metrics + join + ClickHouse insert): {proc_rate:.0f} LLM spans/s")
    return 0 if quality >= 0.85 else 1


if __name__ == "__main__":
    sys.exit(main())
