"""Speed side by side with the dense engine and with peer engines.

Every engine runs in its own subprocess, one after another on the same files, so that peak RSS
is the engine's own and no engine warms the caches for the next. Each one loads (timed: the
start-up), transcribes one file untimed (warm-up), then transcribes every file (audio decoding
included) and reports wall time, generated tokens, texts and peak RSS. WER is computed here, with
the same normalizer.

Two ways of decoding (`mode`):
  eval  greedy, no timestamps, no fallback, no prompt: how WER is usually reported, and right
        for clips under 30 s (one window each)
  user  greedy, otherwise each engine's own transcribe() defaults: timestamps, seeking,
        temperature fallback, the previous text as prompt (ours: cut at silences and batched).
        Long files must be measured this way: without timestamps a decoder seeks blindly by
        30 s and cuts words, and every engine loses a third of the words.

Engines (`--engines`, comma-separated; `+` adds a variant):
  ours[:COMPUTE[:EAS]]      our engine, e.g. ours:float32, ours:int8:auto, ours:float32:-1:0 pad=16
        +sequential         openai-whisper's sequential windows (chunking="off") instead of chunks
        +batchN             N windows of a file decode together (user mode; default 8)
        +files              all the files in one call, as `whisper-eas transcribe FILE...` runs
                            them: the windows of several files share batches (default: one
                            `transcribe()` per file, as the Python API and the peers run)
  faster-whisper:TYPE       faster-whisper with the same CTranslate2 weights (float32, int8, ...)
        +vad                its vad_filter=True
        +batchedN           its BatchedInferencePipeline with batch_size=N
  openai-whisper            openai-whisper with the same weights exported to its .pt format
  transformers              HF transformers WhisperForConditionalGeneration with the same weights
                            (eval mode only: generate() on each file's first 30 s)
Peers that are not installed are skipped with a note.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from ..errors import AudioError, ModelError, OptionsError, UserError

DEFAULT_ENGINES = "ours:float32,ours:float32:auto,ours:int8,ours:int8:auto,faster-whisper:float32,faster-whisper:int8"
# long files: faster-whisper's three ways against our sequential dense reference and our defaults
DEFAULT_LONG_ENGINES = ("faster-whisper:int8,faster-whisper:int8+vad,faster-whisper:int8+batched8,"
                        "ours:float32:off+sequential,ours:int8:off+sequential,ours:int8:off,ours:int8:auto")
MODES = ("eval", "user")
DEFAULT_CUDA_ENGINES = ("ours:float16,ours:float16:auto,ours:float16:-1:0 pad=16,ours:float16:0:0.5,"
                        "faster-whisper:float16,faster-whisper:int8_float16")


@dataclass
class EngineRun:
    engine: str
    seconds: float  # all files, wall time
    tokens: int  # generated tokens, end-of-text included
    peak_rss_mb: float
    texts: List[str]
    decode_seconds: Optional[float] = None  # our engine reports its decoder time separately
    encode_seconds: Optional[float] = None
    windows: Optional[int] = None
    note: str = ""
    load_seconds: Optional[float] = None  # start-up: the model loaded and ready
    audio_seconds: Optional[float] = None  # all files


# ---------------------------------------------------------------------------------------------
# Workers (run in a subprocess)

def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def split_variants(spec: str) -> tuple:
    """'faster-whisper:int8+vad+batched8' -> ('faster-whisper:int8', {'vad': None, 'batched': 8})."""
    base, *mods = spec.split("+")
    variants = {}
    for mod in mods:
        name = mod.rstrip("0123456789")
        variants[name] = int(mod[len(name):]) if mod[len(name):] else None
    return base, variants


def engine_kind(spec: str) -> str:
    """'faster-whisper+vad' and 'faster-whisper:int8+vad' -> 'faster-whisper'."""
    return split_variants(spec)[0].split(":", 1)[0]


def _ours(spec: str, model: str, files: List[str], threads: int, device: str, mode: str) -> dict:
    from ..pipeline.options import EVAL_OPTIONS, TranscribeOptions
    from ..pipeline.whisper import WhisperModel

    spec, variants = split_variants(spec)
    _, compute, *rest = (spec + ":default" if spec == "ours" else spec).split(":", 2)
    eas_text = rest[0] if rest else None  # None: dense; "auto": the profile WhisperModel looks up
    t0 = time.perf_counter()
    whisper = WhisperModel(model, device=device, compute_type=compute, cpu_threads=threads, eas=eas_text)
    load = time.perf_counter() - t0
    eas = whisper.eas
    note = f"auto: {eas.describe() if eas else 'no profile, dense'}" if eas_text == "auto" else ""
    opts = (EVAL_OPTIONS if mode == "eval" else TranscribeOptions()).replace(eas=eas)
    if "sequential" in variants:
        opts = opts.replace(chunking="off")
    batch = variants.get("batch") or 8
    list(whisper.transcribe(files[0], opts, batch_size=batch)[0])
    texts, tokens, dec, enc, windows, audio = [], 0, 0.0, 0.0, 0, 0.0
    t0 = time.perf_counter()
    if "files" in variants:  # the command line's way: one batch run over every file
        done = sorted(whisper.transcribe_batch(files, opts, batch_size=batch), key=lambda r: r.index)
        if any(r.error for r in done):
            raise AudioError(next(r.error for r in done if r.error))
        results = [(r.segments, r.info) for r in done]
    else:
        results = (whisper.transcribe(f, opts, batch_size=batch) for f in files)
    for segments, info in results:
        texts.append(" ".join(s.text.strip() for s in segments).strip())
        tokens += info.decoder_steps
        dec += info.timings.get("decode", 0.0)
        enc += info.timings.get("encode", 0.0)
        windows += info.windows
        audio += info.duration
    seconds = time.perf_counter() - t0
    note = "; ".join(n for n in (note, f"{whisper.compute_type}") if n)
    return dict(seconds=seconds, tokens=tokens, texts=texts, decode_seconds=dec, encode_seconds=enc,
                windows=windows, note=note, load_seconds=load, audio_seconds=audio)


def _faster_whisper(spec: str, model: str, files: List[str], threads: int, device: str, mode: str) -> dict:
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    spec, variants = split_variants(spec)
    compute = spec.split(":", 1)[1] if ":" in spec else "float32"
    kind, _, index = device.partition(":")  # CTranslate2 takes "cuda" and an index, not "cuda:1"
    t0 = time.perf_counter()
    fw = WhisperModel(ct2_directory(model), device=kind, device_index=int(index or 0), compute_type=compute,
                      cpu_threads=threads)
    load = time.perf_counter() - t0
    opts = dict(beam_size=1, language="en" if fw.model.is_multilingual else None)
    if mode == "eval":
        opts.update(temperature=0.0, without_timestamps=True, condition_on_previous_text=False)
    if "vad" in variants:
        opts["vad_filter"] = True
    engine = fw
    if "batched" in variants:
        engine = BatchedInferencePipeline(model=fw)
        opts["batch_size"] = variants["batched"] or 8
    list(engine.transcribe(files[0], **opts)[0])
    texts, tokens, audio = [], 0, 0.0
    t0 = time.perf_counter()
    for f in files:
        segments, info = engine.transcribe(f, **opts)
        segments = list(segments)
        texts.append(" ".join(s.text.strip() for s in segments).strip())
        tokens += sum(len(s.tokens) + 1 for s in segments)
        audio += info.duration
    return dict(seconds=time.perf_counter() - t0, tokens=tokens, texts=texts, load_seconds=load, audio_seconds=audio)


def openai_whisper_options(mode: str, device: str) -> dict:
    """openai-whisper's transcribe() options for `mode`: greedy (its default beam_size=None) in
    both; eval also turns off timestamps, fallback and the prompt, user keeps its defaults."""
    opts = dict(beam_size=None, fp16=device.startswith("cuda"), language="en")
    if mode == "eval":
        opts.update(temperature=0.0, without_timestamps=True, condition_on_previous_text=False)
    return opts


def _openai_whisper(spec: str, model: str, files: List[str], threads: int, device: str, mode: str) -> dict:
    import torch
    import whisper as openai_whisper  # the openai-whisper package

    from ..io.loading import _read_any

    dims, state, *_ = _read_any(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        torch.save({"dims": dims.__dict__, "model_state_dict": state}, path)
        ow = openai_whisper.load_model(str(path), device=device)
    opts = openai_whisper_options(mode, device)
    ow.transcribe(files[0], **opts)
    texts, tokens = [], 0
    t0 = time.perf_counter()
    for f in files:
        result = ow.transcribe(f, **opts)
        texts.append(result["text"].strip())
        tokens += sum(len(s["tokens"]) + 1 for s in result["segments"])
    return dict(seconds=time.perf_counter() - t0, tokens=tokens, texts=texts)


def _transformers(spec: str, model: str, files: List[str], threads: int, device: str, mode: str) -> dict:
    if mode != "eval":  # generate() on one 30-s window below: no timestamps, seeking or fallback
        raise OptionsError("transformers is measured in eval mode only (one window per file, no timestamps): "
                           "use --mode eval")
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from ..io.audio import load_audio, log_mel_spectrogram
    from ..io.loading import _read_any, load_model, openai_to_hf_state

    dims, state, *_ = _read_any(model)
    tokenizer = load_model(model).tokenizer
    config = WhisperConfig(vocab_size=dims.n_vocab, num_mel_bins=dims.n_mels, encoder_layers=dims.n_audio_layer,
                           encoder_attention_heads=dims.n_audio_head, decoder_layers=dims.n_text_layer,
                           decoder_attention_heads=dims.n_text_head, d_model=dims.n_audio_state,
                           encoder_ffn_dim=4 * dims.n_audio_state, decoder_ffn_dim=4 * dims.n_text_state,
                           max_source_positions=dims.n_audio_ctx, max_target_positions=dims.n_text_ctx,
                           decoder_start_token_id=tokenizer.sot, eos_token_id=tokenizer.eot, pad_token_id=tokenizer.eot)
    hf = WhisperForConditionalGeneration(config).eval()
    hf.load_state_dict(openai_to_hf_state(state), strict=False)
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    hf = hf.to(device=device, dtype=dtype)
    prompt = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]

    def run(f):
        audio = load_audio(f)
        mel = log_mel_spectrogram(audio, dims.n_mels)
        mel = torch.nn.functional.pad(mel, (0, max(0, 3000 - mel.shape[-1])))[:, :3000]
        with torch.inference_mode():
            out = hf.generate(mel[None].to(device, dtype), decoder_input_ids=torch.tensor([prompt], device=device),
                              max_new_tokens=224, do_sample=False)
        # Whether generate() echoes the prompt differs between transformers versions; the text
        # tokens are the ones below the special tokens either way.
        new = [t for t in out[0].tolist() if t < tokenizer.eot]
        return tokenizer.decode(new).strip(), len(new) + 1

    run(files[0])
    texts, tokens = [], 0
    t0 = time.perf_counter()
    for f in files:
        text, n = run(f)
        texts.append(text)
        tokens += n
    return dict(seconds=time.perf_counter() - t0, tokens=tokens, texts=texts)


WORKERS = {"ours": _ours, "faster-whisper": _faster_whisper, "openai-whisper": _openai_whisper,
           "transformers": _transformers}
REQUIRES = {"faster-whisper": "faster_whisper", "openai-whisper": "whisper", "transformers": "transformers"}


def ct2_directory(model: str) -> str:
    """A CTranslate2 directory for `model` (bundled base is assembled from its two parts once)."""
    from ..io.loading import _bundled

    if os.path.isdir(model):
        return model
    files = _bundled(model)
    if files is None:
        raise ModelError(f"faster-whisper needs a CTranslate2 directory or a bundled model, not {model!r}")
    tok_dir, *bins = files
    if len(bins) == 1:
        return str(tok_dir)
    out = Path(tempfile.gettempdir()) / f"whisper-eas-ct2-{model}"
    if not (out / "model.bin").exists():
        out.mkdir(parents=True, exist_ok=True)
        partial = out / "model.bin.partial"
        with open(partial, "wb") as f:
            for part in bins:
                f.write(part.read_bytes())
        partial.rename(out / "model.bin")
        for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
            if (tok_dir / name).exists():
                (out / name).write_bytes((tok_dir / name).read_bytes())
    return str(out)


def worker_main(argv: List[str]) -> int:
    """python -m whisper_eas.evaluation.bench --worker ENGINE MODEL THREADS DEVICE FILELIST MODE -> JSON on stdout."""
    engine, model, threads, device, filelist, mode = argv
    import torch

    torch.set_num_threads(int(threads))
    files = Path(filelist).read_text().splitlines()
    kind = engine_kind(engine)
    try:
        result = WORKERS[kind](engine, model, files, int(threads), device, mode)
    except UserError as e:  # one line for the driver's list of failures, as the command line prints it
        print(e, file=sys.stderr)
        return 2
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------------
# Driver

def run_engine(engine: str, model: str, files: List[str], threads: int, device: str = "cpu",
               mode: str = "eval") -> EngineRun:
    if mode not in MODES:
        raise OptionsError(f"unknown bench mode {mode!r}: use one of {', '.join(MODES)}")
    kind = engine_kind(engine)
    if kind not in WORKERS:
        raise OptionsError(f"unknown engine {engine!r}: use ours:COMPUTE[:EAS], faster-whisper:TYPE, "
                         f"openai-whisper or transformers")
    import importlib.util

    if kind in REQUIRES and importlib.util.find_spec(REQUIRES[kind]) is None:
        return EngineRun(engine, float("nan"), 0, float("nan"), [], note=f"skipped: {REQUIRES[kind]} not installed")
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(files))
        filelist = f.name
    try:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
        proc = subprocess.run([sys.executable, "-m", "whisper_eas.evaluation.bench", "--worker", engine, model,
                               str(threads), device, filelist, mode], capture_output=True, text=True, env=env)
    finally:
        os.unlink(filelist)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        return EngineRun(engine, float("nan"), 0, float("nan"), [], note=f"failed: {last}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return EngineRun(engine, data["seconds"], data["tokens"], data["peak_rss_mb"], data["texts"],
                     data.get("decode_seconds"), data.get("encode_seconds"), data.get("windows"), data.get("note", ""),
                     data.get("load_seconds"), data.get("audio_seconds"))



def render_table(runs: List[EngineRun], references: List[str], n_files: int, baseline: str,
                 language: str = "en") -> str:
    from .metrics import corpus_wer, word_errors

    base = next((r for r in runs if r.engine == baseline and r.texts), None)
    lines = ["| engine | WER | wall s | RTF | ms/file | ms/token (e2e) | decoder ms/token | encoder ms/window | "
             f"load s | peak RSS MB | speed vs {baseline} | note |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        if not r.texts:
            lines.append(f"| {r.engine} | - | - | - | - | - | - | - | - | - | - | {r.note} |")
            continue
        counts = [word_errors(ref, hyp, language=language) for ref, hyp in zip(references, r.texts)]
        # a bare audio file has no reference: no WER, not an infinite one
        wer = f"{corpus_wer(counts):.2%}" if sum(c.ref_len for c in counts) else "-"
        dec = f"{1000 * r.decode_seconds / max(r.tokens, 1):.2f}" if r.decode_seconds is not None else "-"
        enc = f"{1000 * r.encode_seconds / max(r.windows, 1):.0f}" if r.encode_seconds is not None else "-"
        rtf = f"{r.seconds / r.audio_seconds:.4f}" if r.audio_seconds else "-"
        load = f"{r.load_seconds:.2f}" if r.load_seconds is not None else "-"
        ratio = f"{base.seconds / r.seconds:.2f}x" if base else "-"
        lines.append(f"| {r.engine} | {wer} | {r.seconds:.2f} | {rtf} | {1000 * r.seconds / n_files:.0f} | "
                     f"{1000 * r.seconds / max(r.tokens, 1):.2f} | {dec} | {enc} | {load} | {r.peak_rss_mb:.0f} | "
                     f"{ratio} | {r.note} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker_main(sys.argv[2:]))
    sys.exit("usage: whisper-eas bench ...")
