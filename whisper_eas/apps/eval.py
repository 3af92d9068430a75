"""`whisper-eas eval`: WER, CER and runtime of one configuration on a dataset."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..evaluation.evaluate import audio_for, evaluate
from ..evaluation.manifest import load_dataset
from ..pipeline.options import EVAL_OPTIONS
from . import flags


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="WER/CER and speed on a dataset",
                       description="Transcribe a dataset (JSONL/TSV manifest, a folder of audio + .txt, or "
                                   "hf:NAME[:CONFIG]:SPLIT) and report WER, CER and runtime. Decoding is "
                                   "greedy without fallback or timestamps unless the decoding flags say otherwise.")
    p.add_argument("dataset", metavar="MANIFEST")
    flags.add_model_flags(p)
    flags.add_dataset_flags(p)
    flags.add_decoding_flags(p, EVAL_OPTIONS, language=False)
    flags.add_eas_flags(p)
    flags.add_output_flags(p, "write per-utterance results (utterances.jsonl) and summary.json here")
    p.set_defaults(handler=run)


def run(args) -> int:
    from tqdm import tqdm

    flags.transcribe_options(args, EVAL_OPTIONS)  # bad decoding flags fail before the model loads
    utterances = load_dataset(args.dataset, limit=args.limit)
    whisper = flags.load_whisper(args)
    eas, _ = flags.resolve_eas(args, whisper, flags.stderr_note(args.quiet))
    language = args.language
    options = flags.transcribe_options(args, EVAL_OPTIONS, eas=eas)
    if whisper.tokenizer.multilingual and language:
        options = options.replace(language=language)
    bar = tqdm(total=len(utterances), unit="utt", disable=args.quiet or not sys.stderr.isatty(), file=sys.stderr)
    list(whisper.transcribe(audio_for(utterances[0]), options)[0])  # warm-up, untimed
    result = evaluate(whisper, utterances, options, language=language, progress=lambda: bar.update(1))
    bar.close()
    summary = {"model": args.model, "eas": None if eas is None else eas.describe(), "dataset": args.dataset,
               **result.summary()}
    if args.output_dir:
        out = Path(args.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        result.write_jsonl(out / "utterances.jsonl")
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
    return 0
