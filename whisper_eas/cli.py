"""The `whisper-eas` command line: transcribe, eval, search, bench.

Flags follow openai-whisper and faster-whisper (both `--beam-size` and `--beam_size` work).
Errors are one line on stderr and a non-zero exit; with several inputs the good ones are
transcribed and the bad ones listed at the end."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import List, Optional

from .errors import OptionsError, UserError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _flag(parser, *names, **kwargs):
    """Every --long-flag also answers to --long_flag, as openai-whisper users type it."""
    aliases = ["--" + n[2:].replace("-", "_") for n in names if n.startswith("--") and "-" in n[2:]]
    return parser.add_argument(*names, *aliases, **kwargs)


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional_float(text: str) -> Optional[float]:
    return None if text.strip().lower() in ("none", "off") else float(text)


def _add_model_flags(p) -> None:
    _flag(p, "--model", default="tiny.en", help="bundled name (tiny.en, base), a model directory, "
          "an openai-whisper .pt, or a Hugging Face id (online only) (default: tiny.en)")
    _flag(p, "--device", default="cpu", help="cpu or cuda (default: cpu)")
    _flag(p, "--compute-type", default="default",
          help="default (float32 on CPU, float16 on CUDA), float32, bfloat16, int8 (CPU)")
    _flag(p, "--threads", type=int, default=0, help="CPU threads (default: all cores)")


def _add_eas_flags(p) -> None:
    g = p.add_argument_group("early attentive sparsification (EAS)")
    _flag(g, "--eas", default=None, metavar="L:S|auto|off",
          help="prune encoder tokens after block L with sparsity S, e.g. 1:0.5 or 1:0.3,2:0.5; "
               "'auto' (the default) uses the saved search profile for this model, device and compute "
               "type (dense if there is none); 'off' runs dense")
    _flag(g, "--eas-score", default=None, help="token importance: attention (default), attention-offdiag, "
          "attention-maxhead, keynorm, random, stride, truncate")
    _flag(g, "--eas-adaptive", type=float, default=None, metavar="P",
          help="keep the fewest tokens holding a share P of the score mass, per window")
    _flag(g, "--eas-pad", type=int, default=None, metavar="N",
          help="pool padding tokens in runs of N and apply the sparsity to speech tokens only")
    _flag(g, "--eas-reduce", choices=("merge", "drop"), default=None,
          help="merge removed tokens into kept ones (default) or drop them")
    _flag(g, "--profile", default=None, metavar="FILE", help="run the EAS configuration of a search profile")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="whisper-eas", description="Fast offline Whisper transcription "
                                     "with early attentive sparsification of the encoder.")
    parser.add_argument("--version", action="version", version=f"whisper-eas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("transcribe", help="transcribe audio files",
                       description="Transcribe audio files (any format ffmpeg reads).")
    t.add_argument("files", nargs="+", metavar="FILE")
    _add_model_flags(t)
    _flag(t, "--language", default=None, help="language code or name (default: detect; English for .en models)")
    _flag(t, "--task", default="transcribe", choices=("transcribe", "translate"))
    _flag(t, "--beam-size", type=int, default=1, help="beams for beam search; 1 = greedy (default: 1)")
    _flag(t, "--best-of", type=int, default=5, help="samples when falling back to temperature > 0")
    _flag(t, "--patience", type=float, default=None)
    _flag(t, "--length-penalty", type=float, default=None)
    _flag(t, "--temperature", type=float, default=0.0)
    _flag(t, "--temperature-increment-on-fallback", type=_optional_float, default=0.2,
          help="step up the temperature when decoding fails the thresholds ('none' disables)")
    _flag(t, "--compression-ratio-threshold", type=_optional_float, default=2.4)
    _flag(t, "--logprob-threshold", type=_optional_float, default=-1.0)
    _flag(t, "--no-speech-threshold", type=_optional_float, default=0.6)
    _flag(t, "--condition-on-previous-text", type=_bool, default=True)
    _flag(t, "--initial-prompt", default=None)
    _flag(t, "--suppress-tokens", default="-1", help="comma-separated token ids; -1: non-speech symbols")
    _flag(t, "--without-timestamps", action="store_true", help="decode without timestamp tokens")
    _flag(t, "--word-timestamps", type=_bool, nargs="?", const=True, default=False)
    _flag(t, "--output-format", "-f", default=None, choices=("txt", "srt", "vtt", "tsv", "json", "all"),
          help="default: txt on stdout; all when --output-dir is given")
    _flag(t, "--output-dir", "-o", default=None, help="write <stem>.<format> files here instead of stdout")
    _flag(t, "--batch-size", type=int, default=1, help="windows decoded together across files")
    _flag(t, "--raw", action="store_true", help="inputs are headerless s16le PCM")
    _flag(t, "--sample-rate", type=int, default=16000, help="sample rate of --raw input")
    _flag(t, "--channels", type=int, default=1, help="channels of --raw input")
    _flag(t, "--quiet", "-q", action="store_true", help="no progress bar or notes")
    _add_eas_flags(t)
    t.set_defaults(handler=cmd_transcribe)

    from .evaluation.bench import add_bench_parser
    from .evaluation.evaluate import add_eval_parser
    from .evaluation.search import add_search_parser

    add_eval_parser(sub, _add_model_flags, _add_eas_flags)
    add_search_parser(sub, _add_model_flags)
    add_bench_parser(sub, _add_model_flags)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # usage errors: argparse prints them and exits with 2
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("whisper-eas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except UserError as e:  # the user's to fix: one line, exit 2
        print(f"whisper-eas: error: {_one_line(str(e) or type(e).__name__)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # a bug: one line, exit 1; the traceback with --verbose or WHISPER_EAS_DEBUG=1
        if getattr(args, "verbose", False) or os.environ.get("WHISPER_EAS_DEBUG"):
            traceback.print_exc()
        print(f"whisper-eas: error: {_one_line(f'{type(e).__name__}: {e}')}", file=sys.stderr)
        return EXIT_FAILED


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------

def resolve_eas(args, loaded_name: str, fingerprint: str, device: str, quiet: bool,
                compute_type: Optional[str] = None, n_layers: Optional[int] = None):
    """The EAS configuration the flags ask for (None: dense). Without --eas or --profile the
    saved profile for this model and device is used ('auto'), silently; dense if there is none."""
    from dataclasses import replace

    from .network.eas import parse_eas
    from .io.profiles import find_profile, load_profile

    extras = {k: v for k, v in dict(score=args.eas_score, adaptive=args.eas_adaptive, pad_stride=args.eas_pad,
                                    merge=None if args.eas_reduce is None else args.eas_reduce == "merge").items()
              if v is not None}
    if args.profile and args.eas is not None:
        raise OptionsError("give either --eas or --profile, not both")
    if extras and args.eas is None and not args.profile:
        raise OptionsError("--eas-score/--eas-adaptive/--eas-pad/--eas-reduce need --eas L:S (or a profile)")
    if args.profile:
        config = load_profile(args.profile).eas
    elif args.eas is None or args.eas == "auto":
        profile = find_profile(loaded_name, fingerprint, device, compute_type, n_layers)
        explicit = args.eas == "auto"
        if profile is None:
            if explicit and not quiet:
                print(f"whisper-eas: no saved EAS profile for {loaded_name} on {device}; running dense "
                      f"(make one with `whisper-eas search`)", file=sys.stderr)
            return None
        config = profile.eas
        if explicit and not quiet:
            print(f"whisper-eas: EAS profile {profile.path}: {config.describe()}", file=sys.stderr)
    else:
        config = parse_eas(args.eas)
    if config is None:
        if extras:
            raise OptionsError("--eas-score/--eas-adaptive/--eas-pad/--eas-reduce need --eas L:S, not dense")
        return None
    return replace(config, **extras) if extras else config


def _temperatures(args) -> tuple:
    if args.temperature_increment_on_fallback is None:
        return (args.temperature,)
    step = args.temperature_increment_on_fallback
    if step <= 0:
        raise OptionsError("--temperature-increment-on-fallback must be > 0 (or 'none')")
    temps, t = [], args.temperature
    while t <= 1.0 + 1e-6:
        temps.append(round(t, 4))
        t += step
    return tuple(temps) or (args.temperature,)


def _suppress(text: str) -> tuple:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise OptionsError(f"--suppress-tokens takes comma-separated integers, got {text!r}") from None


def load_whisper(args):
    from .pipeline.whisper import WhisperModel

    if args.threads < 0:
        raise OptionsError("--threads must be >= 0")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise OptionsError("--device cuda: no CUDA device is available here (use --device cpu)")
    return WhisperModel(args.model, device=args.device, compute_type=args.compute_type, cpu_threads=args.threads)


def cmd_transcribe(args) -> int:
    from tqdm import tqdm

    from .io.audio import RawFormat, probe_duration
    from .io.outputs import WRITERS

    fmt = args.output_format or ("all" if args.output_dir else "txt")
    if fmt == "all" and not args.output_dir:
        raise OptionsError("--output-format all needs --output-dir")
    if args.batch_size < 1:
        raise OptionsError("--batch-size must be >= 1")
    if args.beam_size < 1 or args.best_of < 1:
        raise OptionsError("--beam-size and --best-of must be >= 1")
    raw = RawFormat(args.sample_rate, args.channels) if args.raw else None
    if args.output_dir:
        out_dir = Path(args.output_dir)
        if out_dir.exists() and not out_dir.is_dir():
            raise OptionsError(f"--output-dir {out_dir} exists and is not a directory")
        out_dir.mkdir(parents=True, exist_ok=True)

    whisper = load_whisper(args)
    eas = resolve_eas(args, whisper.loaded.name, whisper.loaded.fingerprint, args.device, args.quiet,
                      whisper.compute_type)
    if eas is not None:
        eas.check_layers(whisper.model.dims.n_audio_layer)
    options = dict(
        language=args.language, task=args.task, beam_size=args.beam_size, best_of=args.best_of,
        patience=args.patience, length_penalty=args.length_penalty, temperature=_temperatures(args),
        compression_ratio_threshold=args.compression_ratio_threshold, log_prob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold, condition_on_previous_text=args.condition_on_previous_text,
        initial_prompt=args.initial_prompt, suppress_tokens=_suppress(args.suppress_tokens),
        without_timestamps=args.without_timestamps, word_timestamps=args.word_timestamps, eas=eas,
    )
    if args.language:
        from .network.tokenizer import language_code

        try:
            language_code(args.language)
            whisper.tokenizer.with_language(args.language, args.task)
        except ValueError as e:
            raise OptionsError(f"--language: {e}") from None
    elif args.task == "translate" and not whisper.tokenizer.multilingual:
        raise OptionsError("--task translate needs a multilingual model (e.g. --model base)")
    settings = {"model": args.model, "device": args.device, "compute_type": args.compute_type,
                **{k: v for k, v in options.items() if k != "eas"},
                "eas": None if eas is None else eas.describe()}

    show = not args.quiet and sys.stderr.isatty()
    total = sum(probe_duration(f, raw) or 0.0 for f in args.files if os.path.isfile(f)) if show else 0
    bar = tqdm(total=round(total, 1), unit="s", unit_scale=False, disable=not show, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    failures = []
    stdout_many = len(args.files) > 1 and not args.output_dir
    results = whisper.transcribe_batch(args.files, batch_size=args.batch_size, raw=raw,
                                       progress=lambda seconds: bar.update(seconds), **options)
    if not args.output_dir:  # batches finish out of order; stdout keeps the order of the inputs
        results = _in_input_order(results)
    for result in results:
        name = str(result.source)
        if result.error:
            failures.append(result.error)
            continue
        formats = ("txt", "srt", "vtt", "tsv", "json") if fmt == "all" else (fmt,)
        if args.output_dir:
            stem = Path(name).stem
            for f in formats:
                with open(Path(args.output_dir) / f"{stem}.{f}", "w", encoding="utf-8") as fh:
                    WRITERS[f](result.segments, fh, info=result.info, settings=settings)
        else:
            if stdout_many:
                print(f"==> {name} <==", flush=True)
            bar.clear()
            WRITERS[fmt](result.segments, sys.stdout, info=result.info, settings=settings)
            sys.stdout.flush()
    bar.close()
    if failures and len(args.files) == 1:  # a single input: one line, like any other error
        print(f"whisper-eas: error: {_one_line(failures[0])}", file=sys.stderr)
        return EXIT_FAILED
    if failures:
        ok = len(args.files) - len(failures)
        print(f"whisper-eas: {len(failures)} of {len(args.files)} files failed ({ok} transcribed):", file=sys.stderr)
        for message in failures:
            print(f"  {_one_line(message)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _in_input_order(results):
    waiting, next_index = {}, 0
    for result in results:
        waiting[result.index] = result
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1


if __name__ == "__main__":
    sys.exit(main())
