"""`whisper-eas transcribe`: audio files to text, subtitles, TSV or JSON.

Errors are one line on stderr and a non-zero exit; with several inputs the good ones are
transcribed and the bad ones listed at the end, those whose transcripts could not be written
(a full disk) among them. The output folder is checked for writing before any work, each file is
written atomically, and two inputs never share output names (`io/outputs.output_names`). The
input `-` is stdin."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ..errors import OptionsError
from ..io.audio import RawFormat, probe_duration
from ..io.outputs import FORMATS, WRITERS, output_names, write_file
from ..pipeline.options import TranscribeOptions
from . import flags
from .flags import flag

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(sub) -> None:
    t = sub.add_parser("transcribe", help="transcribe audio files",
                       description="Transcribe audio files (any format ffmpeg reads).")
    t.add_argument("files", nargs="+", metavar="FILE", help="audio files; - reads stdin")
    flags.add_model_flags(t)
    flags.add_decoding_flags(t, TranscribeOptions())
    flags.add_eas_flags(t)
    g = t.add_argument_group("input")
    flag(g, "--batch-size", type=int, default=1, help="windows decoded together across files")
    flag(g, "--raw", action="store_true", help="inputs are headerless s16le PCM")
    flag(g, "--sample-rate", type=int, default=16000, help="sample rate of --raw input")
    flag(g, "--channels", type=int, default=1, help="channels of --raw input")
    flag(t, "--output-format", "-f", default=None, choices=FORMATS + ("all",),
         help="default: txt on stdout; all when --output-dir is given")
    flags.add_output_flags(t, "write <stem>.<format> files here instead of stdout (where two inputs share a "
                              "stem, each keeps the folders that tell them apart: a/talk.txt, b/talk.txt)")
    t.set_defaults(handler=run)


def run(args) -> int:
    from tqdm import tqdm

    fmt = args.output_format or ("all" if args.output_dir else "txt")
    if fmt == "all" and not args.output_dir:
        raise OptionsError("--output-format all needs --output-dir")
    if args.batch_size < 1:
        raise OptionsError("--batch-size must be >= 1")
    raw = RawFormat(args.sample_rate, args.channels) if args.raw else None
    if args.files.count("-") > 1:
        raise OptionsError("- (stdin) can be read only once")
    if args.output_dir:  # before any work: a folder we can write to, and a distinct name per input
        out_dir = _writable_dir(Path(args.output_dir))
        names = output_names(args.files)

    whisper, options, settings = prepare(args)

    show = not args.quiet and sys.stderr.isatty()
    total = sum(probe_duration(f, raw) or 0.0 for f in args.files if os.path.isfile(f)) if show else 0
    bar = tqdm(total=round(total, 1), unit="s", unit_scale=False, disable=not show, file=sys.stderr,
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]")
    failures = []
    stdout_many = len(args.files) > 1 and not args.output_dir
    inputs = [sys.stdin.buffer if f == "-" else f for f in args.files]
    results = whisper.transcribe_batch(inputs, options, batch_size=args.batch_size, raw=raw,
                                       progress=lambda seconds: bar.update(seconds))
    if not args.output_dir:  # batches finish out of order; stdout keeps the order of the inputs
        results = _in_input_order(results)
    for result in results:
        name = args.files[result.index]
        if result.error:
            failures.append(result.error)
            continue
        for warning in result.info.warnings:  # e.g. a truncated file: transcribed up to the damage
            bar.clear()
            print(f"whisper-eas: warning: {_one_line(warning)}", file=sys.stderr)
        formats = FORMATS if fmt == "all" else (fmt,)
        if args.output_dir:
            try:
                for f in formats:
                    target = out_dir / f"{names[result.index]}.{f}"
                    target.parent.mkdir(parents=True, exist_ok=True)  # a/talk.txt
                    write_file(target, f, result.segments, info=result.info, settings=settings)
            except OSError as e:  # a full disk: listed with the failures, the rest of the batch still runs
                failures.append(f"{name}: transcribed, but {target} cannot be written ({e.strerror or e})")
        else:
            if stdout_many:
                print(f"==> {name} <==", flush=True)
            bar.clear()
            WRITERS[fmt](result.segments, sys.stdout, info=result.info, settings=settings)
            sys.stdout.flush()
    bar.close()
    return report_failures(failures, len(args.files))


def prepare(args):
    """(model, options, settings) for the model and decoding flags: the model loaded, the EAS
    configuration resolved, the options checked against the model, and the settings the JSON
    output records. Shared with `batch`, so that both transcribe alike."""
    flags.transcribe_options(args)  # bad decoding flags fail before the model loads
    whisper = flags.load_whisper(args)
    eas, profile = flags.resolve_eas(args, whisper, flags.stderr_note(args.quiet))
    if args.language:
        try:
            whisper.tokenizer.with_language(args.language, args.task)
        except OptionsError as e:
            raise OptionsError(f"--language: {e}") from None
    elif args.task == "translate" and not whisper.tokenizer.multilingual:
        raise OptionsError("--task translate needs a multilingual model (e.g. --model base)")
    options = flags.transcribe_options(args, language=args.language, eas=eas)
    settings = {"model": args.model, "device": args.device, "compute_type": whisper.compute_type,
                **{k: v for k, v in _settings(options).items()},
                "eas": None if eas is None else eas.describe(),
                "profile": None if profile is None else str(profile.path)}
    return whisper, options, settings


def report_failures(failures, total: int) -> int:
    """The exit status of a run over `total` inputs, and on stderr the `failures` (one message
    each): one error line for a single input, else a count and the list."""
    if failures and total == 1:  # a single input: one line, like any other error
        print(f"whisper-eas: error: {_one_line(failures[0])}", file=sys.stderr)
        return EXIT_FAILED
    if failures:
        ok = total - len(failures)
        print(f"whisper-eas: {len(failures)} of {total} files failed ({ok} transcribed):", file=sys.stderr)
        for message in failures:
            print(f"  {_one_line(message)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# the decoding settings the JSON output records (the same keys as before the options were one type)
SETTINGS = ("language", "task", "beam_size", "best_of", "patience", "length_penalty", "temperature",
            "compression_ratio_threshold", "log_prob_threshold", "no_speech_threshold",
            "condition_on_previous_text", "initial_prompt", "suppress_tokens", "without_timestamps",
            "word_timestamps", "seed")


def _settings(options: TranscribeOptions) -> dict:
    return {k: getattr(options, k) for k in SETTINGS}


def _writable_dir(out_dir: Path) -> Path:
    """The output folder, created if need be, once a file can be written in it: a read-only or
    unusable folder is found before the model loads, not after the first file was transcribed."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OptionsError(f"--output-dir {out_dir} exists and is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out_dir, prefix=".whisper-eas-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OptionsError(f"--output-dir {out_dir}: cannot write there ({e.strerror or e})") from None
    return out_dir


def _in_input_order(results):
    waiting, next_index = {}, 0
    for result in results:
        waiting[result.index] = result
        while next_index in waiting:
            yield waiting.pop(next_index)
            next_index += 1


def _one_line(text: str) -> str:
    return " ".join(str(text).split())
