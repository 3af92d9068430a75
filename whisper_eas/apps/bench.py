"""`whisper-eas bench`: speed side by side with the dense engine and with peer engines (see
evaluation/bench.py for how each engine runs)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import ManifestError, OptionsError
from ..evaluation import bench
from ..evaluation.manifest import Utterance, load_dataset, mostly_long
from ..hardware import describe as describe_machine
from . import flags


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="speed side by side with the dense engine and peers",
                       description=bench.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", metavar="MANIFEST", help="manifest, folder of audio + .txt, or one audio file")
    flags.add_model_flags(p)
    flags.add_dataset_flags(p)
    g = p.add_argument_group("engines")
    flags.flag(g, "--engines", default=None,
               help=f"comma-separated; a bare 'ours' runs our engine in --compute-type (default on CPU: "
                    f"{bench.DEFAULT_ENGINES}; for long files: {bench.DEFAULT_LONG_ENGINES}; on CUDA: "
                    f"{bench.DEFAULT_CUDA_ENGINES})")
    flags.flag(g, "--mode", default="auto", choices=("auto",) + bench.MODES,
               help="eval: greedy without timestamps (WER as usually reported); user: each engine's "
                    "transcribe() defaults, timestamps and fallback (how long files must be measured); "
                    "auto (default): user when the files average over 30 s, else eval")
    flags.flag(g, "--baseline", default=None,
               help="engine the speed ratios are against (default: faster-whisper:int8 on CPU, float16 on CUDA)")
    flags.flag(g, "--json", default=None, help="write all measurements here")
    flags.flag(g, "--markdown", default=None, help="write the table here")
    flags.add_output_flags(p, "write bench.json and table.md here")
    p.set_defaults(handler=run)


def run(args) -> int:
    if args.threads < 0:
        raise OptionsError("--threads must be >= 0")
    if os.path.isfile(args.dataset) and not args.dataset.endswith((".jsonl", ".tsv", ".json", ".ndjson")):
        utterances = [Utterance(id=Path(args.dataset).stem, audio=os.path.abspath(args.dataset), text="")]
    else:
        utterances = load_dataset(args.dataset, limit=args.limit)
    if any(u.start is not None or u.end is not None for u in utterances):
        raise ManifestError("bench times whole files: the manifest must not cut utterances with start/end")
    files = [u.audio for u in utterances]
    flags.check_device(args.device)
    cuda = args.device.startswith("cuda")
    threads = args.threads or os.cpu_count() or 1  # every engine gets the same explicit number
    mode = args.mode
    if mode == "auto":
        mode = "user" if mostly_long(utterances) else "eval"
    spec = args.engines or (bench.DEFAULT_CUDA_ENGINES if cuda else
                            bench.DEFAULT_LONG_ENGINES if mode == "user" else bench.DEFAULT_ENGINES)
    baseline = args.baseline or ("faster-whisper:float16" if cuda else "faster-whisper:int8")
    engines = [e.strip() for e in spec.split(",") if e.strip()]
    note = flags.stderr_note(args.quiet)
    # "ours:float32:-1:0 pad=16" contains commas only inside EAS specs with stages; allow ';' there
    runs = []
    for engine in engines:
        engine = engine.replace(";", ",")
        if engine.split("+")[0] == "ours":
            engine = f"ours:{args.compute_type}" + engine[len("ours"):]
        note(f"bench: {engine} ...")
        runs.append(bench.run_engine(engine, args.model, files, threads, args.device, mode))
    table = bench.render_table(runs, [u.text for u in utterances], len(files), baseline, language=args.language)
    how = ("greedy, no timestamps" if mode == "eval" else
           "greedy, each engine's transcribe() defaults (timestamps, fallback, prompt)")
    header = (f"{args.model}, {len(files)} files, {how}, {args.device}; "
              f"{describe_machine(args.device, threads)}")
    print(header)
    print(table)
    measurements = {"header": header, "files": files, "runs": [r.__dict__ for r in runs]}
    markdown, json_path = args.markdown, args.json
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        markdown, json_path = markdown or out / "table.md", json_path or out / "bench.json"
    if markdown:
        Path(markdown).write_text(f"{header}\n\n{table}\n")
    if json_path:
        Path(json_path).write_text(json.dumps(measurements, indent=1))
    failed = [r for r in runs if r.note.startswith("failed")]
    if failed:  # like a batch of files: the table has every engine that ran, the failures are listed
        print(f"whisper-eas: {len(failed)} of {len(runs)} engines failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.engine}: {r.note[len('failed: '):]}", file=sys.stderr)
        return 1
    return 0
