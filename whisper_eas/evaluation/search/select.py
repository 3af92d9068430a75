"""From measurements to the answer, as pure functions: a summary row per configuration (WER,
its change against dense with a paired bootstrap 95% CI, speedups against the dense baseline),
the Pareto front of (speedup, WER) and the pick: the fastest configuration within the WER
budget, flagged when its CI reaches past the budget. The tie rules are in the package docstring."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ...errors import OptionsError
from ...network.eas import EASConfig, parse_eas
from ..metrics import paired_bootstrap
from .cache import Measurement
from .grid import DENSE

SPEED_DECIMALS = 2  # speedups are compared (and shown) at this precision
DRIFT_WARNING = 0.10  # warn when the two dense timings differ by more than this share
_EPS = 1e-9  # WER deltas are differences of floats: 0.07 - 0.06 > 0.01


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


def pick(rows: Sequence[Row], budget: float = 0.01, relative: bool = False, confident: bool = False) -> Pick:
    """The fastest row whose WER loss vs dense is within the budget (ties: see rank_key).
    `confident`: only rows whose loss is within it at 95% (the upper end of the paired bootstrap
    interval), for a small dataset where a measured loss under the budget may be luck."""
    if budget < 0:
        raise OptionsError(f"the WER budget must be >= 0, got {budget}")
    dense = next((r for r in rows if r.is_dense), None)
    if dense is None:
        raise ValueError("pick: the rows have no dense baseline")
    allowed = budget * dense.wer if relative else budget
    def loss(r: Row) -> float:
        return r.ci_high if confident and r.ci_high is not None and not r.is_dense else r.wer_delta

    within = [r for r in rows if loss(r) <= allowed + _EPS]
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
