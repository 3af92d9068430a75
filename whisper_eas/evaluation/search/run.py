"""Running a search: measure each configuration (a warm-up utterance, then `repeats` timed
passes), dense at the start and at the end, skipping what the cache already holds, then
summarize. It handles no tensors: it talks to a WhisperModel only through `evaluate`, which the
caller may replace (tests inject a fake one)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence, Tuple

from ...errors import OptionsError
from ...pipeline.options import EVAL_OPTIONS, TranscribeOptions
from ..evaluate import EvalResult, evaluate
from ..manifest import Utterance
from .cache import Cache, Measurement, ModelInfo, cache_key
from .grid import DENSE, DENSE_END, Candidate
from .select import Baseline, Pick, Row, baseline, make_row, pareto_front, pick

EvaluateFn = Callable[..., EvalResult]


def measure(evaluate_fn: EvaluateFn, whisper, utterances: Sequence[Utterance], candidate: Candidate,
            options: TranscribeOptions, repeats: int, language: str, key: Optional[str] = None,
            progress: Optional[Callable[[], None]] = None) -> Measurement:
    """One untimed warm-up utterance, then `repeats` timed passes over the whole dataset."""
    opts = options.replace(eas=candidate.eas)
    evaluate_fn(whisper, utterances[:1], opts, language=language)
    passes = [evaluate_fn(whisper, utterances, opts, language=language, progress=progress) for _ in range(repeats)]
    first = passes[0].utterances
    kept = [k for u in first for k in u.tokens_kept]
    return Measurement(
        key=key or candidate.key, eas=None if candidate.eas is None else candidate.key, family=candidate.family,
        ids=tuple(u.id for u in first), counts=tuple(u.words for u in first),
        hypotheses=tuple(u.hypothesis for u in first),
        seconds_runs=tuple(round(p.total("seconds"), 6) for p in passes),
        encode_runs=tuple(round(p.total("encode_seconds"), 6) for p in passes),
        audio_seconds=round(sum(u.audio_seconds for u in first), 3),
        decoder_steps=int(sum(u.tokens for u in first)),
        tokens_kept=round(sum(kept) / len(kept), 1) if kept else None)


@dataclass(frozen=True)
class Settings:
    dataset: str
    limit: Optional[int] = None
    budget: float = 0.01
    relative: bool = False
    repeats: int = 1
    language: str = "en"
    options: TranscribeOptions = EVAL_OPTIONS  # how every configuration decodes (its eas is replaced)
    role: str = "short"  # which windows the pick is for: "short" clips, or windows full of "speech"
    confident: bool = False  # pick only what is within the budget at 95%, not just on average


@dataclass(frozen=True)
class Outcome:
    model: ModelInfo
    settings: Settings
    utterances: int
    baseline: Baseline
    rows: Tuple[Row, ...]
    front: Tuple[Row, ...]
    pick: Pick
    default_score: str = "attention"
    default_merge: bool = True
    audio_seconds: float = 0.0  # of the dataset (the dense measurement's)


def run_search(whisper, model: ModelInfo, utterances: Sequence[Utterance], candidates: Sequence[Candidate],
               out_dir: Path, settings: Settings, evaluate_fn: EvaluateFn = evaluate,
               show_progress: bool = False, log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)
               ) -> Outcome:
    """Measure every candidate not yet in out_dir/results.jsonl, then summarize."""
    if settings.repeats < 1:
        raise OptionsError("--repeats must be >= 1")
    if not utterances:
        raise OptionsError("the dataset has no utterances")
    key = cache_key(model, settings.dataset, utterances, settings.limit, settings.options, settings.repeats)
    with Cache(Path(out_dir) / "results.jsonl", key) as cache:
        plan = [(c, c.key) for c in candidates] + [(candidates[0], DENSE_END)]
        todo = [(c, k) for c, k in plan if k not in cache.measurements]
        if len(todo) < len(plan):
            log(f"resuming: {len(plan) - len(todo)} of {len(plan)} configs cached in {cache.path}")
        _measure_all(todo, cache, whisper, utterances, settings, evaluate_fn, show_progress, log)
        return summarize(model, settings, len(utterances), candidates, cache.measurements)


def _measure_all(todo, cache: Cache, whisper, utterances, settings: Settings, evaluate_fn, show_progress, log):
    from tqdm import tqdm

    bar = tqdm(total=len(todo), unit="config", disable=not show_progress, file=sys.stderr, dynamic_ncols=True)
    inner = tqdm(total=0, unit="utt", disable=not show_progress, file=sys.stderr, leave=False, position=1,
                 dynamic_ncols=True)
    try:
        for i, (candidate, key) in enumerate(todo, start=1):
            bar.set_postfix_str(f"now: {key}")
            inner.reset(total=settings.repeats * len(utterances))
            m = measure(evaluate_fn, whisper, utterances, candidate, settings.options, settings.repeats,
                        settings.language, key=key, progress=lambda: inner.update(1))
            cache.add(m)
            bar.update(1)
            bar.set_postfix_str(f"{key}: WER {m.wer:.2%}, {m.seconds:.2f} s")
            if not show_progress:
                log(f"[{i}/{len(todo)}] {key}: WER {m.wer:.2%}, {m.seconds:.3f} s (encoder {m.encode_seconds:.3f} s)")
    except KeyboardInterrupt:
        inner.close()
        bar.close()
        log(f"interrupted: {len(cache.measurements)} configs saved in {cache.path}; "
            "rerun the same command to continue")
        raise
    inner.close()
    bar.close()


def summarize(model: ModelInfo, settings: Settings, n_utterances: int, candidates: Sequence[Candidate],
              measurements: Dict[str, Measurement]) -> Outcome:
    dense = measurements[DENSE]
    base = baseline(dense, measurements[DENSE_END])
    rows = tuple(make_row(measurements[c.key], base, dense, c.order) for c in candidates)
    chosen = pick(rows, settings.budget, settings.relative, settings.confident)
    if not chosen.is_dense and chosen.row.speedup - 1.0 <= base.drift:
        chosen = replace(chosen, message=chosen.message + (
            f"\nnote: the {chosen.row.speedup:.2f}x speedup is within the timing noise (the two dense runs are "
            f"{base.drift:.0%} apart); measure with more utterances or --repeats"))
    first = next((c.eas for c in candidates if c.family == "grid"), None)
    return Outcome(model=model, settings=settings, utterances=n_utterances, baseline=base, rows=rows,
                   front=tuple(pareto_front(rows)), pick=chosen,
                   default_score=first.score if first else "attention", default_merge=first.merge if first else True,
                   audio_seconds=dense.audio_seconds)
