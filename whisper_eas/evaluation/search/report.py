"""What a search leaves behind: results.csv, results.json, table.md, the plots and profile.json
in its output folder (nothing elsewhere: installing the profile is `whisper-eas profile
install`), and the short report it prints."""

from __future__ import annotations

import csv
import datetime as _dt
import json
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional, Sequence

from ...io.profiles import Profile
from ...network.eas import EASConfig, Stage
from .cache import decoding_options
from .run import Outcome
from .select import Row, _pp, rank_key

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
               "audio_seconds": _r(outcome.audio_seconds, 1),
               "budget": p.budget, "budget_relative": p.relative, "allowed": _r(p.allowed), "dense": p.is_dense}
    dataset = outcome.settings.dataset
    if outcome.settings.role == "speech":  # a search on long recordings: its pick is for windows full of speech
        role = dict(eas=None, metrics={}, dataset="", eas_speech=eas, metrics_speech=metrics, dataset_speech=dataset)
    else:
        role = dict(eas=eas, metrics=metrics, dataset=dataset)
    return Profile(model=m.name, fingerprint=m.fingerprint, device="cuda" if m.device.startswith("cuda") else "cpu",
                   dtype=m.dtype, hardware=m.hardware,
                   created=_dt.datetime.now().astimezone().isoformat(timespec="seconds"), **role)


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
        from ..plots import plot_all

        written += plot_all(outcome, out_dir)
    profile = make_profile(outcome)
    written.append(profile.save(out_dir / "profile.json"))
    return written


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
