"""Local RAG metrics: hallucination, answer relevance, context precision and context recall.

They run on the CPU with no network and no model, so every LLM span in production can be scored
(hundreds per second per core), and each score comes with a reason that names what it found.
They are lexical approximations of the LLM-judge metrics (see :mod:`.judge` for those):
good at wrong numbers, swapped or invented names and unsupported content, blind to paraphrase
that shares no words with the evidence and to logical errors built from supported words.

Hallucination, the method
-------------------------
1. Split the answer into claims (sentences, and clauses that stand alone; see
   :func:`orbitwatch.processors.evals.text.claims`). Claims with no content word and no number
   ("Sure!") are not claims.
2. Index the evidence — the retrieved context chunks plus the input — by sentence.
3. For each claim, take the ``window`` evidence sentences that share most content words with it
   (plus the whole input, which may legitimately supply names and numbers). The claim is
   **unsupported** when, against that window,

   * one of its numbers is absent (wrong number), or
   * one of its named entities is absent (invented or swapped name: a name that exists elsewhere
     in the context but not next to the claim's other words counts as swapped), or
   * fewer than ``coverage`` of its content words occur (invented fact).
4. Score = unsupported claims / claims, in [0, 1]; higher is worse. The reason lists the
   unsupported claims with what was missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from orbitwatch.processors.evals import text as T
from orbitwatch.processors.evals.metrics.base import EvalInput, Metric, ScoreResult, shorten

# Words answers use to talk about the evidence rather than to claim something.
_META = frozenset(T.stem(w) for w in """
context contexts document documents passage passages provided source sources text information
answer question according mention mentioned mentions state stated states say says said based
note noted given following above below retrieved cited describe described describes
""".split())
_QUESTION_WORDS = frozenset(T.stem(w) for w in "what which who whom whose when where why how tell explain "
                            "describe give list name please kind type".split())


@dataclass
class ClaimCheck:
    claim: str
    missing_numbers: list[str] = field(default_factory=list)
    missing_entities: list[str] = field(default_factory=list)
    missing_words: list[str] = field(default_factory=list)
    coverage: float = 1.0
    supported: bool = True

    def why(self) -> str:
        parts = []
        if self.missing_numbers:
            parts.append("number " + ", ".join(self.missing_numbers))
        if self.missing_entities:
            parts.append("name " + ", ".join(repr(e) for e in self.missing_entities))
        if not parts and self.missing_words:
            parts.append("words " + ", ".join(self.missing_words[:4]))
        return f"{shorten(self.claim, 70)!r} ({'; '.join(parts)} not in context)"


def check_claims(answer: str, evidence_texts: list[str], extra: str = "", coverage: float = 0.5,
                 window: int = 3) -> list[ClaimCheck]:
    """Check each claim of ``answer`` against ``evidence_texts`` (+ ``extra``, e.g. the input,
    which is always in every claim's window). See the module docstring for the method."""
    ev = T.Evidence.build(evidence_texts)
    extra_words = set(T.content_words(extra)) if extra else set()
    extra_nums = T.numbers(extra) if extra else set()
    extra_low = T.squash(extra) if extra else ""
    out: list[ClaimCheck] = []
    for claim in T.claims(answer):
        words = [w for w in T.content_words(claim) if w not in _META]
        nums = T.numbers(claim)
        if not words and not nums:
            continue
        best = ev.best(words, window)
        if best:
            # Stay in the chunk of the best match (a name or number from another document is a
            # swap, not support) and add that sentence's neighbours ("It opened in 1889.").
            top_chunk = ev.chunk[best[0]]
            best = [i for i in best if ev.chunk[i] == top_chunk]
            best = sorted(set(best).union(*(ev.neighbours(i) for i in best)))
        w_words = set(extra_words)
        w_nums = set(extra_nums)
        for i in best:
            w_words |= ev.words[i]
            if nums:
                w_nums |= ev.nums(i)
        chk = ClaimCheck(claim)
        chk.missing_numbers = sorted(n for n in nums if n not in w_nums)
        ents = T.entities(claim)
        w_low = extra_low + " ".join(ev.lower(i) for i in best) if ents else ""
        for ent in ents:
            toks = [t for t in ent.split() if t not in T.STOPWORDS]
            if toks and not all(f" {t} " in w_low or T.stem(t) in w_words for t in toks):
                chk.missing_entities.append(ent)
        uniq = list(dict.fromkeys(words))
        missing = [w for w in uniq if w not in w_words]
        chk.missing_words = missing
        chk.coverage = 1 - len(missing) / len(uniq) if uniq else 1.0
        chk.supported = not (chk.missing_numbers or chk.missing_entities or chk.coverage < coverage)
        out.append(chk)
    return out


class Hallucination(Metric):
    """Share of answer claims not supported by the retrieved context or the input (higher is worse)."""

    name = "hallucination"
    version = "1"
    requires = ("output",)
    higher_is_better = False

    def __init__(self, coverage: float = 0.5, window: int = 3) -> None:
        self.coverage, self.window = coverage, window

    def missing(self, item: EvalInput) -> list[str]:
        out = super().missing(item)
        if not item.context and not item.input:
            out.append("context")
        return out

    def score(self, item: EvalInput) -> ScoreResult:
        checks = check_claims(item.output, item.context, extra=item.input, coverage=self.coverage,
                              window=self.window)
        if not checks:
            return ScoreResult(self.name, 0.0, "no factual claims in the answer")
        bad = [c for c in checks if not c.supported]
        value = len(bad) / len(checks)
        if not bad:
            return ScoreResult(self.name, 0.0, f"all {len(checks)} claims supported by the context")
        reason = f"{len(bad)}/{len(checks)} claims unsupported: " + "; ".join(c.why() for c in bad[:3])
        if len(bad) > 3:
            reason += f"; +{len(bad) - 3} more"
        return ScoreResult(self.name, value, reason)


class AnswerRelevance(Metric):
    """How well the answer addresses the question: share of the question's key terms the answer
    takes up, blended (40 %) with whether it has the kind of answer asked for (a number for
    "how many/much", a date or number for "when", a name for "who"/"where")."""

    name = "answer_relevance"
    requires = ("input", "output")

    def score(self, item: EvalInput) -> ScoreResult:
        q_words = [w for w in dict.fromkeys(T.content_words(item.input))
                   if w not in _QUESTION_WORDS and w not in _META]
        a_words = set(T.content_words(item.output))
        a_low = T.squash(item.output)
        hits = [w for w in q_words if w in a_words]
        q_ents = [e for s in T.sentences(item.input) for e in T.entities(s)]
        hits += [e for e in q_ents if f" {e} " in a_low and T.stem(e) not in hits]
        total = len(q_words) + len([e for e in q_ents if T.stem(e) not in q_words])
        recall = len(hits) / total if total else 1.0
        kind, ok = _answer_kind(item.input, item.output)
        if kind:
            value = 0.6 * recall + 0.4 * (1.0 if ok else 0.0)
        else:
            value = recall
        missing = [w for w in q_words if w not in a_words]
        reason = f"answer takes up {len(hits)}/{total} question terms"
        if missing:
            reason += f" (not: {', '.join(missing[:5])})"
        if kind:
            reason += f"; question asks {kind}, answer {'has' if ok else 'lacks'} one"
        return ScoreResult(self.name, min(1.0, value), reason)


def _answer_kind(question: str, answer: str) -> tuple[str, bool]:
    q = question.lower()
    if "how many" in q or "how much" in q or "what percentage" in q or "how old" in q or "how long" in q:
        return "a number", bool(T.numbers(answer))
    if q.startswith("when") or " when " in q or "what year" in q:
        return "a date", bool(T.numbers(answer)) or any(
            m in answer.lower() for m in ("january", "february", "march", "april", "may", "june", "july",
                                          "august", "september", "october", "november", "december",
                                          "century", "yesterday", "today"))
    if q.startswith(("who ", "where ")) or " who " in q or " where " in q:
        return "a name", any(T.entities(s) for s in T.sentences(answer))
    return "", False


def _chunk_relevant(chunk: str, claim_words: list[set[str]], min_share: float) -> bool:
    cw = set(T.content_words(chunk))
    return any(ws and len(ws & cw) / len(ws) >= min_share for ws in claim_words)


class ContextPrecision(Metric):
    """Are the relevant chunks ranked first? Average precision over the ranks of relevant chunks
    (as RAGAS context precision), where a chunk is relevant when it covers at least half of the
    content words of some claim of the reference answer (the expected output when given, else
    the answer)."""

    name = "context_precision"
    requires = ("context", "output")

    def __init__(self, min_share: float = 0.5) -> None:
        self.min_share = min_share

    def score(self, item: EvalInput) -> ScoreResult:
        target = item.expected or item.output
        claim_words = [set(w for w in T.content_words(c) if w not in _META) for c in T.claims(target)]
        rel = [_chunk_relevant(c, claim_words, self.min_share) for c in item.context]
        hits, ap = 0, 0.0
        for k, r in enumerate(rel, 1):
            if r:
                hits += 1
                ap += hits / k
        ranks = [str(k) for k, r in enumerate(rel, 1) if r]
        if not hits:
            return ScoreResult(self.name, 0.0, f"none of {len(rel)} chunks supports the "
                                               f"{'expected answer' if item.expected else 'answer'}")
        return ScoreResult(self.name, ap / hits,
                           f"relevant chunks at rank {', '.join(ranks)} of {len(rel)}")


class ContextRecall(Metric):
    """Share of the expected answer's claims that the retrieved context supports (same claim
    check as hallucination, against the context only)."""

    name = "context_recall"
    requires = ("context", "expected")

    def __init__(self, coverage: float = 0.5, window: int = 3) -> None:
        self.coverage, self.window = coverage, window

    def score(self, item: EvalInput) -> ScoreResult:
        checks = check_claims(item.expected or "", item.context, coverage=self.coverage, window=self.window)
        if not checks:
            return ScoreResult(self.name, 1.0, "expected answer has no factual claims")
        bad = [c for c in checks if not c.supported]
        value = 1 - len(bad) / len(checks)
        if not bad:
            return ScoreResult(self.name, 1.0, f"context supports all {len(checks)} expected claims")
        return ScoreResult(self.name, value, f"context lacks {len(bad)}/{len(checks)} expected claims: "
                           + "; ".join(c.why() for c in bad[:3]))
