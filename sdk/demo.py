"""The demo telemetry behind ``orbitwatch demo`` and ``orbitwatch up --demo``, sent with our own SDK.

Three things a newcomer recognises, each exercising one part of the pipeline:

1. **Training runs** (:class:`orbitwatch.Experiment`): two runs of a small classifier with different
   learning rates — parameters and per-step/per-epoch loss and accuracy curves — to list, show
   and compare (``experiments`` tables).
2. **A RAG app** (``@track``): a retriever span and an LLM span (model, provider, token usage) per
   question, under a chain span. Some answers are grounded in the retrieved passages; others
   contain invented numbers and names, which the online evaluator should score as hallucinated.
   One request fails in a guardrail, so error traces exist too (``spans`` and ``eval_scores``).
3. **A production model** (:class:`orbitwatch.MonitoredModel`): a reference distribution, then
   predictions with event times spread over the past hour and a shift of ``monthly_charges``
   injected halfway (+1.5 σ), with late labels for some (``predictions``, ``drift_results``,
   ``alerts``). ``orbitwatch up`` configures 10-minute windows for this model, so the windows of the
   past hour are closed at once and their results are final.

No network other than the OTLP endpoint; no randomness that changes between runs (fixed seeds).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

PROJECT = "orbitwatch-demo"
MODEL = "churn-predictor"
MODEL_VERSION = "v1"
DRIFTED_FEATURE = "monthly_charges"

# A tiny knowledge base (facts written for this demo).
DOCS = {
    "eiffel": "The Eiffel Tower in Paris was completed in 1889 for the World's Fair. It is 330 metres tall "
              "and was designed by the engineering company of Gustave Eiffel.",
    "eiffel-paint": "The Eiffel Tower is repainted every seven years. About 60 tonnes of paint are used "
                    "for each repainting.",
    "moon": "Apollo 11 landed on the Moon on 20 July 1969. Neil Armstrong and Buzz Aldrin walked on the "
            "surface while Michael Collins stayed in lunar orbit.",
    "moon-samples": "The Apollo 11 crew brought back 21.5 kilograms of lunar rock and soil samples.",
    "amazon": "The Amazon River flows through Peru, Colombia and Brazil into the Atlantic Ocean. It "
              "carries more water than any other river in the world.",
    "everest": "Mount Everest is 8,849 metres high. It was first climbed in 1953 by Tenzing Norgay and "
               "Edmund Hillary.",
    "python": "Python was created by Guido van Rossum and first released in 1991. Python 3.0 was "
              "released in December 2008.",
    "penicillin": "Alexander Fleming discovered penicillin in 1928 at St Mary's Hospital in London.",
}


@dataclass
class Question:
    text: str
    docs: list[str]
    grounded: str
    hallucinated: str


QUESTIONS = [
    Question("When was the Eiffel Tower completed and how tall is it?", ["eiffel", "eiffel-paint"],
             "The Eiffel Tower was completed in 1889 and is 330 metres tall.",
             "The Eiffel Tower was completed in 1925 by Napoleon Bonaparte and is 512 metres tall."),
    Question("How often is the Eiffel Tower repainted?", ["eiffel-paint", "eiffel"],
             "It is repainted every seven years, using about 60 tonnes of paint.",
             "It is repainted every two years with 900 tonnes of gold paint imported from Tokyo."),
    Question("Who walked on the Moon during Apollo 11?", ["moon", "moon-samples"],
             "Neil Armstrong and Buzz Aldrin walked on the surface while Michael Collins stayed in lunar orbit.",
             "Yuri Gagarin and John Glenn walked on the Moon in 1972 while Elon Musk stayed in orbit."),
    Question("How much lunar material did Apollo 11 bring back?", ["moon-samples", "moon"],
             "The crew brought back 21.5 kilograms of lunar rock and soil samples.",
             "The crew brought back 4,300 kilograms of lunar diamonds and water ice from Mars."),
    Question("Which countries does the Amazon River flow through?", ["amazon"],
             "The Amazon flows through Peru, Colombia and Brazil into the Atlantic Ocean.",
             "The Amazon flows through Egypt, Sudan and Kenya into the Indian Ocean."),
    Question("How high is Mount Everest and who first climbed it?", ["everest"],
             "Mount Everest is 8,849 metres high and was first climbed in 1953 by Tenzing Norgay and Edmund Hillary.",
             "Mount Everest is 12,400 metres high and was first climbed in 1890 by Charles Darwin."),
    Question("Who created Python and when was it first released?", ["python"],
             "Python was created by Guido van Rossum and first released in 1991.",
             "Python was created by Bill Gates at Microsoft and first released in 2005."),
    Question("Who discovered penicillin?", ["penicillin"],
             "Alexander Fleming discovered penicillin in 1928 at St Mary's Hospital in London.",
             "Marie Curie discovered penicillin in 1850 at a laboratory in Berlin."),
]


@dataclass
class DemoResult:
    """What the demo sent, so the summary can say what to expect."""

    experiment_ids: list[str] = field(default_factory=list)
    metric_points: int = 0
    trace_ids: list[str] = field(default_factory=list)
    hallucinated_trace_ids: list[str] = field(default_factory=list)
    grounded_trace_ids: list[str] = field(default_factory=list)
    error_trace_ids: list[str] = field(default_factory=list)
    spans: int = 0
    predictions: int = 0
    labels: int = 0
    reference_features: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# 1. training runs
# ---------------------------------------------------------------------------------------------
def run_training(result: DemoResult, seed: int = 7, epochs: int = 12, steps_per_epoch: int = 10) -> None:
    from orbitwatch import Experiment

    for run, lr in enumerate((0.01, 0.003)):
        rng = random.Random(seed + run)
        exp = Experiment(project_name=PROJECT, experiment_name=f"churn-mlp-lr{lr}", tags=["demo", "mlp"])
        exp.log_parameters({"learning_rate": lr, "batch_size": 64, "epochs": epochs, "optimizer": "adam",
                            "model": {"hidden_units": 128, "layers": 2, "dropout": 0.1}})
        speed = 0.35 if lr == 0.01 else 0.2
        step = 0
        for epoch in range(epochs):
            for _ in range(steps_per_epoch):
                loss = 0.25 + 0.9 * math.exp(-speed * step / steps_per_epoch) + rng.gauss(0, 0.02)
                exp.log_metric("train_loss", round(loss, 5), step=step, epoch=epoch)
                step += 1
                result.metric_points += 1
            val_loss = 0.3 + 0.85 * math.exp(-speed * (epoch + 1)) + rng.gauss(0, 0.01)
            acc = 0.93 - 0.4 * math.exp(-speed * (epoch + 1)) + rng.gauss(0, 0.005)
            exp.log_metrics({"val_loss": round(val_loss, 5), "val_accuracy": round(acc, 5)}, step=step, epoch=epoch)
            result.metric_points += 2
        exp.log_other("dataset", "telco-churn-synthetic")
        exp.end()
        result.experiment_ids.append(exp.get_key())


# ---------------------------------------------------------------------------------------------
# 2. a RAG app
# ---------------------------------------------------------------------------------------------
class GuardrailRejected(RuntimeError):
    pass


def run_rag(result: DemoResult) -> None:
    from orbitwatch import get_current_trace_id, track, update_current_span, update_current_trace

    @track(type="retriever", name="retrieve")
    def retrieve(question: str, doc_ids: list[str]) -> list[str]:
        time.sleep(0.002)
        return [DOCS[d] for d in doc_ids]

    @track(type="llm", name="generate")
    def generate(question: str, context: list[str], answer: str) -> str:
        prompt_tokens = 40 + sum(len(c.split()) for c in context) * 4 // 3
        update_current_span(model="gpt-4o-mini", provider="openai", context=context,
                            usage={"prompt_tokens": prompt_tokens, "completion_tokens": len(answer.split()) * 4 // 3})
        time.sleep(0.004)
        return answer

    @track(type="guardrail", name="pii_check")
    def pii_check(question: str) -> None:
        if "@" in question:
            raise GuardrailRejected("question contains an e-mail address")

    @track(type="chain", name="rag_answer")
    def answer(q: Question, hallucinate: bool, user: str) -> str:
        update_current_trace(session_id=f"session-{user}", user_id=user, tags=["demo"])
        tid = get_current_trace_id()
        result.trace_ids.append(tid)
        (result.hallucinated_trace_ids if hallucinate else result.grounded_trace_ids).append(tid)
        try:
            pii_check(q.text)
        except GuardrailRejected:
            result.error_trace_ids.append(tid)
            return "Sorry, I cannot answer questions containing personal data."
        context = retrieve(q.text, q.docs)
        return generate(q.text, context, q.hallucinated if hallucinate else q.grounded)

    for i, q in enumerate(QUESTIONS):
        # Most answers are hallucinated in this demo so the hallucination-rate alert has something to say.
        answer(q, hallucinate=i % 4 != 0, user=f"user-{i % 3}")
        result.spans += 4
    blocked = Question("My e-mail is ada@example.com, what is the tallest mountain?", ["everest"], "", "")
    answer(blocked, hallucinate=False, user="user-9")
    result.grounded_trace_ids.pop()
    result.spans += 2


# ---------------------------------------------------------------------------------------------
# 3. a production model with drift injected halfway
# ---------------------------------------------------------------------------------------------
def run_predictions(result: DemoResult, n: int = 3600, seed: int = 11, minutes: int = 60) -> None:
    from orbitwatch import MonitoredModel

    rng = random.Random(seed)
    model = MonitoredModel(MODEL, MODEL_VERSION, project_name=PROJECT)
    ref_n = 2000
    reference = {
        "tenure_months": [rng.gammavariate(2.0, 12.0) for _ in range(ref_n)],
        DRIFTED_FEATURE: [rng.gauss(70.0, 20.0) for _ in range(ref_n)],
        "support_calls": [float(min(12, int(rng.expovariate(0.7)))) for _ in range(ref_n)],
        "contract": [rng.choices(["month-to-month", "one-year", "two-year"], [0.55, 0.25, 0.2])[0]
                     for _ in range(ref_n)],
    }
    model.set_reference(reference)
    result.reference_features = sorted(reference)
    model.flush()  # the reference first, so drift has it when the predictions arrive
    end = datetime.now(timezone.utc) - timedelta(seconds=5)
    start = end - timedelta(minutes=minutes)
    span_s = (end - start).total_seconds()
    for i in range(n):
        ts = start + timedelta(seconds=span_s * i / n)
        drifted = i >= n // 2
        features = {
            "tenure_months": rng.gammavariate(2.0, 12.0),
            DRIFTED_FEATURE: rng.gauss(100.0 if drifted else 70.0, 20.0),
            "support_calls": float(min(12, int(rng.expovariate(0.7)))),
            "contract": rng.choices(["month-to-month", "one-year", "two-year"], [0.55, 0.25, 0.2])[0],
        }
        z = -2.0 + 0.03 * (features[DRIFTED_FEATURE] - 70) + 0.4 * features["support_calls"] \
            - 0.03 * features["tenure_months"]
        p = 1 / (1 + math.exp(-z))
        pid = f"pred-{i:05d}"
        model.log_prediction(pid, features, prediction=int(p >= 0.5), probability=round(p, 4), timestamp=ts)
        result.predictions += 1
        if i % 3 == 0:  # ground truth arrives later for a third of them
            model.log_label(pid, int(rng.random() < p), timestamp=ts + timedelta(seconds=30))
            result.labels += 1
        if i % 500 == 499:  # keep each batch span well under the gateway's record size limit
            model.flush()
    model.flush()


def send_all(endpoint: str, api_key: str = "", timeout: float = 60.0) -> DemoResult:
    """Send the three demo workloads to ``endpoint`` (OTLP/gRPC) and flush; returns what was sent."""
    import orbitwatch

    orbitwatch.configure(endpoint=endpoint, api_key=api_key or None, project=PROJECT)
    result = DemoResult()
    run_predictions(result)
    run_training(result)
    run_rag(result)
    if not orbitwatch.flush(timeout):
        raise RuntimeError(f"could not deliver all demo telemetry to {endpoint} within {timeout:.0f} s")
    return result
