"""Reference-based heuristic metrics: exact, substring, pattern, JSON validity, edit distance,
BLEU and ROUGE-L. Small, dependency-free implementations (each a few lines, each checked against
hand-computed examples in ``tests/test_eval_metrics.py``), so the SDK can run them offline."""
from __future__ import annotations

import json
import math
import re
from collections import Counter

from orbitwatch.processors.evals.metrics.base import EvalInput, Metric, MetricError, ScoreResult, shorten

_WORD = re.compile(r"\w+", re.UNICODE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _reference(metric: Metric, item: EvalInput, fixed: str | None) -> str:
    ref = fixed if fixed is not None else item.expected
    if ref is None:
        raise MetricError(f"{metric.name} needs a reference: pass reference=... or an expected output")
    return ref


class Equals(Metric):
    """1 if the output equals the reference (after strip; case-insensitive unless asked)."""

    name = "equals"
    requires = ()

    def __init__(self, reference: str | None = None, case_sensitive: bool = False) -> None:
        self.reference, self.case_sensitive = reference, case_sensitive

    def score(self, item: EvalInput) -> ScoreResult:
        ref = _reference(self, item, self.reference).strip()
        out = item.output.strip()
        if not self.case_sensitive:
            ref, out = ref.casefold(), out.casefold()
        ok = ref == out
        return ScoreResult(self.name, 1.0 if ok else 0.0,
                           "output equals the reference" if ok else f"output differs from {shorten(ref, 60)!r}")


class Contains(Metric):
    """1 if the reference occurs in the output."""

    name = "contains"
    requires = ()

    def __init__(self, reference: str | None = None, case_sensitive: bool = False) -> None:
        self.reference, self.case_sensitive = reference, case_sensitive

    def score(self, item: EvalInput) -> ScoreResult:
        ref = _reference(self, item, self.reference)
        out = item.output
        if not self.case_sensitive:
            ref, out = ref.casefold(), out.casefold()
        ok = ref in out
        return ScoreResult(self.name, 1.0 if ok else 0.0,
                           f"{'found' if ok else 'did not find'} {shorten(ref, 60)!r} in the output")


class RegexMatch(Metric):
    """1 if the pattern matches anywhere in the output (``re.search``)."""

    name = "regex_match"

    def __init__(self, pattern: str, flags: int = 0) -> None:
        try:
            self.pattern = re.compile(pattern, flags)
        except re.error as exc:
            raise MetricError(f"regex_match: invalid pattern {pattern!r}: {exc}") from None

    def score(self, item: EvalInput) -> ScoreResult:
        m = self.pattern.search(item.output)
        return ScoreResult(self.name, 1.0 if m else 0.0,
                           f"matched {shorten(m.group(0), 60)!r}" if m else
                           f"no match for /{self.pattern.pattern}/")


class IsJson(Metric):
    """1 if the output parses as JSON (code fences around it are tolerated)."""

    name = "is_json"

    def score(self, item: EvalInput) -> ScoreResult:
        text = item.output.strip()
        fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
        if fenced:
            text = fenced.group(1)
        try:
            json.loads(text)
        except ValueError as exc:
            return ScoreResult(self.name, 0.0, f"not JSON: {exc}")
        return ScoreResult(self.name, 1.0, "valid JSON")


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute = 1) with two rows of memory."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


class LevenshteinRatio(Metric):
    """1 - distance / max(len): 1 for identical strings, 0 for nothing in common."""

    name = "levenshtein_ratio"
    requires = ()

    def __init__(self, reference: str | None = None, case_sensitive: bool = True) -> None:
        self.reference, self.case_sensitive = reference, case_sensitive

    def score(self, item: EvalInput) -> ScoreResult:
        ref, out = _reference(self, item, self.reference), item.output
        if not self.case_sensitive:
            ref, out = ref.casefold(), out.casefold()
        longest = max(len(ref), len(out))
        if longest == 0:
            return ScoreResult(self.name, 1.0, "both empty")
        d = levenshtein(out, ref)
        return ScoreResult(self.name, 1 - d / longest, f"{d} edits over {longest} characters")


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(candidate: list[str], references: list[list[str]], max_n: int = 4, epsilon: float = 0.1) -> float:
    """Sentence BLEU (Papineni et al. 2002): geometric mean of clipped n-gram precisions (n = 1..max_n)
    times the brevity penalty. A zero count gets ``epsilon`` (Chen & Cherry 2014, method 1) so one
    missing 4-gram does not zero a sentence."""
    if not candidate:
        return 0.0
    log_sum = 0.0
    for n in range(1, max_n + 1):
        cand = _ngrams(candidate, n)
        total = sum(cand.values())
        if total == 0:
            return 0.0 if n == 1 else math.exp(log_sum / (n - 1)) * _bp(candidate, references)
        max_ref: Counter = Counter()
        for ref in references:
            for g, c in _ngrams(ref, n).items():
                max_ref[g] = max(max_ref[g], c)
        clipped = sum(min(c, max_ref[g]) for g, c in cand.items())
        log_sum += math.log((clipped if clipped else epsilon) / total)
    return math.exp(log_sum / max_n) * _bp(candidate, references)


def _bp(candidate: list[str], references: list[list[str]]) -> float:
    c = len(candidate)
    r = min((abs(len(ref) - c), len(ref)) for ref in references)[1]  # closest reference length
    return 1.0 if c > r else math.exp(1 - r / c) if c else 0.0


class Bleu(Metric):
    """Sentence BLEU of the output against the reference (word tokens, lower-cased)."""

    name = "bleu"
    requires = ()

    def __init__(self, reference: str | None = None, max_n: int = 4) -> None:
        self.reference, self.max_n = reference, max_n

    def score(self, item: EvalInput) -> ScoreResult:
        ref = _words(_reference(self, item, self.reference))
        cand = _words(item.output)
        n = min(self.max_n, max(1, len(ref)))
        value = bleu(cand, [ref], max_n=n)
        return ScoreResult(self.name, min(1.0, value), f"BLEU-{n} over {len(cand)} vs {len(ref)} words")


def lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


class RougeL(Metric):
    """ROUGE-L F1 (Lin 2004): longest common word subsequence, as recall/precision harmonic mean."""

    name = "rouge_l"
    requires = ()

    def __init__(self, reference: str | None = None) -> None:
        self.reference = reference

    def score(self, item: EvalInput) -> ScoreResult:
        ref = _words(_reference(self, item, self.reference))
        cand = _words(item.output)
        if not ref or not cand:
            return ScoreResult(self.name, 1.0 if ref == cand else 0.0, "empty text")
        lcs = lcs_length(cand, ref)
        if lcs == 0:
            return ScoreResult(self.name, 0.0, "no common words in order")
        p, r = lcs / len(cand), lcs / len(ref)
        f = 2 * p * r / (p + r)
        return ScoreResult(self.name, f, f"LCS {lcs} words: precision {p:.2f}, recall {r:.2f}")
