"""The configuration space of a search: dense first, then layers x sparsities per score and
reduction, the adaptive configurations, the padding-aware variants and any extra specs, each
once, in grid order (the last tie-breaker of the pick)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

from ...errors import OptionsError
from ...network.eas import SCORES, EASConfig, Stage, parse_eas

DENSE = "dense"
DENSE_END = "dense@end"  # the second dense measurement, at the end of the search
DEFAULT_SPARSITIES = tuple(round(0.1 * i, 1) for i in range(1, 10))


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
