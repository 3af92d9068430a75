"""`whisper-eas search`: which (layer, sparsity) EAS configuration to run for a model on a device.

The search evaluates dense and every configuration of a grid on a dataset, measuring WER and
runtime (end-to-end and encoder seconds, median of `--repeats` passes after a warm-up, on the
device the model runs on). Dense is measured at the start and at the end; the baseline is the
median of the two, and a gap of more than 10% between them means the machine was busy.

Then it reports

* the Pareto front of (end-to-end speedup, WER): the configurations no other one beats on both;
* the pick: the fastest configuration whose WER loss against dense is within the budget
  (absolute, or relative to dense WER), with a paired bootstrap 95% confidence interval of the
  loss. A pick whose interval reaches past the budget is flagged "not significant at 95%": it
  may only be lucky on this sample;
* results.jsonl (the cache), results.csv, results.json, table.md, PNG plots and a profile that
  `whisper-eas transcribe --eas auto` (or `--profile FILE`) uses.

Tie rules (for the pick and the front). Speedups are compared at the two decimals the table
shows (timing noise is far larger than 0.005x), so 1.503x and 1.498x tie. Among tied speeds the
lower WER wins, then the fewer encoder tokens kept, then the earlier configuration in grid order
(dense first, then layer by layer, sparsity ascending). On the front a configuration is dropped
when another one is at least as fast and at least as accurate and strictly better in one of the
two; exact ties in both stay on the front together.

Resuming: each evaluated configuration is appended to results.jsonl (flushed and fsynced) with
its per-utterance error counts, under a header holding the cache key (model fingerprint, device,
dtype, threads, dataset and a hash of its utterances, limit, decoding options, repeats). A rerun
with the same output directory skips what is there; without --output-dir the newest unfinished
search of the same key under runs/ is resumed.

This module handles no tensors: it talks to a WhisperModel only through `evaluate`, which the
caller may replace (tests inject a fake one).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import os
import statistics
import sys
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import OptionsError, SearchCacheError
from ..hardware import describe as describe_machine
from ..io.profiles import Profile
from ..io.profiles import slug as profile_slug
from ..network.eas import SCORES, EASConfig, Stage, parse_eas
from ..pipeline.options import EVAL_OPTIONS, TranscribeOptions
from .evaluate import EvalResult, evaluate
from .manifest import Utterance
from .metrics import ErrorCounts, corpus_wer, paired_bootstrap

CACHE_FORMAT = "whisper-eas-search/1"
DENSE = "dense"
DENSE_END = "dense@end"  # the second dense measurement, at the end of the search
DEFAULT_SPARSITIES = tuple(round(0.1 * i, 1) for i in range(1, 10))
SPEED_DECIMALS = 2  # speedups are compared (and shown) at this precision
DRIFT_WARNING = 0.10  # warn when the two dense timings differ by more than this share
_EPS = 1e-9  # WER deltas are differences of floats: 0.07 - 0.06 > 0.01


# ---------------------------------------------------------------------------------------------
# The configuration space

@dataclass(frozen=True)
class Candidate:
    key: str  # EASConfig.describe(), or "dense"
    eas: Optional[EASConfig]
    family: str  # dense, grid, adaptive, pad, extra
    order: int = 0  # position in the grid: the last tie-breaker


@dataclass(frozen=True)
class GridSpec:
    layers: Optional[Tuple[int, ...]] = None  # None: every encoder block
    sparsities: Tuple[float, ...] = DEFAULT_SPARSITIES
    scores: Tuple[str, ...] = ("attention",)
    reduce: str = "merge"  # merge, drop or both
    adaptive: Tuple[float, ...] = ()
    pad: Tuple[int, ...] = ()
    extra: Tuple[str, ...] = ()


def build_grid(spec: GridSpec, n_layers: int) -> Tuple[Candidate, ...]:
    """Dense first, then layers x sparsities per score and reduction, the adaptive configs, the
    padding-aware variants of all of those (plus pure padding pooling at the input), the extras.
    Duplicates (same describe()) are kept once, at their first position."""
    layers = _check_layers(spec.layers, n_layers)
    for score in spec.scores:
        if score not in SCORES:
            raise OptionsError(f"unknown EAS score {score!r}: use one of {', '.join(SCORES)}")
    if spec.reduce not in ("merge", "drop", "both"):
        raise OptionsError(f"--reduce must be merge, drop or both, got {spec.reduce!r}")
    merges = {"merge": (True,), "drop": (False,), "both": (True, False)}[spec.reduce]
    grid: List[Tuple[EASConfig, str]] = []
    for score in spec.scores:
        for merge in merges:
            grid += [(EASConfig((Stage(l, s),), score=score, merge=merge), "grid")
                     for l in layers for s in spec.sparsities]
            grid += [(EASConfig((Stage(l, 0.0),), score=score, merge=merge, adaptive=p), "adaptive")
                     for p in spec.adaptive for l in layers]
    for n in spec.pad:
        grid += [(EASConfig((Stage(-1, 0.0),), pad_stride=n), "pad")]
        grid += [(replace(c, pad_stride=n), "pad") for c, fam in list(grid) if fam in ("grid", "adaptive")]
    for text in spec.extra:
        config = parse_eas(text)
        if config is not None:
            config.check_layers(n_layers)
        grid.append((config, "extra"))
    candidates, seen = [Candidate(DENSE, None, "dense", 0)], {DENSE}
    for config, family in grid:
        key = DENSE if config is None else config.describe()
        if key not in seen:
            seen.add(key)
            candidates.append(Candidate(key, config, family, len(candidates)))
    if len(candidates) == 1:
        raise OptionsError("the search grid is empty: give --layers and --sparsities, --adaptive or --extra")
    return tuple(candidates)


def _check_layers(layers: Optional[Sequence[int]], n_layers: int) -> Tuple[int, ...]:
    if layers is None:
        return tuple(range(n_layers))
    for l in layers:
        if not 0 <= l < n_layers:
            raise OptionsError(f"layer {l} is out of range: this encoder has blocks 0..{n_layers - 1}")
    return tuple(dict.fromkeys(layers))


# ---------------------------------------------------------------------------------------------
# One measurement (what results.jsonl stores per configuration)

@dataclass(frozen=True)
class Measurement:
    key: str  # candidate key; the end-of-search dense run is DENSE_END
    eas: Optional[str]
    family: str
    ids: Tuple[str, ...]
    counts: Tuple[ErrorCounts, ...]  # word errors per utterance (first pass)
    hypotheses: Tuple[str, ...]
    seconds_runs: Tuple[float, ...]  # end-to-end total per pass
    encode_runs: Tuple[float, ...]  # encoder total per pass
    audio_seconds: float
    decoder_steps: int
    tokens_kept: Optional[float]  # mean encoder tokens kept per window

    @property
    def wer(self) -> float:
        return corpus_wer(self.counts)

    @property
    def seconds(self) -> float:
        return statistics.median(self.seconds_runs)

    @property
    def encode_seconds(self) -> float:
        return statistics.median(self.encode_runs)

    def to_json(self) -> dict:
        row = asdict(self)
        row["counts"] = [[c.substitutions, c.deletions, c.insertions, c.ref_len] for c in self.counts]
        return {"type": "config", **row}

    @classmethod
    def from_json(cls, row: dict) -> "Measurement":
        def canonical(text):  # caches written before a change of EASConfig.describe() stay usable
            return text if text in (DENSE, DENSE_END) or not text else parse_eas(text).describe()

        return cls(key=canonical(row["key"]), eas=canonical(row["eas"]), family=row["family"], ids=tuple(row["ids"]),
                   counts=tuple(ErrorCounts(*c) for c in row["counts"]), hypotheses=tuple(row["hypotheses"]),
                   seconds_runs=tuple(row["seconds_runs"]), encode_runs=tuple(row["encode_runs"]),
                   audio_seconds=row["audio_seconds"], decoder_steps=row["decoder_steps"],
                   tokens_kept=row["tokens_kept"])


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


# ---------------------------------------------------------------------------------------------
# The cache: results.jsonl = a header line with the cache key, then one line per measurement

@dataclass(frozen=True)
class ModelInfo:
    name: str
    fingerprint: str
    device: str  # "cpu", "cuda", "cuda:1"
    dtype: str  # "float32", ...
    n_layers: int
    hardware: str = ""
    threads: int = 0

    @classmethod
    def of(cls, whisper) -> "ModelInfo":
        import torch

        device = str(whisper.device)
        return cls(name=whisper.loaded.name, fingerprint=whisper.loaded.fingerprint, device=device,
                   dtype=whisper.compute_type, n_layers=whisper.model.dims.n_audio_layer,
                   hardware=describe_machine(device), threads=torch.get_num_threads())


def cache_key(model: ModelInfo, dataset: str, utterances: Sequence[Utterance], limit: Optional[int],
              options: TranscribeOptions, repeats: int) -> dict:
    """Everything a cached measurement depends on; a mismatch means the cache cannot be reused."""
    items = json.dumps([[u.id, u.text, u.start, u.end] for u in utterances], ensure_ascii=False)
    decoding = decoding_options(options)
    return json.loads(json.dumps({
        "model": model.name, "fingerprint": model.fingerprint, "device": model.device, "dtype": model.dtype,
        "threads": model.threads, "dataset": dataset, "utterances": len(utterances),
        "utterances_sha256": hashlib.sha256(items.encode()).hexdigest()[:16], "limit": limit,
        "decoding": decoding, "repeats": repeats}, sort_keys=True))


def decoding_options(options: TranscribeOptions) -> dict:
    """The decoding settings a measurement depends on, as JSON (every option but the EAS one)."""
    return json.loads(json.dumps({f.name: getattr(options, f.name) for f in fields(options) if f.name != "eas"}))


class Cache:
    """Append-only JSON Lines; a line torn by a kill mid-write is cut off on the next open. Used as
    a context manager, it holds an exclusive lock on the file so two searches cannot share it."""

    def __init__(self, path: Path, key: dict):
        self.path, self.key = Path(path), key
        self.measurements: Dict[str, Measurement] = {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path, "a", encoding="utf-8")
        try:
            _lock(self._lock, self.path)
            if self.path.stat().st_size == 0:
                self._append({"type": "header", "format": CACHE_FORMAT, "key": key})
            else:
                self._load()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._lock.close()  # releases the lock

    def __enter__(self) -> "Cache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self) -> None:
        text = self.path.read_text(encoding="utf-8")
        complete = text[: text.rfind("\n") + 1]
        if len(complete) != len(text):  # torn last line: drop it so appends start on a fresh line
            with open(self.path, "r+", encoding="utf-8") as f:
                f.truncate(len(complete.encode("utf-8")))
        lines = [json.loads(line) for line in complete.splitlines() if line.strip()]
        if not lines or lines[0].get("type") != "header" or lines[0].get("format") != CACHE_FORMAT:
            raise SearchCacheError(f"{self.path}: not a whisper-eas search cache; use another --output-dir")
        differs = sorted(k for k in set(self.key) | set(lines[0]["key"]) if self.key.get(k) != lines[0]["key"].get(k))
        if differs:
            raise SearchCacheError(f"{self.path} holds a search with other settings (differs in: {', '.join(differs)}); "
                                "use another --output-dir")
        for row in lines[1:]:
            m = Measurement.from_json(row)
            self.measurements[m.key] = m

    def add(self, m: Measurement) -> None:
        self._append(m.to_json())
        self.measurements[m.key] = m

    def _append(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _lock(f, path: Path) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise SearchCacheError(f"{path} is in use by another running search; wait for it or use another "
                            "--output-dir") from None


# ---------------------------------------------------------------------------------------------
# Summary rows, the Pareto front and the pick (pure functions)

@dataclass(frozen=True)
class Row:
    key: str
    wer: float  # fraction
    speedup: float  # end-to-end, dense seconds / config seconds
    wer_delta: float = 0.0  # config WER - dense WER (absolute)
    ci_low: Optional[float] = None  # paired bootstrap 95% CI of wer_delta
    ci_high: Optional[float] = None
    encoder_speedup: Optional[float] = None
    tokens_kept: Optional[float] = None
    order: int = 0
    family: str = "grid"
    eas: Optional[str] = None
    seconds: Optional[float] = None
    encode_seconds: Optional[float] = None
    decoder_steps: Optional[int] = None

    @property
    def is_dense(self) -> bool:
        return self.key == DENSE

    @property
    def config(self) -> Optional[EASConfig]:
        return parse_eas(self.eas) if self.eas else None

    @property
    def layer_sparsity(self) -> Optional[Tuple[int, float]]:
        c = self.config
        if c is None or len(c.stages) != 1:
            return None
        return c.stages[0].layer, c.stages[0].sparsity


def _speed(row: Row) -> float:
    return round(row.speedup, SPEED_DECIMALS)


def rank_key(row: Row) -> tuple:
    """Fastest first; among tied speeds lower WER, then fewer tokens kept, then grid order."""
    kept = row.tokens_kept if row.tokens_kept is not None else float("inf")
    return (-_speed(row), row.wer, kept, row.order)


def dominates(a: Row, b: Row) -> bool:
    at_least = _speed(a) >= _speed(b) and a.wer <= b.wer + _EPS
    strictly = _speed(a) > _speed(b) or a.wer < b.wer - _EPS
    return at_least and strictly


def pareto_front(rows: Sequence[Row]) -> List[Row]:
    """Rows no other row dominates, slowest first."""
    front = [r for r in rows if not any(dominates(o, r) for o in rows if o is not r)]
    return sorted(front, key=lambda r: (_speed(r), -r.wer, r.order))


@dataclass(frozen=True)
class Pick:
    row: Row
    budget: float
    relative: bool
    allowed: float  # the largest WER increase allowed, absolute
    significant: bool  # the CI's upper bound is within the budget (always True for dense)
    qualifying: int  # configurations (dense excluded) within the budget
    message: str

    @property
    def is_dense(self) -> bool:
        return self.row.is_dense


def pick(rows: Sequence[Row], budget: float = 0.01, relative: bool = False) -> Pick:
    """The fastest row whose WER loss vs dense is within the budget (ties: see rank_key)."""
    if budget < 0:
        raise OptionsError(f"the WER budget must be >= 0, got {budget}")
    dense = next((r for r in rows if r.is_dense), None)
    if dense is None:
        raise ValueError("pick: the rows have no dense baseline")
    allowed = budget * dense.wer if relative else budget
    within = [r for r in rows if r.wer_delta <= allowed + _EPS]
    best = min(within, key=rank_key)
    others = [r for r in within if not r.is_dense]
    if best.is_dense:
        return Pick(dense, budget, relative, allowed, True, len(others), _dense_message(rows, others, allowed))
    significant = best.ci_high is None or best.ci_high <= allowed + _EPS
    return Pick(best, budget, relative, allowed, significant, len(others), _pick_message(best, allowed, significant))


def _dense_message(rows: Sequence[Row], others: Sequence[Row], allowed: float) -> str:
    if others:
        return (f"keeping dense: none of the {len(others)} configurations within the budget "
                f"(WER loss <= {_pp(allowed)}) is faster than dense")
    rest = [r for r in rows if not r.is_dense]
    closest = min(rest, key=lambda r: (r.wer_delta, rank_key(r))) if rest else None
    hint = ""
    if closest is not None:
        hint = f"; the closest is {closest.key} ({_signed_pp(closest.wer_delta)}, {closest.speedup:.2f}x)"
    return f"keeping dense: no configuration is within the budget (WER loss <= {_pp(allowed)}){hint}"


def _pick_message(row: Row, allowed: float, significant: bool) -> str:
    enc = f", encoder {row.encoder_speedup:.2f}x" if row.encoder_speedup else ""
    ci = f", 95% CI [{_signed_pp(row.ci_low)}, {_signed_pp(row.ci_high)}]" if row.ci_high is not None else ""
    text = (f"pick: {row.key}: {row.speedup:.2f}x faster end-to-end{enc}; WER {row.wer:.2%} "
            f"({_signed_pp(row.wer_delta)} vs dense{ci}; budget {_pp(allowed)})")
    if not significant:
        text += (f"\nnot significant at 95%: the loss could be up to {_signed_pp(row.ci_high)}, past the budget; "
                 "this pick may be lucky noise (search on more utterances)")
    return text


def _pp(x: float) -> str:
    return f"{100 * x:.2f} pp"


def _signed_pp(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{100 * x:+.2f} pp"


# ---------------------------------------------------------------------------------------------
# From measurements to rows

@dataclass(frozen=True)
class Baseline:
    wer: float
    seconds: float  # median of the start and end dense timings
    encode_seconds: float
    start_seconds: float
    end_seconds: float
    warning: Optional[str] = None

    @property
    def drift(self) -> float:
        """How far apart the two dense timings are, as a share of the faster one: timing noise."""
        return abs(self.end_seconds - self.start_seconds) / max(min(self.start_seconds, self.end_seconds), 1e-12)


def baseline(start: Measurement, end: Measurement) -> Baseline:
    seconds = statistics.median([start.seconds, end.seconds])
    encode = statistics.median([start.encode_seconds, end.encode_seconds])
    drift = Baseline(start.wer, seconds, encode, start.seconds, end.seconds).drift
    warning = None
    if drift > DRIFT_WARNING:
        warning = (f"dense took {start.seconds:.3f} s at the start and {end.seconds:.3f} s at the end "
                   f"({drift:.0%} apart): the machine was probably busy, so speedups are noisy")
    if end.counts != start.counts:
        extra = "dense WER differs between the start and the end runs (non-deterministic decoding)"
        warning = extra if warning is None else f"{warning}; {extra}"
    return Baseline(start.wer, seconds, encode, start.seconds, end.seconds, warning)


def make_row(m: Measurement, base: Baseline, dense: Measurement, order: int) -> Row:
    delta = m.wer - dense.wer
    low = high = None
    if m.key == DENSE:
        low = high = 0.0
    elif sum(c.ref_len for c in m.counts) > 0:
        ci = paired_bootstrap(dense.counts, m.counts)
        low, high = ci.low, ci.high
    return Row(key=m.key, wer=m.wer, wer_delta=delta, ci_low=low, ci_high=high,
               speedup=1.0 if m.key == DENSE else base.seconds / max(m.seconds, 1e-12),
               encoder_speedup=1.0 if m.key == DENSE else base.encode_seconds / max(m.encode_seconds, 1e-12),
               tokens_kept=m.tokens_kept, order=order, family=m.family, eas=m.eas,
               seconds=base.seconds if m.key == DENSE else m.seconds,
               encode_seconds=base.encode_seconds if m.key == DENSE else m.encode_seconds,
               decoder_steps=m.decoder_steps)


# ---------------------------------------------------------------------------------------------
# The search

@dataclass(frozen=True)
class Settings:
    dataset: str
    limit: Optional[int] = None
    budget: float = 0.01
    relative: bool = False
    repeats: int = 1
    language: str = "en"
    options: TranscribeOptions = EVAL_OPTIONS  # how every configuration decodes (its eas is replaced)


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
    chosen = pick(rows, settings.budget, settings.relative)
    if not chosen.is_dense and chosen.row.speedup - 1.0 <= base.drift:
        chosen = replace(chosen, message=chosen.message + (
            f"\nnote: the {chosen.row.speedup:.2f}x speedup is within the timing noise (the two dense runs are "
            f"{base.drift:.0%} apart); measure with more utterances or --repeats"))
    first = next((c.eas for c in candidates if c.family == "grid"), None)
    return Outcome(model=model, settings=settings, utterances=n_utterances, baseline=base, rows=rows,
                   front=tuple(pareto_front(rows)), pick=chosen,
                   default_score=first.score if first else "attention", default_merge=first.merge if first else True)


# ---------------------------------------------------------------------------------------------
# Outputs

CSV_FIELDS = ("key", "family", "layer", "sparsity", "wer", "wer_delta", "ci_low", "ci_high", "speedup",
              "encoder_speedup", "seconds", "encode_seconds", "tokens_kept", "decoder_steps", "on_front", "pick")


def _row_record(row: Row, outcome: Outcome) -> dict:
    ls = row.layer_sparsity
    front = {r.key for r in outcome.front}
    return {"key": row.key, "family": row.family, "layer": ls[0] if ls else None, "sparsity": ls[1] if ls else None,
            "wer": _r(row.wer), "wer_delta": _r(row.wer_delta), "ci_low": _r(row.ci_low), "ci_high": _r(row.ci_high),
            "speedup": _r(row.speedup, 4), "encoder_speedup": _r(row.encoder_speedup, 4),
            "seconds": _r(row.seconds), "encode_seconds": _r(row.encode_seconds), "tokens_kept": row.tokens_kept,
            "decoder_steps": row.decoder_steps, "on_front": row.key in front, "pick": row.key == outcome.pick.row.key}


def _r(x: Optional[float], digits: int = 6) -> Optional[float]:
    return None if x is None else round(float(x), digits)


def write_csv(outcome: Outcome, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        w.writeheader()
        for row in outcome.rows:
            w.writerow(_row_record(row, outcome))


def summary_json(outcome: Outcome) -> dict:
    p, b, s = outcome.pick, outcome.baseline, outcome.settings
    return {
        "model": asdict(outcome.model), "dataset": s.dataset, "utterances": outcome.utterances, "limit": s.limit,
        "repeats": s.repeats, "decoding": decoding_options(s.options),
        "budget": {"value": p.budget, "relative": p.relative, "allowed": _r(p.allowed)},
        "dense": {"wer": _r(b.wer), "seconds": _r(b.seconds), "encode_seconds": _r(b.encode_seconds),
                  "start_seconds": _r(b.start_seconds), "end_seconds": _r(b.end_seconds), "warning": b.warning},
        "pick": {**_row_record(p.row, outcome), "significant": p.significant, "qualifying": p.qualifying,
                 "message": p.message},
        "front": [r.key for r in outcome.front],
        "rows": [_row_record(r, outcome) for r in outcome.rows],
    }


def markdown_table(outcome: Outcome) -> List[str]:
    """Table lines, fastest first; the front marked, the pick in bold."""
    front = {r.key for r in outcome.front}
    lines = ["| config | WER | ΔWER vs dense [95% CI] | speedup e2e | speedup encoder | tokens kept | front |",
             "|---|---:|---:|---:|---:|---:|:---:|"]
    for row in sorted(outcome.rows, key=rank_key):
        ci = ""
        if row.ci_low is not None and not row.is_dense:
            ci = f" [{100 * row.ci_low:+.2f}, {100 * row.ci_high:+.2f}]"
        cells = [f"`{row.key}`", f"{row.wer:.2%}", f"{100 * row.wer_delta:+.2f} pp{ci}", f"{row.speedup:.2f}×",
                 f"{row.encoder_speedup:.2f}×" if row.encoder_speedup else "", _kept(row.tokens_kept),
                 "✓" if row.key in front else ""]
        if row.key == outcome.pick.row.key:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _kept(x: Optional[float]) -> str:
    return "" if x is None else f"{x:.0f}"


def write_markdown(outcome: Outcome, path: Path) -> None:
    m, b, p = outcome.model, outcome.baseline, outcome.pick
    head = [f"# EAS search: {m.name} on {outcome.settings.dataset}", "",
            f"- model `{m.name}` (fingerprint `{m.fingerprint}`), {m.device} {m.dtype}, {m.hardware}",
            f"- {outcome.utterances} utterances, {outcome.settings.repeats} timed pass(es) per config after a warm-up",
            f"- dense: WER {b.wer:.2%}, {b.seconds:.3f} s end-to-end (start {b.start_seconds:.3f} s, "
            f"end {b.end_seconds:.3f} s), encoder {b.encode_seconds:.3f} s",
            f"- budget: WER loss <= {_pp(p.allowed)}" + (f" ({p.budget:.0%} of dense WER)" if p.relative else ""),
            *(f"- {line}" for line in p.message.splitlines()),
            *([f"- warning: {b.warning}"] if b.warning else []),
            "", "ΔWER in percentage points (pp) with its paired bootstrap 95% CI; speedups vs dense; "
                "✓ = on the Pareto front; **bold** = the pick.", ""]
    path.write_text("\n".join(head + markdown_table(outcome)) + "\n", encoding="utf-8")


def make_profile(outcome: Outcome):
    p, m, b = outcome.pick, outcome.model, outcome.baseline
    # dense as a profile: a 0-sparsity stage runs the exact dense path, and tells `--eas auto` that
    # on this model and device nothing was within the budget
    eas = p.row.config if not p.is_dense else EASConfig((Stage(0, 0.0),))
    metrics = {"wer": _r(p.row.wer), "dense_wer": _r(b.wer), "delta": _r(p.row.wer_delta),
               "ci": [_r(p.row.ci_low), _r(p.row.ci_high)], "significant": p.significant,
               "speedup": _r(p.row.speedup, 4), "encoder_speedup": _r(p.row.encoder_speedup, 4),
               "dataset": outcome.settings.dataset, "utterances": outcome.utterances,
               "budget": p.budget, "budget_relative": p.relative, "allowed": _r(p.allowed), "dense": p.is_dense}
    return Profile(model=m.name, fingerprint=m.fingerprint, device="cuda" if m.device.startswith("cuda") else "cpu",
                   eas=eas, dtype=m.dtype, metrics=metrics, hardware=m.hardware, dataset=outcome.settings.dataset,
                   created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"))


def write_outputs(outcome: Outcome, out_dir: Path, plots: bool = True) -> List[Path]:
    """The search's files, all in `out_dir`; profile.json too, which `--eas auto` runs only once
    it is installed (`whisper-eas profile install`)."""
    out_dir = Path(out_dir)
    written = [out_dir / "results.jsonl"]
    write_csv(outcome, out_dir / "results.csv")
    (out_dir / "results.json").write_text(json.dumps(summary_json(outcome), indent=1, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    write_markdown(outcome, out_dir / "table.md")
    written += [out_dir / "results.csv", out_dir / "results.json", out_dir / "table.md"]
    if plots:
        from .plots import plot_all

        written += plot_all(outcome, out_dir)
    profile = make_profile(outcome)
    written.append(profile.save(out_dir / "profile.json"))
    return written


# ---------------------------------------------------------------------------------------------
# Where a search writes, and what it prints

def default_output_dir(model_name: str, key: dict, root: Path = Path("runs")) -> Tuple[Path, bool]:
    """(dir, resumed): the newest unfinished search under root with this cache key, else a new one."""
    slug = profile_slug(model_name)
    for d in sorted(root.glob(f"search-{slug}-*"), reverse=True):
        if (d / "results.jsonl").is_file() and not (d / "results.json").exists() and _header_key(d) == key:
            return d, True
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / f"search-{slug}-{stamp}", False


def _header_key(d: Path) -> Optional[dict]:
    try:
        with open(d / "results.jsonl", encoding="utf-8") as f:
            return json.loads(f.readline()).get("key")
    except (OSError, ValueError, AttributeError):
        return None


def report(outcome: Outcome, written: Sequence[Path], top: int = 10) -> str:
    table = markdown_table(outcome)
    body = table[2:]
    pick_line = next(i for i, row in enumerate(sorted(outcome.rows, key=rank_key)) if row.key == outcome.pick.row.key)
    shown = body[:top] + (["| ... |", body[pick_line]] if pick_line >= top else [])
    more = len(body) - min(top, len(body))
    lines = table[:2] + shown + ([f"({more} more rows in table.md)"] if more > 0 else []) + [""]
    if outcome.baseline.warning:
        lines.append(f"warning: {outcome.baseline.warning}")
    lines.append(outcome.pick.message)
    lines.append("wrote: " + ", ".join(str(p) for p in written))
    return "\n".join(lines)
