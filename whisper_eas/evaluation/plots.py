"""Plots of an EAS search (matplotlib, Agg backend, PNG files).

* pareto.png: WER against end-to-end speedup for every configuration, the Pareto front as a
  line, the WER budget as a band, dense and the pick marked;
* heatmap_wer.png / heatmap_speedup.png: encoder layer x sparsity grids (for the first score
  and reduction of the search) of the WER change vs dense and of the speedup, values written in
  the cells."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.ticker  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm, TwoSlopeNorm  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

FAMILY_MARKERS = {"grid": "o", "adaptive": "^", "pad": "s", "extra": "D"}
DPI = 130


def plot_all(outcome, out_dir: Path) -> List[Path]:
    out_dir = Path(out_dir)
    paths = [pareto_plot(outcome, out_dir / "pareto.png")]
    grid = heatmap_grid(outcome)
    if grid is not None:
        paths.append(heatmap_plot(outcome, grid, "wer", out_dir / "heatmap_wer.png"))
        paths.append(heatmap_plot(outcome, grid, "speedup", out_dir / "heatmap_speedup.png"))
    return paths


def _dataset_name(outcome) -> str:
    spec = outcome.settings.dataset
    return spec if spec.startswith("hf:") else Path(spec).name


def _title(outcome, what: str) -> str:
    m = outcome.model
    return f"{what}: {m.name} on {_dataset_name(outcome)} ({outcome.utterances} utt.), {m.device} {m.dtype}"


# ---------------------------------------------------------------------------------------------
# WER vs speedup

FAMILY_LABELS = {"grid": "layer × sparsity", "adaptive": "adaptive", "pad": "padding-aware", "extra": "extra spec"}


def pareto_plot(outcome, path: Path) -> Path:
    """Colour = the (first) pruned layer, marker = the kind of configuration."""
    rows, pick, base = outcome.rows, outcome.pick, outcome.baseline
    fig, ax = plt.subplots(figsize=(10.5, 6), dpi=DPI)
    layers = sorted({r.layer_sparsity[0] for r in rows if r.layer_sparsity})
    colour = _layer_colours(layers)
    ceiling = _wer_ceiling(outcome)
    above = [r for r in rows if not r.is_dense and 100 * r.wer > ceiling]
    for r in rows:
        if not r.is_dense:
            layer = r.layer_sparsity[0] if r.layer_sparsity else None
            clipped = 100 * r.wer > ceiling  # drawn on the top edge so the useful range stays readable
            ax.scatter(r.speedup, min(100 * r.wer, ceiling), s=30 if not clipped else 45,
                       marker="^" if clipped else FAMILY_MARKERS.get(r.family, "o"),
                       color=colour.get(layer, "0.5"), alpha=0.85, zorder=3)
    if above:
        ax.text(0.01, 0.98, f"▲ {len(above)} configurations above {ceiling:.0f}% WER (up to "
                f"{100 * max(r.wer for r in above):.0f}%), drawn at the edge", transform=ax.transAxes,
                fontsize=8, va="top", color="0.3")
    front = outcome.front
    ax.plot([r.speedup for r in front], [100 * r.wer for r in front], "-", color="0.2", lw=1.5, zorder=2)
    ax.scatter([1.0], [100 * base.wer], marker="*", s=240, color="black", zorder=4)
    top = 100 * (base.wer + pick.allowed)
    ax.axhspan(100 * base.wer, top, color="tab:green", alpha=0.12, zorder=0)
    ax.axhline(top, color="tab:green", lw=1, ls="--", zorder=1)
    ax.axvline(1.0, color="0.6", lw=0.8, ls=":", zorder=1)
    ax.set_xlabel("end-to-end speedup vs dense (×)")
    ax.set_ylabel("WER (%)")
    ax.set_title(_title(outcome, "EAS search"), fontsize=11)
    ax.grid(True, alpha=0.3)
    _limits(ax, outcome)
    _mark_pick(ax, outcome)
    _pareto_legend(ax, rows, layers, colour, pick)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _layer_colours(layers: List[int]) -> Dict[int, tuple]:
    if len(layers) <= 10:
        cmap = plt.get_cmap("tab10")
        return {l: cmap(i) for i, l in enumerate(layers)}
    cmap = plt.get_cmap("viridis")
    return {l: cmap(i / (len(layers) - 1)) for i, l in enumerate(layers)}


def _pareto_legend(ax, rows, layers, colour, pick) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    def dot(c, marker="o", size=7, **kw):
        return Line2D([], [], ls="", marker=marker, color=c, markersize=size, **kw)

    step = max(1, len(layers) // 8)  # many layers: every step-th one (the colours run in order)
    handles = [dot(colour[l]) for l in layers[::step]]
    labels = ["input (before block 0)" if l < 0 else f"prune after block {l}" for l in layers[::step]]
    if any(r.layer_sparsity is None and not r.is_dense for r in rows):
        handles.append(dot("0.5"))
        labels.append("multi-stage")
    families = [f for f in FAMILY_MARKERS if any(r.family == f for r in rows)]
    if len(families) > 1:
        handles += [dot("0.35", FAMILY_MARKERS[f]) for f in families]
        labels += [FAMILY_LABELS[f] for f in families]
    handles += [dot("black", "*", 13), Line2D([], [], color="0.2", lw=1.5),
                Patch(facecolor="tab:green", alpha=0.25, edgecolor="tab:green"),
                dot("none", "o", 14, markeredgecolor="red", markeredgewidth=2)]
    labels += ["dense", "Pareto front", f"WER budget (+{100 * pick.allowed:.2f} pp)", "pick"]
    ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              framealpha=0.95)


def _wer_ceiling(outcome) -> float:
    """The top of the WER axis: configurations that hallucinate (WER in the hundreds) would
    squash the region that matters, near dense and the budget, into one line."""
    base, allowed = 100 * outcome.baseline.wer, 100 * outcome.pick.allowed
    return max(base + 6 * allowed, 2 * base, base + 1.0)


def _limits(ax, outcome) -> None:
    """Room around the points (WER 0 must not sit on the frame), dense and the budget line in view."""
    wers = [min(100 * r.wer, _wer_ceiling(outcome)) for r in outcome.rows]
    wers += [100 * (outcome.baseline.wer + outcome.pick.allowed)]
    speeds = [r.speedup for r in outcome.rows] + [1.0]
    lo, hi = min(wers), max(wers)
    pad = 0.08 * max(hi - lo, 0.5)
    ax.set_ylim(lo - pad, hi + 2.5 * pad)  # extra room on top for the legend and the annotation
    lo, hi = min(speeds), max(speeds)
    pad = 0.08 * max(hi - lo, 0.05)
    ax.set_xlim(lo - pad, hi + pad)


def _mark_pick(ax, outcome) -> None:
    pick = outcome.pick
    r = pick.row
    ax.scatter([r.speedup], [100 * r.wer], s=320, facecolors="none", edgecolors="red", linewidths=2.2, zorder=5,
               label="pick")
    if pick.is_dense:
        text = "pick: dense\n(nothing within budget is faster)"
    else:
        flag = "\nnot significant at 95%" if not pick.significant else ""
        text = f"pick: {r.key.replace(' score=', chr(10) + 'score=', 1)}\n{r.speedup:.2f}×, WER {100 * r.wer:.2f}% " \
               f"({100 * r.wer_delta:+.2f} pp){flag}"
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    dx = -0.25 * (x1 - x0) if r.speedup > (x0 + x1) / 2 else 0.15 * (x1 - x0)
    ax.annotate(text, (r.speedup, 100 * r.wer), xytext=(r.speedup + dx, 100 * r.wer + 0.25 * (y1 - y0)),
                fontsize=9, color="darkred", ha="left", va="bottom",
                bbox=dict(boxstyle="round,pad=0.3", fc="white", ec="red", alpha=0.9),
                arrowprops=dict(arrowstyle="->", color="red", lw=1.2), zorder=6)


# ---------------------------------------------------------------------------------------------
# Layer x sparsity heatmaps

Grid = Tuple[List[int], List[float], Dict[Tuple[int, float], object]]


def heatmap_grid(outcome) -> Optional[Grid]:
    """(layers, sparsities, {(layer, sparsity): row}) of the plain grid for the first score and
    reduction; None when the search had no such grid."""
    cells = {}
    for r in outcome.rows:
        c = r.config
        if r.family != "grid" or c is None or c.score != outcome.default_score or c.merge != outcome.default_merge:
            continue
        if r.layer_sparsity:
            cells[r.layer_sparsity] = r
    if not cells:
        return None
    layers = sorted({l for l, _ in cells})
    sparsities = sorted({s for _, s in cells})
    return layers, sparsities, cells


def heatmap_plot(outcome, grid: Grid, what: str, path: Path) -> Path:
    layers, sparsities, cells = grid
    values = np.full((len(layers), len(sparsities)), np.nan)
    for (l, s), r in cells.items():
        values[layers.index(l), sparsities.index(s)] = 100 * r.wer_delta if what == "wer" else r.speedup
    fig, ax = plt.subplots(figsize=(max(7.5, 3.0 + 0.8 * len(sparsities)), max(4.5, 2.4 + 0.42 * len(layers))),
                           dpi=DPI)
    if what == "wer":
        # saturate at 3x the budget: what matters is inside/outside the budget, not 50 vs 60 pp
        span = max(min(float(np.nanmax(np.abs(values))), 300 * outcome.pick.allowed), 100 * outcome.pick.allowed, 0.1)
        im = ax.imshow(np.clip(values, -span, span), cmap="RdBu_r", norm=TwoSlopeNorm(vcenter=0.0, vmin=-span, vmax=span),
                       aspect="auto")
        label, fmt, title = "WER change vs dense (percentage points)", "{:+.1f}", "WER change vs dense"
    else:
        # symmetric in log space around 1x: 2x faster and 2x slower are equally strong colours
        span = max(float(np.nanmax(np.abs(np.log(values)))), np.log(1.05))
        im = ax.imshow(values, cmap="PuOr", norm=LogNorm(np.exp(-span), np.exp(span)), aspect="auto")
        label, fmt, title = "end-to-end speedup vs dense (×)", "{:.2f}×", "End-to-end speedup vs dense"
    cbar = fig.colorbar(im, ax=ax, extend="both" if what == "wer" else "neither")
    if what != "wer":  # plain numbers, not 10^x, on the log scale
        ticks = np.exp(np.linspace(np.log(im.norm.vmin), np.log(im.norm.vmax), 7))
        cbar.set_ticks([round(float(t), 2) for t in ticks])
        cbar.ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.2f×"))
        cbar.ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    cbar.set_label(label)
    for i in range(len(layers)):
        for j in range(len(sparsities)):
            v = values[i, j]
            if np.isnan(v):
                continue
            rgba = im.cmap(im.norm(v))
            dark = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2] < 0.5
            ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8, color="white" if dark else "black")
    pick = outcome.pick.row
    note = ""
    if pick.layer_sparsity in cells and cells[pick.layer_sparsity].key == pick.key:
        l, s = pick.layer_sparsity
        for colour, width in (("black", 5), ("gold", 2.5)):  # visible on dark and light cells alike
            ax.add_patch(Rectangle((sparsities.index(s) - 0.5, layers.index(l) - 0.5), 1, 1, fill=False,
                                   edgecolor=colour, lw=width, zorder=5))
        note = "; outlined: the pick"
    ax.set_xticks(range(len(sparsities)), [f"{s:g}" for s in sparsities])
    ax.set_yticks(range(len(layers)), [str(l) for l in layers])
    ax.set_xlabel("sparsity (share of encoder tokens removed)")
    ax.set_ylabel("encoder layer (prune after block)")
    m = outcome.model
    reduce = "merge" if outcome.default_merge else "drop"
    ax.set_title(f"{title}\n{m.name} on {_dataset_name(outcome)} ({outcome.utterances} utt.), {m.device} {m.dtype}\n"
                 f"score={outcome.default_score}, {reduce}{note}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
