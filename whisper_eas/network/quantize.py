"""Compute types: float32, bfloat16/float16, and int8 weights for the decoder.

Decoding one token reads every decoder weight and the whole 51k x d output embedding, so on a
CPU it is bound by memory traffic, not arithmetic: tiny.en moves ~130 MB per token in float32.
int8 weights (per-row scales) cut that 4x and let the decoder of tiny/base live in the last-level
cache. The encoder's large matrix products are compute-bound, where bfloat16 pays instead.

    float32   everything float32 (the reference; exact parity with CTranslate2 float32)
    bfloat16  everything bfloat16 (CPUs with AVX-512 BF16 / AMX, and GPUs)
    float16   everything float16 (CUDA only)
    int8      encoder in bfloat16 (float16 on CUDA); the decoder's per-token linears and the
              output embedding int8 weight-only with per-row scales, activations in the
              encoder's type
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import OptionsError
from .model import Whisper

COMPUTE_TYPES = ("default", "float32", "bfloat16", "float16", "int8")


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 rows times a per-row scale (symmetric, 127 levels)."""

    def __init__(self, weight: Tensor, bias: Tensor | None, act_dtype: torch.dtype):
        super().__init__()
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(act_dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().to(act_dtype))

    @classmethod
    def from_linear(cls, linear: nn.Linear, act_dtype: torch.dtype) -> "Int8Linear":
        return cls(linear.weight, linear.bias, act_dtype)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        y = torch.ops.aten._weight_int8pack_mm(flat, self.qweight, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])


def _quantize_linears(module: nn.Module, act_dtype: torch.dtype, skip: tuple = ()) -> None:
    for name, child in module.named_children():
        if name in skip:
            continue
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear.from_linear(child, act_dtype))
        else:
            _quantize_linears(child, act_dtype, skip)


def resolve_compute_type(compute_type: str, device: str) -> str:
    if compute_type not in COMPUTE_TYPES:
        raise OptionsError(f"unknown compute type {compute_type!r}: use one of {', '.join(COMPUTE_TYPES)}")
    cuda = str(device).startswith("cuda")
    if compute_type == "default":
        return "float16" if cuda else "float32"
    if compute_type == "float16" and not cuda:
        raise OptionsError("float16 needs a CUDA device; on CPU use float32, bfloat16 or int8")
    return compute_type


def apply_compute_type(model: Whisper, compute_type: str, device: str) -> Whisper:
    """Convert a float32 model in place to `compute_type` on `device`."""
    compute_type = resolve_compute_type(compute_type, device)
    cuda = str(device).startswith("cuda")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
             "int8": torch.float16 if cuda else torch.bfloat16}[compute_type]
    model = model.to(device=device, dtype=dtype)
    if compute_type == "int8":
        # cross_kv runs once per window over all encoder tokens: a matrix product, not a
        # per-token vector product, so it stays in the encoder's type
        _quantize_linears(model.decoder.blocks, dtype, skip=("cross_kv",))
        embedding = model.decoder.token_embedding.weight
        model.decoder.output = Int8Linear(embedding, None, dtype).to(device)
    model.compute_type = compute_type
    return model
