"""Text analysis shared by the local metrics: claims, tokens, numbers and named entities.

Pure Python and standard library only, so the metrics run in the SDK (offline ``evaluate()``)
as well as in the stream processor, and fast enough for hundreds of spans per second per core.

The analysis is deliberately simple and explainable (every score can name the tokens that made
it), rather than a model: it recognises

* **claims**: sentences, split further at ``;`` and at clause conjunctions (", but", ", and",
  " while ", " whereas ") when both sides carry enough content to stand alone;
* **numbers**: digits with separators/decimals/percent and the number words one..twenty, tens,
  hundred/thousand/million/billion, normalised to a canonical string (``"1,200"`` → ``"1200"``);
* **entities**: capitalised words and runs of them ("New South Wales"), except a sentence's
  first word when it is a common word;
* **content words**: lower-cased tokens minus stop words, reduced by a light suffix stemmer so
  "launched"/"launches"/"launch" meet.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

STOPWORDS = frozenset("""
a about above after again against all also am an and any are aren't as at be because been before being
below between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down
during each few for from further had hadn't has hasn't have haven't having he he'd he'll he's her here
here's hers herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's its itself
let's me more most mustn't my myself no nor not of off on once only or other ought our ours ourselves
out over own same shan't she she'd she'll she's should shouldn't so some such than that that's the their
theirs them themselves then there there's these they they'd they'll they're they've this those through
to too under until up very was wasn't we we'd we'll we're we've were weren't what what's when when's
where where's which while who who's whom why why's with won't would wouldn't you you'd you'll you're
you've your yours yourself yourselves yes yeah ok okay please thank thanks well just really quite rather
indeed however therefore thus also may might must shall will would can could since though although
yet still even per via around approximately roughly about nearly almost many much several various
sure certainly absolutely hello hi hey great glad happy help hope course
one ones one's whose whatever whichever whoever whenever wherever whether etc
""".split())

# Words that start sentences without being names.
_COMMON_CAPITALISED = STOPWORDS | frozenset("""
according based yes no overall in the first second third finally today yesterday however meanwhile
""".split())

# "one", ordinals and "second"/"half" are left out on purpose: as pronouns and units they are far
# more often not numbers ("the second one"), and a false number is a false hallucination.
_UPPER_AFTER_START = re.compile(r"(?<=.)[A-Z\u00C0-\u00DE]")
_TITLES = frozenset({"dr", "mr", "mrs", "ms", "prof", "st", "sir", "dame", "."})
_NUMBER_WORDS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
    "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000, "dozen": 12,
}
_NUMBER_WORD_RE = re.compile(r"\b(?:" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b")
_SCALE = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000,
          "k": 1000, "m": 1_000_000, "bn": 1_000_000_000}

_ALPHA_TOKEN = re.compile(r"[A-Za-z\u00C0-\u024F][A-Za-z\u00C0-\u024F'\-]*")
_TOKEN = re.compile(r"[A-Za-z\u00C0-\u024F][A-Za-z\u00C0-\u024F'\-]*|\d[\d,]*(?:\.\d+)?%?")
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?\s*(%|percent\b|per cent\b)?"
                     r"(?:\s*(hundred|thousand|million|billion|bn|k|m)\b)?", re.IGNORECASE)
# Sentence boundary: . ! ? followed by space and an upper-case letter / digit / quote, not after
# a one-letter initial ("J. R.") or a common abbreviation.
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_ABBREV = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Mt|Jr|Sr|vs|etc|e\.g|i\.e|No|Inc|Ltd|Co|U\.S|approx)"
                     r"|\b[A-Z])\.$")
_CLAUSE = re.compile(r";\s+|,\s+(?:but|and|while|whereas|although)\s+|\s+(?:while|whereas)\s+")


@lru_cache(maxsize=8192)
def stem(word: str) -> str:
    """A light suffix stripper (not Porter): enough to match inflections, cheap, predictable."""
    w = word.lower()
    if len(w) <= 3:
        return w
    for suf, repl in (("ies", "y"), ("ied", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""), ("ed", ""),
                      ("ly", ""), ("es", ""), ("s", "")):
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            w = w[: len(w) - len(suf)] + repl
            break
    if len(w) > 4 and w[-1] == w[-2] and w[-1] not in "lsz":  # stopped -> stopp -> stop
        w = w[:-1]
    if len(w) > 4 and w.endswith("e"):
        w = w[:-1]
    return w


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


_WORD_CACHE: dict[str, str] = {}  # token -> stem, "" for tokens that are not content words


def _content_stem(t: str) -> str:
    low = t.lower().removesuffix("'s").strip("'-")
    if len(low) < 2 or low in STOPWORDS or low in _NUMBER_WORDS or (
            "-" in low and any(p in _NUMBER_WORDS for p in low.split("-"))):
        return ""
    return stem(low)


def content_words(text: str) -> list[str]:
    """Stems of the non-stop-word alphabetic tokens, in order."""
    cache = _WORD_CACHE
    out = []
    for t in _ALPHA_TOKEN.findall(text):
        st = cache.get(t)
        if st is None:
            st = _content_stem(t)
            if len(cache) < 200_000:
                cache[t] = st
        if st:
            out.append(st)
    return out


def _canon(value: float) -> str:
    if value == int(value):
        return str(int(value))
    return f"{value:.6g}"


def numbers(text: str) -> set[str]:
    """Canonical numbers in ``text`` (digits and number words); "12%" → "12%", "3 million" → "3000000"."""
    found: set[str] = set()
    for m in _NUMBER.finditer(text):
        whole, frac, pct, scale = m.group(1), m.group(2), m.group(3), m.group(4)
        value = float(whole.replace(",", "") + (f".{frac}" if frac else ""))
        if scale:
            value *= _SCALE[scale.lower()]
        s = _canon(value)
        found.add(s + "%" if pct else s)
    low = text.lower()
    if _NUMBER_WORD_RE.search(low):
        total = current = 0.0
        in_number = False
        for w in re.findall(r"[a-z]+|[^\sa-z\-]", low):
            n = _NUMBER_WORDS.get(w)
            if n is None or (w in _SCALE and not in_number):
                if in_number and w != "and":
                    found.add(_canon(total + current))
                    total = current = 0.0
                    in_number = False
                continue
            in_number = True
            if w == "hundred":
                current = max(current, 1) * 100
            elif w in _SCALE:
                total += max(current, 1) * n
                current = 0.0
            else:
                current += n
        if in_number:
            found.add(_canon(total + current))
    return found


def entities(sentence: str) -> list[str]:
    """Capitalised runs ("Marie Curie", "New South Wales"), lower-cased; a sentence-initial common
    word does not count. Joining words (of, de, van, the) may sit inside a run."""
    if not _UPPER_AFTER_START.search(sentence) and not (sentence[:1].isupper() and
                                                        sentence.split(None, 1)[0].lower() not in _COMMON_CAPITALISED):
        return []
    toks = re.findall(r"(?:[A-Z]\.){2,}|[A-Za-z\u00C0-\u024F][\w'\-]*|[^\sA-Za-z]+", sentence)
    ents: list[str] = []
    run: list[str] = []
    first_word = True
    for tok in toks:
        if tok in _TITLES or tok.rstrip(".").lower() in _TITLES:
            continue
        if tok[0].isalpha():
            tok = tok.replace(".", "").removesuffix("'s").removesuffix("’s")
            is_cap = tok[0].isupper() or (len(tok) > 1 and tok[1:].isupper())
            low = tok.lower()
            if is_cap and not (first_word and low in _COMMON_CAPITALISED) and not (
                    low in STOPWORDS and not run):
                run.append(low)
            elif run and low in ("of", "de", "van", "von", "da", "del", "la", "le", "the") and not first_word:
                run.append(low)
            else:
                _flush(run, ents)
                run = []
            first_word = False
        else:
            _flush(run, ents)
            run = []
            if any(c in tok for c in ".!?:"):
                first_word = True
    _flush(run, ents)
    return ents


def _flush(run: list[str], out: list[str]) -> None:
    while run and run[-1] in ("of", "de", "van", "von", "da", "del", "la", "le", "the"):
        run.pop()
    if run:
        out.append(" ".join(run))


def sentences(text: str) -> list[str]:
    """Split prose into sentences (also at line breaks and list bullets)."""
    out: list[str] = []
    for block in re.split(r"\n\s*(?:[-*•]\s+|\d+[.)]\s+)?|\r", text):
        block = block.strip()
        if not block:
            continue
        start = 0
        for m in _SENT_END.finditer(block):
            piece = block[start:m.start()].strip()
            if _ABBREV.search(piece):
                continue
            if piece:
                out.append(piece)
            start = m.end()
        tail = block[start:].strip()
        if tail:
            out.append(tail)
    return out


def claims(text: str, min_content: int = 2) -> list[str]:
    """Sentences, split further into clauses where each clause still makes a claim by itself."""
    out: list[str] = []
    for sent in sentences(text):
        parts = [p.strip(" ,;") for p in _CLAUSE.split(sent)]
        if len(parts) > 1 and all(len(content_words(p)) >= min_content for p in parts):
            out.extend(p for p in parts if p)
        elif len(content_words(sent)) >= 1 or numbers(sent):
            out.append(sent.strip())
    return out


@dataclass
class Evidence:
    """An index over the evidence text (context chunks + input): sentences with their content
    stems and an inverted index stem → sentence positions. Numbers and the lower-cased text of a
    sentence are computed on first use (:meth:`nums`, :meth:`lower`): only the few sentences a
    claim is checked against ever need them."""

    sentences: list[str] = field(default_factory=list)
    words: list[frozenset[str]] = field(default_factory=list)
    chunk: list[int] = field(default_factory=list)
    index: dict[str, list[int]] = field(default_factory=dict)
    _nums: dict[int, frozenset[str]] = field(default_factory=dict)
    _lower: dict[int, str] = field(default_factory=dict)

    @classmethod
    def build(cls, texts: list[str]) -> "Evidence":
        ev = cls()
        index = ev.index
        for chunk_no, text in enumerate(texts):
            for sent in sentences(text):
                i = len(ev.sentences)
                ws = frozenset(content_words(sent))
                ev.sentences.append(sent)
                ev.words.append(ws)
                ev.chunk.append(chunk_no)
                for w in ws:
                    lst = index.get(w)
                    if lst is None:
                        index[w] = [i]
                    else:
                        lst.append(i)
        return ev

    def nums(self, i: int) -> frozenset[str]:
        got = self._nums.get(i)
        if got is None:
            got = self._nums[i] = frozenset(numbers(self.sentences[i]))
        return got

    def lower(self, i: int) -> str:
        got = self._lower.get(i)
        if got is None:
            got = self._lower[i] = _squash(self.sentences[i])
        return got

    def best(self, words: list[str] | set[str], k: int = 3, share: float = 0.5) -> list[int]:
        """Positions of up to ``k`` sentences sharing most content words with ``words``, keeping
        only those with at least ``share`` of the best sentence's overlap (so a claim is checked
        against the sentences it is about, not against the whole context)."""
        counts: dict[int, int] = {}
        for w in set(words):
            for i in self.index.get(w, ()):
                counts[i] = counts.get(i, 0) + 1
        if not counts:
            return []
        ranked = sorted(counts, key=lambda i: (-counts[i], i))[:k]
        floor = counts[ranked[0]] * share
        return [i for i in ranked if counts[i] >= floor]

    def neighbours(self, i: int) -> list[int]:
        """The sentences before and after ``i`` in the same chunk."""
        return [j for j in (i - 1, i + 1) if 0 <= j < len(self.sentences) and self.chunk[j] == self.chunk[i]]


def _squash(text: str) -> str:
    """Lower-case with punctuation turned to single spaces, for phrase look-ups."""
    return " " + " ".join(re.findall(r"[\w']+", text.lower())) + " "


def squash(text: str) -> str:
    return _squash(text)
