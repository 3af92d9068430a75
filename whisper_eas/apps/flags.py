"""The flag groups, declared once and shared by every command, and what they build: the model
(`load_whisper`), the EAS configuration (`resolve_eas`) and the `TranscribeOptions`
(`transcribe_options`).

Flags follow openai-whisper and faster-whisper; every --long-flag also answers to --long_flag,
as openai-whisper users type it. The defaults of the decoding flags are the fields of the preset
a command decodes with (`TranscribeOptions()` for transcribe, `EVAL_OPTIONS` for eval and search),
so a default lives in one place: options.py."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence, Tuple, Union

from ..errors import OptionsError
from ..io.profiles import Profile, load_profile
from ..network.eas import EASConfig, EASPolicy, parse_eas, with_overrides
from ..network.quantize import default_compute_type
from ..pipeline.options import TranscribeOptions


def flag(parser, *names, **kwargs):
    """Every --long-flag also answers to --long_flag, as openai-whisper users type it."""
    aliases = ["--" + n[2:].replace("-", "_") for n in names if n.startswith("--") and "-" in n[2:]]
    return parser.add_argument(*names, *aliases, **kwargs)


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def optional_float(text: str) -> Optional[float]:
    return None if text.strip().lower() in ("none", "off") else float(text)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


# -- the groups -------------------------------------------------------------------------------

def add_model_flags(p) -> None:
    g = p.add_argument_group("model")
    flag(g, "--model", default="tiny.en", help="bundled name (tiny.en, base), a model directory, "
         "an openai-whisper .pt, or a Hugging Face id (online only) (default: tiny.en)")
    flag(g, "--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    flag(g, "--compute-type", default="default", metavar="TYPE",
         help="default: int8 on CPU (int8 decoder; encoder in bfloat16 where the CPU has it natively, "
              f"else float32: here {default_compute_type('cpu')}), float16 on CUDA; or float32, bfloat16, "
              "int8, int8_float32, int8_bfloat16, float16/int8_float16 (CUDA)")
    flag(g, "--threads", type=int, default=0, help="CPU threads (default: 0, all cores)")


def add_eas_flags(p) -> None:
    g = p.add_argument_group("early attentive sparsification (EAS)")
    flag(g, "--eas", default=None, metavar="L:S|auto|off",
         help="prune encoder tokens after block L with sparsity S, e.g. 1:0.5 or 1:0.3,2:0.5; "
              "'auto' (the default) runs the installed profile for this model, device and compute type "
              "(see `whisper-eas profile list`; dense if there is none); 'off' runs dense")
    flag(g, "--eas-score", default=None, help="token importance: attention (default), attention-offdiag, "
         "attention-maxhead, keynorm, random, stride, truncate")
    flag(g, "--eas-adaptive", type=float, default=None, metavar="P",
         help="keep the fewest tokens holding a share P of the score mass, per window")
    flag(g, "--eas-pad", type=int, default=None, metavar="N",
         help="pool padding tokens in runs of N and apply the sparsity to speech tokens only")
    flag(g, "--eas-reduce", choices=("merge", "drop"), default=None,
         help="merge removed tokens into kept ones (default) or drop them")
    flag(g, "--profile", default=None, metavar="FILE", help="run the EAS configuration of a search profile")


class _Unset:
    """The default of a decoding flag whose value comes from a preset chosen at run time (--mode)."""

    def __repr__(self) -> str:
        return "(the mode's preset)"


UNSET = _Unset()


def add_decoding_flags(p, preset: Optional[TranscribeOptions], language: bool = True) -> None:
    """The decoding flags, with `preset`'s values as their defaults (None: no defaults here; a
    flag left out takes the value of the preset `transcribe_options` is given). `language`:
    declare --language here (transcribe); eval and search take it with the dataset flags instead."""
    g = p.add_argument_group("decoding")

    def default(name):
        return UNSET if preset is None else getattr(preset, name)

    if language:
        flag(g, "--language", default=default("language"),
             help="language code or name (default: detect; English for .en models)")
    flag(g, "--task", default=default("task"), choices=("transcribe", "translate"))
    flag(g, "--beam-size", type=int, default=default("beam_size"),
         help=f"beams for beam search; 1 = greedy (default: {default('beam_size')})")
    flag(g, "--best-of", type=int, default=default("best_of"), help="samples when falling back to temperature > 0")
    flag(g, "--patience", type=float, default=default("patience"))
    flag(g, "--length-penalty", type=float, default=default("length_penalty"))
    temps = None if preset is None else preset.temperature
    flag(g, "--temperature", type=float, default=UNSET if temps is None else temps[0])
    flag(g, "--temperature-increment-on-fallback", type=optional_float,
         default=UNSET if temps is None else fallback_step(temps),
         help="step up the temperature when decoding fails the thresholds ('none' disables)")
    flag(g, "--seed", type=int, default=default("seed"),
         help=f"of the draws when falling back to temperature > 0: the same seed, the same output (default: {default('seed')})")
    flag(g, "--compression-ratio-threshold", type=optional_float, default=default("compression_ratio_threshold"))
    flag(g, "--logprob-threshold", type=optional_float, default=default("log_prob_threshold"))
    flag(g, "--no-speech-threshold", type=optional_float, default=default("no_speech_threshold"))
    flag(g, "--condition-on-previous-text", type=parse_bool, default=default("condition_on_previous_text"))
    flag(g, "--initial-prompt", default=default("initial_prompt"))
    flag(g, "--suppress-tokens", default=UNSET if preset is None else ",".join(map(str, preset.suppress_tokens)),
         help="comma-separated token ids; -1: non-speech symbols")
    flag(g, "--without-timestamps", type=parse_bool, nargs="?", const=True, default=default("without_timestamps"),
         help="decode without timestamp tokens")
    flag(g, "--word-timestamps", type=parse_bool, nargs="?", const=True, default=default("word_timestamps"))


def add_dataset_flags(p) -> None:
    g = p.add_argument_group("dataset")
    flag(g, "--limit", type=positive_int, default=None, help="first N utterances only")
    flag(g, "--language", default="en",
         help="language of the references (the normalizer), and of decoding with a multilingual model (default: en)")


def add_output_flags(p, output_dir_help: Optional[str]) -> None:
    """--output-dir/-o (when the command writes files: `output_dir_help` says what), --quiet/-q,
    --verbose/-v."""
    g = p.add_argument_group("output")
    if output_dir_help:
        flag(g, "--output-dir", "-o", default=None, help=output_dir_help)
    flag(g, "--quiet", "-q", action="store_true", help="no progress bar or notes")
    flag(g, "--verbose", "-v", action="store_true",
         help="say which EAS profile runs, and show the traceback of an unexpected error")


# -- what they build --------------------------------------------------------------------------

def check_device(device: str) -> None:
    """One message for a CUDA device that is not there, for every command."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise OptionsError(f"--device {device}: no CUDA device is available")


def load_whisper(args):
    """The model the model flags name (`eas="auto"`: its profile is looked up once, here)."""
    from ..pipeline import whisper  # looked up at call time, so tests can stand in a loaded model

    if args.threads < 0:
        raise OptionsError("--threads must be >= 0")
    check_device(args.device)
    return whisper.WhisperModel(args.model, device=args.device, compute_type=args.compute_type,
                                cpu_threads=args.threads)


def resolve_eas(args, whisper, note: Callable[[str], None]) -> Tuple[Union[None, EASConfig, EASPolicy], Optional[Profile]]:
    """The EAS configuration the flags ask for (None: dense), and the profile it came from (None:
    none). Without --eas or --profile the installed profile for this model and device runs
    ('auto'); `note` is told which (always for an explicit `--eas auto`, else with --verbose)."""
    extras = {k: v for k, v in dict(score=args.eas_score, adaptive=args.eas_adaptive, pad_stride=args.eas_pad,
                                    merge=None if args.eas_reduce is None else args.eas_reduce == "merge").items()
              if v is not None}
    if args.profile and args.eas is not None:
        raise OptionsError("give either --eas or --profile, not both")
    if extras and args.eas is None and not args.profile:
        raise OptionsError("--eas-score/--eas-adaptive/--eas-pad/--eas-reduce need --eas L:S (or a profile)")
    profile = None
    tell = args.eas == "auto" or getattr(args, "verbose", False)
    if args.profile:
        profile = load_profile(args.profile)
        profile.check(whisper.loaded.name, whisper.loaded.fingerprint, whisper.model.dims.n_audio_layer)
        config = profile.policy
    elif args.eas is None or args.eas == "auto":
        profile = whisper.auto_profile()
        if profile is None:
            if tell:
                note(f"no EAS profile installed for {whisper.loaded.name} on {whisper.device.type} "
                     f"{whisper.compute_type}; running dense (see `whisper-eas profile --help`)")
            return None, None
        config = profile.policy
    else:  # the EAS flags combined with the spec first, then validated once: `--eas=-1:0.5 --eas-score stride`
        config = parse_eas(args.eas, **extras)
        if config is None and extras:
            raise OptionsError("--eas-score/--eas-adaptive/--eas-pad/--eas-reduce need --eas L:S, not dense")
    if config is None:
        return None, profile
    if profile is not None:  # the flags on top of the profile's configuration, validated as a whole
        config = with_overrides(config, **extras)
    config.check_layers(whisper.model.dims.n_audio_layer)
    if profile is not None and tell:
        note(f"EAS profile {profile.path}: {config.describe()}")
    return config, profile


def temperatures(args, preset: TranscribeOptions = TranscribeOptions()) -> Tuple[float, ...]:
    """The temperatures the flags ask for; a flag left out (UNSET) takes `preset`'s value."""
    first, step = args.temperature, args.temperature_increment_on_fallback
    if first is UNSET and step is UNSET:
        return preset.temperature
    if first is UNSET:
        first = preset.temperature[0]
    if step is UNSET:
        step = fallback_step(preset.temperature)
    return fallback_temperatures(first, step)


def fallback_step(temperatures: Sequence[float]) -> Optional[float]:
    """The step between the temperatures tried in turn (None: a single temperature, no fallback)."""
    return round(temperatures[1] - temperatures[0], 4) if len(temperatures) > 1 else None


FALLBACK_STEP = fallback_step(TranscribeOptions().temperature)


def fallback_temperatures(start: float, step: Optional[float] = FALLBACK_STEP) -> Tuple[float, ...]:
    """The temperatures tried in turn from `start` (`--temperature`), up by `step`
    (`--temperature-increment-on-fallback`; None: `start` only) while <= 1, as openai-whisper
    tries them. The server builds a request's schedule here too."""
    if step is None:
        return (start,)
    if step <= 0:
        raise OptionsError("--temperature-increment-on-fallback must be > 0 (or 'none')")
    temps, t = [], start
    while t <= 1.0 + 1e-6:
        temps.append(round(t, 4))
        t += step
    return tuple(temps) or (start,)


def suppress_tokens(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise OptionsError(f"--suppress-tokens takes comma-separated integers, got {text!r}") from None


def transcribe_options(args, preset: TranscribeOptions = TranscribeOptions(), **extra) -> TranscribeOptions:
    """The TranscribeOptions the decoding flags ask for, on top of `preset` (a flag declared
    without a default and left out keeps the preset's value); `extra` (e.g. the resolved eas, a
    language) goes on top. Bad values are OptionsErrors naming the flag."""
    values = dict(
        task=args.task, beam_size=args.beam_size, best_of=args.best_of, patience=args.patience,
        length_penalty=args.length_penalty, temperature=temperatures(args, preset), seed=args.seed,
        compression_ratio_threshold=args.compression_ratio_threshold, log_prob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold, condition_on_previous_text=args.condition_on_previous_text,
        initial_prompt=args.initial_prompt,
        suppress_tokens=args.suppress_tokens if args.suppress_tokens is UNSET else suppress_tokens(args.suppress_tokens),
        without_timestamps=args.without_timestamps, word_timestamps=args.word_timestamps)
    values = {k: v for k, v in values.items() if v is not UNSET}
    for name, flag_name in (("beam_size", "--beam-size"), ("best_of", "--best-of")):
        if values.get(name, 1) < 1:
            raise OptionsError(f"{flag_name} must be >= 1")
    return preset.replace(**{**values, **extra})


def stderr_note(quiet: bool) -> Callable[[str], None]:
    """A one-line note on stderr ('whisper-eas: ...'), silent with --quiet."""
    if quiet:
        return lambda text: None
    return lambda text: print(f"whisper-eas: {text}", file=sys.stderr)
