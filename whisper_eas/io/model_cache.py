"""A cache of converted weights, so that a model loads in a fraction of the time it takes to read
and convert its checkpoint.

Loading tiny.en from its CTranslate2 file reads fp16 tensors, widens them to float32, fuses the
attention projections, builds the network (whose layers first fill themselves with random
numbers) and, for int8, quantizes every decoder row: on the 2-core AMD EPYC this was written on,
most of a second, which is longer than transcribing a short clip. The result depends only on the
weights and the compute type, so it is saved once, as safetensors, and read back the next time:
the network is built without initialising its parameters (empty tensors, no random fill), given
the compute type's structure (the int8 layers, nothing quantized), and the cached tensors are
assigned to it. (PyTorch's "meta" device would do the same, but its first use imports torch's
reference ops: about 2.5 s, more than it saves.)

- Key: the weights' fingerprint (io/loading.py), the concrete compute type ('int8_float32',
  ...) and this module's format version; a file that does not load or does not fit is ignored
  and written anew. Writes go to a temporary file renamed into place, so a crash leaves none
  half-written.
- Where: $WHISPER_EAS_CACHE, else $XDG_CACHE_HOME/whisper-eas/models (~/.cache/...). Set
  WHISPER_EAS_CACHE=off to neither read nor write a cache. A cache that cannot be written
  (read-only home, a full disk) is skipped silently: it only ever saves time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import torch

from ..network.model import ModelDimensions, Whisper
from ..network.quantize import apply_compute_type

FORMAT = "whisper-eas-weights/1"
OFF = ("0", "off", "no", "false", "")

log = logging.getLogger("whisper_eas")


@contextlib.contextmanager
def _no_init():
    """Build modules without filling their parameters: torch.nn.init's fills are no-ops inside."""
    names = [n for n in dir(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, f in saved.items():
            setattr(torch.nn.init, n, f)


def cache_dir() -> Optional[Path]:
    """Where converted weights are kept (None: caching is off)."""
    setting = os.environ.get("WHISPER_EAS_CACHE")
    if setting is not None:
        return None if setting.strip().lower() in OFF else Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "whisper-eas" / "models"


def _path(fingerprint: str, compute_type: str) -> Optional[Path]:
    folder = cache_dir()
    return None if folder is None else folder / f"{fingerprint}-{compute_type}.safetensors"


def load(fingerprint: str, compute_type: str, device: str) -> Optional[Tuple[Whisper, dict]]:
    """(the model in `compute_type` on `device`, the checkpoint's extras), or None when nothing
    usable is cached."""
    path = _path(fingerprint, compute_type)
    if path is None or not path.is_file():
        return None
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if meta.get("format") != FORMAT or meta.get("compute_type") != compute_type:
            return None
        dims = ModelDimensions(**json.loads(meta["dims"]))
        extras = json.loads(meta["extras"])
        state = load_file(str(path))
        with _no_init():
            model = Whisper(dims)
        model = apply_compute_type(model, compute_type, "cpu", structure_only=True)
        model.load_state_dict(state, strict=True, assign=True)
        model.alignment_heads = [tuple(h) for h in json.loads(meta["alignment_heads"])]
    except Exception as e:  # a damaged or foreign file: read the checkpoint instead, and rewrite it
        log.debug("ignoring the weights cache %s: %s", path, e)
        return None
    return model.to(device).requires_grad_(False), extras


def save(model: Whisper, extras: dict, fingerprint: str, compute_type: str) -> Optional[Path]:
    """Write the converted model for the next load; None when caching is off or impossible."""
    path = _path(fingerprint, compute_type)
    if path is None:
        return None
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "compute_type": compute_type, "dims": json.dumps(dataclasses.asdict(model.dims)),
            "extras": json.dumps(extras), "alignment_heads": json.dumps([list(h) for h in model.alignment_heads])}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
        os.close(fd)
        try:
            save_file(state, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as e:  # read-only or full: the cache only ever saves time
        log.debug("not caching weights in %s: %s", path, e)
        return None
    return path
