"""Transcription accuracy: Whisper's text normalization, WER/CER counts, paired bootstrap.

Why these pieces:

* WER numbers are only comparable with published Whisper results when both sides are
  normalized the same way, so :func:`normalize` reproduces openai-whisper's
  ``EnglishTextNormalizer`` (English) and ``BasicTextNormalizer`` (other languages).
  The code comes from the ``whisper-normalizer`` package (a copy of openai-whisper's
  normalizers with its spelling map, without openai-whisper's torch/numba/triton
  dependencies).  That package adds four rewrites of its own ("kinda", "sorta",
  "dunno", "cause"); we drop them so the output matches openai-whisper exactly.
* Scores are kept as per-utterance edit counts (:class:`ErrorCounts`), never as
  per-utterance rates: corpus WER is total errors / total reference words, and the
  counts are what a paired significance test needs.
* :func:`paired_bootstrap` answers "is system B really better than A on this corpus?"
  by resampling utterances, so a search over decoding settings does not chase noise.

The alignment itself (minimum edit distance with substitution / deletion / insertion
counts) is delegated to ``jiwer``, which runs it in C++ via rapidfuzz.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Sequence

import jiwer
import numpy as np
from whisper_normalizer.basic import BasicTextNormalizer
from whisper_normalizer.english import EnglishTextNormalizer

__all__ = [
    "BootstrapResult",
    "ErrorCounts",
    "char_errors",
    "corpus_wer",
    "normalize",
    "paired_bootstrap",
    "word_errors",
]

_ENGLISH = {"en", "eng", "english"}

# Rewrites that whisper-normalizer adds on top of openai-whisper's EnglishTextNormalizer.
# Applying them would make our WER differ from openai-whisper's on the same text
# (e.g. "'cause" -> "because"), so they are removed again.
_NON_REFERENCE_REPLACERS = (r"\bkinda\b", r"\bsorta\b", r"\bdunno\b", r"\bcause\b")


@lru_cache(maxsize=None)
def _english_normalizer() -> EnglishTextNormalizer:
    normalizer = EnglishTextNormalizer()  # loads a 56 KB spelling map: build once
    for pattern in _NON_REFERENCE_REPLACERS:
        normalizer.replacers.pop(pattern, None)
    return normalizer


@lru_cache(maxsize=None)
def _basic_normalizer() -> BasicTextNormalizer:
    return BasicTextNormalizer()


def normalize(text: str, language: str | None = "en") -> str:
    """Normalize a transcript the way Whisper's evaluation does.

    English (``"en"``/``"english"``, any case): openai-whisper's EnglishTextNormalizer:
    lowercase; drop bracketed/parenthesized spans and the fillers hmm/mm/mhm/mmm/uh/um;
    expand contractions and titles ("won't" -> "will not", "Mr." -> "mister");
    spelled-out numbers to digits ("twenty five" -> "25", "twenty dollars" -> "$20");
    British to American spelling; remove punctuation and diacritics.

    Any other language (or ``None``): openai-whisper's default BasicTextNormalizer:
    lowercase, drop bracketed/parenthesized spans, replace symbols, punctuation and
    combining marks with spaces.  Like openai-whisper's multilingual evaluation, this
    also splits words in scripts whose vowel signs are combining marks (Devanagari,
    Thai, ...); compare such scores only with others computed the same way.

    The result has single spaces between words; it may have a leading or trailing
    space (as openai-whisper's does), which word splitting ignores.
    """
    if language is not None and language.strip().lower() in _ENGLISH:
        return _english_normalizer()(text)
    return _basic_normalizer()(text)


@dataclass(frozen=True)
class ErrorCounts:
    """Edit counts of one hypothesis against one reference (or a sum of them).

    ``ref_len`` is the number of reference tokens (words or characters).  Summing
    with ``+`` (or :func:`sum`) pools utterances, so ``sum(counts).wer`` is the
    corpus error rate weighted by reference length.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """errors / ref_len; for an empty reference 0.0 if there are no errors, else inf.

        (An empty reference with a non-empty hypothesis is all insertions; no finite
        rate describes that, and inf keeps it from being mistaken for a good score.)
        The same rate is the CER when the counts come from :func:`char_errors`.
        """
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else math.inf
        return self.errors / self.ref_len

    def __add__(self, other: "ErrorCounts") -> "ErrorCounts":
        if not isinstance(other, ErrorCounts):
            return NotImplemented
        return ErrorCounts(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.ref_len + other.ref_len,
        )

    def __radd__(self, other: object) -> "ErrorCounts":
        # lets the built-in sum() start from its default 0
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented


def _prepare(text: str, normalize_text: bool, language: str | None) -> str:
    return normalize(text, language) if normalize_text else text


def _from_jiwer(out, ref_len: int) -> ErrorCounts:
    return ErrorCounts(out.substitutions, out.deletions, out.insertions, ref_len)


def word_errors(
    reference: str, hypothesis: str, normalize: bool = True, language: str | None = "en"
) -> ErrorCounts:
    """Word-level edit counts of ``hypothesis`` against ``reference``.

    Both texts go through :func:`normalize` first unless ``normalize=False``, in which
    case they are only split on whitespace (case and punctuation then count).
    """
    ref = _prepare(reference, normalize, language).split()
    hyp = _prepare(hypothesis, normalize, language).split()
    out = jiwer.process_words(" ".join(ref), " ".join(hyp))
    return _from_jiwer(out, len(ref))


def char_errors(
    reference: str, hypothesis: str, normalize: bool = True, language: str | None = "en"
) -> ErrorCounts:
    """Character-level edit counts (for CER), after the same normalization as WER.

    Runs of whitespace count as one space character and leading/trailing whitespace is
    ignored, so the spaces between words are part of the reference length.
    """
    ref = " ".join(_prepare(reference, normalize, language).split())
    hyp = " ".join(_prepare(hypothesis, normalize, language).split())
    out = jiwer.process_characters(ref, hyp)
    return _from_jiwer(out, len(ref))


def corpus_wer(counts: Sequence[ErrorCounts]) -> float:
    """Pooled error rate: total errors / total reference tokens (see ``ErrorCounts.wer``).

    Works the same for character counts (corpus CER).  An empty list gives 0.0.
    """
    return sum(counts, ErrorCounts()).wer


class BootstrapResult(NamedTuple):
    """WER(B) - WER(A) on the whole corpus and its percentile confidence interval."""

    delta: float
    low: float
    high: float


def _as_arrays(counts: Sequence[ErrorCounts]) -> tuple[np.ndarray, np.ndarray]:
    errors = np.fromiter((c.errors for c in counts), dtype=np.float64, count=len(counts))
    ref_len = np.fromiter((c.ref_len for c in counts), dtype=np.float64, count=len(counts))
    return errors, ref_len


def paired_bootstrap(
    counts_a: Sequence[ErrorCounts],
    counts_b: Sequence[ErrorCounts],
    n_resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Paired bootstrap of the corpus WER difference B - A (absolute, e.g. -0.012).

    ``counts_a[i]`` and ``counts_b[i]`` must score the same utterance.  Each resample
    draws utterances with replacement, the *same* draw for both systems (pairing
    removes the per-utterance difficulty from the variance), and recomputes both
    pooled WERs.  ``low``/``high`` are the (1-confidence)/2 and (1+confidence)/2
    percentiles of the resampled differences; an interval that excludes 0 means the
    difference is unlikely to be resampling noise.  Deterministic for a given seed.

    Resamples whose drawn utterances have no reference words at all are left out of
    the interval (only possible when some references are empty).
    """
    if len(counts_a) != len(counts_b):
        raise ValueError(f"paired_bootstrap: {len(counts_a)} utterances for A but {len(counts_b)} for B")
    if not counts_a:
        raise ValueError("paired_bootstrap: no utterances")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"paired_bootstrap: confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"paired_bootstrap: n_resamples must be >= 1, got {n_resamples}")

    err_a, ref_a = _as_arrays(counts_a)
    err_b, ref_b = _as_arrays(counts_b)
    if not np.array_equal(ref_a, ref_b):
        first = int(np.flatnonzero(ref_a != ref_b)[0])
        raise ValueError(
            f"paired_bootstrap: reference lengths differ at utterance {first} "
            f"({int(ref_a[first])} vs {int(ref_b[first])}); both systems must be scored "
            "against the same references with the same normalization"
        )
    if ref_a.sum() == 0:
        raise ValueError("paired_bootstrap: the references have no words")

    delta = corpus_wer(counts_b) - corpus_wer(counts_a)

    # Only the per-utterance error difference and reference length matter:
    # WER_B - WER_A = sum(err_b - err_a) / sum(ref_len) over the drawn utterances.
    diff = err_b - err_a
    n = len(diff)
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, 4_000_000 // n)  # bound the index matrix to ~32 MB
    deltas = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, rows_per_chunk):
        rows = min(rows_per_chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(rows, n))
        num = diff[idx].sum(axis=1)
        den = ref_a[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            deltas[start : start + rows] = np.where(den > 0, num / den, np.nan)

    alpha = 1.0 - confidence
    low, high = np.nanquantile(deltas, [alpha / 2, 1.0 - alpha / 2])
    return BootstrapResult(float(delta), float(low), float(high))


def longest_repeat(text: str) -> int:
    """How many times in a row the most repeated 1-4 word phrase occurs: a decoding loop
    ("Delta Delta Delta ...") shows up as a large number, ordinary speech as 1 or 2."""
    words = re.findall(r"\w+", text.lower())
    best = 1
    for n in range(1, 5):
        for i in range(len(words) - n):
            count, j = 1, i + n
            while words[j : j + n] == words[i : i + n]:
                count, j = count + 1, j + n
            best = max(best, count)
    return best
