"""Compute types: float32, bfloat16/float16, and int8 weights for the decoder.

Decoding one token reads every decoder weight and the whole 51k x d output embedding, so on a
CPU it is bound by memory traffic, not arithmetic: tiny.en moves ~130 MB per token in float32.
int8 weights (per-row scales) cut that 4x and let the decoder of tiny/base live in the last-level
cache. The encoder's large matrix products are compute-bound, where bfloat16 pays instead - but
only on a CPU that computes in bfloat16 natively (AVX-512 BF16 or AMX); elsewhere torch emulates
it, which is slower than float32.

    float32        everything float32 (the reference; exact parity with CTranslate2 float32)
    bfloat16       everything bfloat16 (CPUs with AVX-512 BF16 / AMX, and GPUs)
    float16        everything float16 (CUDA only)
    int8_float32   the decoder's per-token linears and the output embedding int8 weight-only
                   with per-row scales; the encoder and all activations float32
    int8_bfloat16  the same int8 decoder; encoder and activations bfloat16
    int8_float16   the same int8 decoder; encoder and activations float16 (CUDA)
    int8           int8_bfloat16 where the CPU has native bfloat16, int8_float32 on other CPUs,
                   int8_float16 on CUDA (faster-whisper's names, the same meanings)
    default        int8 on a CPU (the fastest type that holds WER: see docs/performance.md),
                   float16 on CUDA

The hardware is read at run time (`hardware.has_native_bf16`), never assumed: the same install
runs int8_bfloat16 on a Xeon with AMX and int8_float32 on an AMD EPYC without AVX-512.

Two int8 kernels, picked per CPU at run time (`int8_kernel`), both weight-only (activations
stay float, so a row's result never depends on the other rows of its batch):

- 'pack': PyTorch's `_weight_int8pack_mm`, vectorised for AVX-512; on an AVX2-only CPU it runs a
  plain loop, slower than float32 (`benchmarks/int8_kernels.py`; figures for an AVX2 AMD EPYC in
  docs/longform.md).
- 'fbgemm': the same int8 rows times their scales, held as float16 in fbgemm's packed layout and
  multiplied by its fp16 kernel (float32 arithmetic). fbgemm's *int8* dynamic linear is faster
  still, but it quantizes the activations per call over the whole batch, so a row's output would
  depend on what it is batched with, and on AVX2 it needs 7-bit activations; we do not use it.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from ..errors import OptionsError
from ..hardware import has_native_bf16
from .model import Whisper

COMPUTE_TYPES = ("default", "float32", "bfloat16", "float16", "int8", "int8_float32", "int8_bfloat16", "int8_float16")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@functools.lru_cache(maxsize=None)
def int8_kernel(device: str = "cpu") -> str:
    """'pack' where PyTorch vectorises its int8 kernel (AVX-512 CPUs, GPUs), 'fbgemm' (the int8
    weights through fbgemm's fp16 kernel) on other x86 CPUs that have fbgemm; read from torch at
    run time."""
    if str(device).startswith("cuda"):
        return "pack"
    if torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return "pack"
    try:
        usable = ("fbgemm" in torch.backends.quantized.supported_engines
                  and hasattr(torch.ops.quantized, "linear_dynamic_fp16"))
    except (AttributeError, RuntimeError):  # a torch without the quantized ops
        usable = False
    return "fbgemm" if usable else "pack"


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored as int8 rows times a per-row scale (symmetric, 127 levels),
    computed by the CPU's int8 kernel (`int8_kernel`): fbgemm's packed weights are made from
    the rows on first use and are not part of the state dict."""

    BLOCK = 2048  # output columns per block of a big matrix (fp16: 1.5 MB at d=384)
    BLOCKED_ROWS = 8  # from this many input rows on, a big matrix is multiplied block by block

    def __init__(self, weight: Tensor, bias: Tensor | None, act_dtype: torch.dtype, quantize: bool = True):
        super().__init__()
        self._packed = None
        if not quantize:  # buffers of the right shapes and types, for values assigned afterwards
            self.register_buffer("qweight", torch.empty(weight.shape, dtype=torch.int8))
            self.register_buffer("scale", torch.empty(weight.shape[0], dtype=act_dtype))
            self.register_buffer("bias", None if bias is None else torch.empty(bias.shape, dtype=act_dtype))
            return
        w = weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale.to(act_dtype))
        self.register_buffer("bias", None if bias is None else bias.detach().to(act_dtype))

    @classmethod
    def from_linear(cls, linear: nn.Linear, act_dtype: torch.dtype, quantize: bool = True) -> "Int8Linear":
        return cls(linear.weight, linear.bias, act_dtype, quantize)

    def _apply(self, fn, *args, **kwargs):  # .to() and friends: the packed copy is remade
        self._packed = None
        return super()._apply(fn, *args, **kwargs)

    def _fbgemm(self):
        if self._packed is None:  # each int8 row times its scale, exactly the weights 'pack' uses
            weight = self.qweight.float() * self.scale.float()[:, None]
            bias = None if self.bias is None else self.bias.float()
            pack = torch.ops.quantized.linear_prepack_fp16
            # A big matrix (the output embedding) is also kept in column blocks that fit in the
            # cache: fbgemm streams the weights once per few rows of input, so with many rows
            # the whole matrix would come from memory several times (tiny.en's, 16 rows, on an
            # AVX2 AMD EPYC, timed once: 10.6 ms at once, 8.1 ms in blocks). Each output column
            # is the same sum either way (tests/test_compute_types.py).
            blocks = [] if weight.shape[0] < 4 * self.BLOCK else [
                pack(weight[i : i + self.BLOCK].contiguous(), None if bias is None else bias[i : i + self.BLOCK].contiguous())
                for i in range(0, weight.shape[0], self.BLOCK)]
            self._packed = (pack(weight, bias), blocks)
        return self._packed

    def forward(self, x: Tensor) -> Tensor:
        flat = x.reshape(-1, x.shape[-1])
        if x.dtype == torch.float32 and x.device.type == "cpu" and int8_kernel("cpu") == "fbgemm":
            whole, blocks = self._fbgemm()
            if blocks and flat.shape[0] >= self.BLOCKED_ROWS:
                y = torch.cat([torch.ops.quantized.linear_dynamic_fp16(flat, b) for b in blocks], dim=-1)
            else:
                y = torch.ops.quantized.linear_dynamic_fp16(flat, whole)
            return y.reshape(*x.shape[:-1], y.shape[-1])
        y = torch.ops.aten._weight_int8pack_mm(flat, self.qweight, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], y.shape[-1])


def _quantize_linears(module: nn.Module, act_dtype: torch.dtype, skip: tuple = (), quantize: bool = True) -> None:
    for name, child in module.named_children():
        if name in skip:
            continue
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear.from_linear(child, act_dtype, quantize))
        else:
            _quantize_linears(child, act_dtype, skip, quantize)


def resolve_compute_type(compute_type: str, device: str) -> str:
    """The concrete type `compute_type` means on `device` here: 'default' and 'int8' are
    resolved for this machine (see the module docstring); the others are checked."""
    if compute_type not in COMPUTE_TYPES:
        raise OptionsError(f"unknown compute type {compute_type!r}: use one of {', '.join(COMPUTE_TYPES)}")
    cuda = str(device).startswith("cuda")
    if compute_type == "default":
        compute_type = "float16" if cuda else "int8"
    if compute_type == "int8":
        return "int8_float16" if cuda else ("int8_bfloat16" if has_native_bf16() else "int8_float32")
    if compute_type in ("float16", "int8_float16") and not cuda:
        raise OptionsError(f"{compute_type} needs a CUDA device; on CPU use int8, float32 or bfloat16")
    return compute_type


def default_compute_type(device: str = "cpu") -> str:
    """What 'default' runs on `device` on this machine, e.g. 'int8_float32'."""
    return resolve_compute_type("default", device)


def apply_compute_type(model: Whisper, compute_type: str, device: str, structure_only: bool = False) -> Whisper:
    """Convert a float32 model in place to `compute_type` on `device`; `model.compute_type`
    records the concrete type (e.g. 'int8_float32' for 'default' on a CPU without bfloat16).
    `structure_only`: the model's values do not matter (it was built without initialising them):
    it only gets the compute type's layers, shapes and dtypes, for weights assigned afterwards
    (io/model_cache.py), and nothing is quantized."""
    compute_type = resolve_compute_type(compute_type, device)
    int8 = compute_type.startswith("int8")
    dtype = _DTYPES[compute_type.split("_", 1)[1] if int8 else compute_type]
    model = model.to(device=device, dtype=dtype)
    if int8:
        # cross_kv runs once per window over all encoder tokens: a matrix product, not a
        # per-token vector product, so it stays in the encoder's type
        _quantize_linears(model.decoder.blocks, dtype, skip=("cross_kv",), quantize=not structure_only)
        embedding = model.decoder.token_embedding.weight
        model.decoder.output = Int8Linear(embedding, None, dtype, quantize=not structure_only).to(device)
    model.compute_type = compute_type
    return model
