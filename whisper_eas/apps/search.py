"""`whisper-eas search`: find the fastest EAS configuration within a WER budget (see
evaluation/search for the method). It writes its results and a profile.json to its output
folder; making that profile what `--eas auto` runs is a separate step (`--install`, or
`whisper-eas profile install`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Tuple

from ..errors import OptionsError
from ..evaluation.manifest import load_dataset, mostly_long
from ..evaluation.search import (DEFAULT_SPARSITIES, GridSpec, ModelInfo, Settings, build_grid, cache_key,
                                 default_output_dir, report, run_search, write_outputs)
from ..io.profiles import MIN_UTTERANCES
from ..network.eas import SCORES
from ..pipeline.options import EVAL_OPTIONS, TranscribeOptions
from . import flags
from .profile import install


def add_parser(sub) -> None:
    p = sub.add_parser(
        "search", help="find the fastest EAS configuration within a WER budget",
        description="Evaluate dense and a grid of EAS configurations (encoder layer x sparsity) on a dataset, "
                    "measure WER and runtime, and pick the fastest configuration whose WER loss vs dense is within "
                    "the budget. Writes results, a markdown table, plots and profile.json to the output folder; "
                    "`--install` (or `whisper-eas profile install`) makes the profile what `--eas auto` runs. "
                    "An interrupted search resumes from its cache (results.jsonl in the output directory).")
    p.add_argument("dataset", metavar="MANIFEST",
                   help="JSONL/TSV manifest, folder of audio + .txt, or hf:NAME[:CONFIG]:SPLIT")
    flags.add_model_flags(p)
    flags.add_dataset_flags(p)
    g = p.add_argument_group("how to decode")
    flags.flag(g, "--mode", default="eval", choices=("eval", "user"),
               help="eval (default): greedy, no timestamps, no fallback, no prompt - right for clips under "
                    "30 s; user: transcribe's defaults (timestamps, fallback, prompt, long files cut at silences "
                    "and batched) - how long recordings must be measured. The decoding flags below change either.")
    flags.add_decoding_flags(p, None, language=False)
    g = p.add_argument_group("configurations")
    g.add_argument("--layers", default=None, metavar="L,L,...", help="encoder blocks to prune after (default: all)")
    g.add_argument("--sparsities", default=None, metavar="S,S,...", help="sparsities (default: 0.1,0.2,...,0.9)")
    g.add_argument("--scores", default="attention", metavar="NAME,...",
                   help=f"token scores, the first is the heatmaps' (default: attention; any of {', '.join(SCORES)})")
    g.add_argument("--reduce", choices=("merge", "drop", "both"), default="merge",
                   help="merge removed tokens into kept ones, drop them, or try both (default: merge)")
    g.add_argument("--adaptive", default=None, metavar="P,P,...",
                   help="also try adaptive configs (keep the fewest tokens holding a share P of the score) per layer")
    g.add_argument("--pad", default=None, metavar="N,N,...",
                   help="also try every config with padding pooled in runs of N, and pure padding pooling (-1:0 pad=N)")
    g.add_argument("--extra", action="append", default=[], metavar="SPEC",
                   help="an extra EAS spec, e.g. '1:0.3,2:0.5' or '2:0.5 score=keynorm drop' (repeatable)")
    g = p.add_argument_group("measurement and choice")
    g.add_argument("--budget", type=float, default=0.01,
                   help="largest WER increase vs dense: absolute (0.01 = 1 point) or, with --relative, a share of "
                        "dense WER (default: 0.01)")
    g.add_argument("--relative", action="store_true", help="the budget is a fraction of dense WER")
    g.add_argument("--confident", action="store_true",
                   help="pick only a configuration whose WER loss is within the budget at 95%% (the upper end "
                        "of its bootstrap interval), not just on average: for small datasets, e.g. a few long "
                        "recordings")
    g.add_argument("--role", choices=("auto", "short", "speech"), default="auto",
                   help="which windows the pick is for: short clips (the profile's 'eas') or windows full of "
                        "speech ('eas_speech'; each window then runs the one that fits it); auto (default): "
                        "speech when the files average over 30 s")
    g.add_argument("--repeats", type=int, default=1, help="timed passes per config; the median counts (default: 1)")
    g = p.add_argument_group("installing the pick")
    g.add_argument("--install", action="store_true",
                   help="make the profile what `--eas auto` runs for this model, device and compute type "
                        f"(refused for a search on fewer than {MIN_UTTERANCES} utterances or without a "
                        "significant result, unless --force)")
    g.add_argument("--force", action="store_true", help="with --install: install even so")
    flags.add_output_flags(p, "default: runs/search-MODEL-TIMESTAMP (or the newest unfinished search of the same "
                              "settings)")
    flags.flag(p, "--no-plots", action="store_true", help="skip the PNG plots")
    p.set_defaults(handler=run)


def parse_list(text: Optional[str], kind, flag: str) -> Optional[Tuple]:
    if text is None:
        return None
    try:
        values = tuple(kind(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise OptionsError(f"{flag} takes a comma-separated list of {kind.__name__}s, got {text!r}") from None
    if not values:
        raise OptionsError(f"{flag} is empty")
    return values


def grid_spec(args) -> GridSpec:
    sparsities = parse_list(args.sparsities, float, "--sparsities") or DEFAULT_SPARSITIES
    for s in sparsities:
        if not 0.0 <= s < 1.0:
            raise OptionsError(f"--sparsities: {s:g} is not in [0, 1)")
    scores = parse_list(args.scores, str, "--scores")
    for score in scores:
        if score not in SCORES:
            raise OptionsError(f"--scores: unknown score {score!r}: use one of {', '.join(SCORES)}")
    return GridSpec(layers=parse_list(args.layers, int, "--layers"),
                    sparsities=tuple(round(s, 6) for s in sparsities), scores=scores, reduce=args.reduce,
                    adaptive=parse_list(args.adaptive, float, "--adaptive") or (),
                    pad=parse_list(args.pad, int, "--pad") or (), extra=tuple(args.extra))


def run(args) -> int:
    if args.repeats < 1:
        raise OptionsError("--repeats must be >= 1")
    if args.budget < 0:
        raise OptionsError("--budget must be >= 0")
    if args.force and not args.install:
        raise OptionsError("--force goes with --install")
    spec = grid_spec(args)
    preset = EVAL_OPTIONS if args.mode == "eval" else TranscribeOptions()
    flags.transcribe_options(args, preset)  # bad decoding flags fail before the model loads
    utterances = load_dataset(args.dataset, limit=args.limit)  # dataset errors before the model loads
    whisper = flags.load_whisper(args)
    model = ModelInfo.of(whisper)
    candidates = build_grid(spec, model.n_layers)
    options = flags.transcribe_options(args, preset)
    if whisper.tokenizer.multilingual and args.language:
        options = options.replace(language=args.language)
    role = args.role
    if role == "auto":
        role = "speech" if mostly_long(utterances) else "short"
    settings = Settings(dataset=args.dataset, limit=args.limit, budget=args.budget, relative=args.relative,
                        repeats=args.repeats, language=args.language, options=options, role=role,
                        confident=args.confident)
    if args.output_dir:
        out_dir = Path(args.output_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise OptionsError(f"--output-dir {out_dir} exists and is not a directory")
    else:
        key = cache_key(model, settings.dataset, utterances, settings.limit, settings.options, settings.repeats)
        out_dir, _ = default_output_dir(model.name, key)
    log = flags.stderr_note(args.quiet)
    log(f"search: {len(candidates)} configs (dense measured at the start and the end) on {len(utterances)} "
        f"utterances, {model.name} on {model.device} {model.dtype}; results in {out_dir}")
    outcome = run_search(whisper, model, utterances, candidates, out_dir, settings,
                         show_progress=not args.quiet and sys.stderr.isatty(), log=log)
    written = write_outputs(outcome, out_dir, plots=not args.no_plots)
    print(report(outcome, written))
    profile = out_dir / "profile.json"
    if args.install:
        install(profile, args.force)
    else:
        print(f"not installed: `--eas auto` is unchanged; to run this pick by default: "
              f"whisper-eas profile install {profile}")
    return 0
