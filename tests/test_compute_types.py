"""Our reduced-precision paths against float32 on jfk: bfloat16 (encoder and decoder) and int8
(int8 decoder weights over a bfloat16 or a float32 encoder), within stated tolerances; and which
concrete type 'default' and 'int8' choose on the machine they run on.

Tolerances are relative errors, ||x - x32|| / ||x32||, over the whole tensor, with the figures
measured on this engine written beside them; each bound leaves room for another CPU's kernels
(a different summation order) but stays far below what a wrong conversion gives (a transposed or
mis-scaled weight lands at 0.5 and more). This CPU may lack native bfloat16 (hardware.py says),
in which case torch emulates it, slowly: the test encodes one window per type."""

from __future__ import annotations

import pytest
import torch

from whisper_eas.errors import OptionsError
from whisper_eas.hardware import has_native_bf16
from whisper_eas.io.audio import AudioWindows
from whisper_eas.io.loading import load_model
from whisper_eas.network.decoding import Decoder, DecodingOptions
from whisper_eas.network.model import TokenSet

pytestmark = pytest.mark.slow

# bfloat16 keeps 8 significant bits (unit roundoff 2**-8 = 0.4%); the error of one product is of
# that order and four encoder blocks compound it: measured 1.5%. Bound: 4% (about 10 roundoffs).
ENCODER_BF16 = 0.04
# Decoder logits at the text positions, the decoder fed the float32 encoder output (cast), so the
# decoder's own error is measured: bfloat16 0.5%, bound 2%; int8 weights (127 levels per row, a
# worst-case weight error of 0.4% of the row's largest) on bfloat16 activations 1.6%, bound 4%;
# on float32 activations the weights' error alone: measured 1.1%, the same bound.
LOGITS_BF16 = 0.02
LOGITS_INT8 = 0.04

# int8_float32's encoder is the float32 encoder itself: equal up to summation order.
ENCODER_FP32 = 1e-5
# The most likely next token agrees at every text position in bfloat16; int8 may flip a close call
# (measured: 1 of 25 positions, a comma): at least 90% agree.
TOP1_INT8 = 0.90


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.fixture(scope="module")
def window(jfk):
    return AudioWindows(jfk).window(0)


@pytest.fixture(scope="module")
def reference(tiny, window):
    """float32: the encoder output on jfk, the greedy tokens, and the logits along them."""
    features, _ = window
    with torch.inference_mode():
        audio = tiny.model.encoder(features[None])
    decoder = Decoder(tiny.model, tiny.tokenizer, DecodingOptions(without_timestamps=True))
    initial = decoder.initial_tokens()
    result = decoder.run(audio, [initial])[0]
    sequence = initial + result.tokens
    return audio, sequence, len(initial) - 1, result.text, logits_along(tiny.model, audio, sequence)


def logits_along(model, audio: TokenSet, sequence) -> torch.Tensor:
    with torch.inference_mode():
        cache = model.decoder.new_cache(audio)
        return model.decoder.logits(model.decoder(torch.tensor([sequence]), cache)[0]).float()


@pytest.fixture(scope="module", params=["bfloat16", "int8_bfloat16", "int8_float32"])
def reduced(request, window):
    """(compute type, the loaded model, its own encoder output on jfk): one encoding per type."""
    loaded = load_model("tiny.en", compute_type=request.param)
    dtype = torch.float32 if request.param == "int8_float32" else torch.bfloat16
    with torch.inference_mode():
        audio = loaded.model.encoder(window[0][None].to(dtype))
    return request.param, loaded, audio


def test_the_encoder_is_within_its_tolerance_of_float32(reduced, reference):
    compute_type, loaded, audio = reduced
    if compute_type == "int8_float32":
        assert audio.x.dtype == torch.float32 and rel(audio.x, reference[0].x) < ENCODER_FP32
    else:  # int8_bfloat16 runs its encoder in bfloat16 too (quantize.py)
        assert audio.x.dtype == torch.bfloat16
        assert rel(audio.x, reference[0].x) < ENCODER_BF16, (compute_type, has_native_bf16())


def test_decoder_logits_are_within_their_tolerance_of_float32(reduced, reference):
    compute_type, loaded, audio_own = reduced
    audio32, sequence, text_from, _, logits32 = reference
    audio = TokenSet(audio32.x.to(audio_own.x.dtype), audio32.kept_index, audio32.size)
    logits = logits_along(loaded.model, audio, sequence)[text_from:]
    expected = logits32[text_from:]
    bound = LOGITS_INT8 if compute_type.startswith("int8") else LOGITS_BF16
    assert rel(logits, expected) < bound
    agree = float((logits.argmax(-1) == expected.argmax(-1)).float().mean())
    assert agree == 1.0 if compute_type == "bfloat16" else agree >= TOP1_INT8


def test_default_and_int8_choose_bfloat16_only_where_the_cpu_has_it(monkeypatch):
    from whisper_eas.network import quantize

    for native, expected in ((True, "int8_bfloat16"), (False, "int8_float32")):
        monkeypatch.setattr(quantize, "has_native_bf16", lambda: native)
        assert quantize.resolve_compute_type("default", "cpu") == expected
        assert quantize.resolve_compute_type("int8", "cpu") == expected
    assert quantize.resolve_compute_type("default", "cuda") == "float16"
    assert quantize.resolve_compute_type("int8", "cuda:1") == "int8_float16"
    with pytest.raises(OptionsError, match="needs a CUDA device"):
        quantize.resolve_compute_type("int8_float16", "cpu")


def test_a_loaded_model_names_the_concrete_type_it_runs():
    expected = "int8_bfloat16" if has_native_bf16() else "int8_float32"
    assert load_model("tiny.en").model.compute_type == expected


def test_the_jfk_transcript_is_the_same_in_every_compute_type(reduced, reference):
    compute_type, loaded, audio = reduced
    decoder = Decoder(loaded.model, loaded.tokenizer, DecodingOptions(without_timestamps=True))
    assert decoder.run(audio, [decoder.initial_tokens()])[0].text == reference[3]


def test_the_int8_kernel_is_the_one_the_cpu_vectorises(monkeypatch):
    from whisper_eas.network import quantize

    try:
        for capability, expected in (("AVX512", "pack"), ("AVX512_BF16", "pack"), ("AVX2", "fbgemm"),
                                     ("DEFAULT", "fbgemm")):
            quantize.int8_kernel.cache_clear()
            monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
            if expected == "fbgemm" and "fbgemm" not in torch.backends.quantized.supported_engines:
                expected = "pack"
            assert quantize.int8_kernel("cpu") == expected
        assert quantize.int8_kernel("cuda") == "pack"
    finally:  # the answer for a faked CPU must not outlive the test
        quantize.int8_kernel.cache_clear()


def test_both_int8_kernels_compute_the_same_product(monkeypatch):
    from whisper_eas.network import quantize

    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch has no fbgemm")
    torch.manual_seed(0)
    linear = torch.nn.Linear(384, 1536)
    x = torch.randn(8, 384)
    outs = {}
    for kernel in ("pack", "fbgemm"):
        monkeypatch.setattr(quantize, "int8_kernel", lambda device="cpu", k=kernel: k)
        outs[kernel] = quantize.Int8Linear.from_linear(linear, torch.float32)(x)
    reference = linear(x).detach()
    assert rel(outs["pack"], reference) < 0.01  # weights only: 127 levels per row
    assert rel(outs["fbgemm"], outs["pack"]) < 1e-3  # the same int8 weights, held in float16
    # a row's result does not depend on what it is batched with
    alone = quantize.Int8Linear.from_linear(linear, torch.float32)(x[:1])
    assert torch.allclose(alone, outs["fbgemm"][:1], atol=1e-5)


def test_a_big_int8_matrix_gives_the_same_rows_in_blocks_as_whole(monkeypatch):
    """The output embedding is multiplied in column blocks from BLOCKED_ROWS input rows on (it
    then stays in cache); each output is the same sum as the whole matrix gives for the same
    rows, and a row alone (the whole matrix) gets what it gets among others, as fbgemm gives it
    (to float rounding)."""
    from whisper_eas.network import quantize

    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch has no fbgemm")
    monkeypatch.setattr(quantize, "int8_kernel", lambda device="cpu": "fbgemm")
    torch.manual_seed(0)
    layer = quantize.Int8Linear(torch.randn(5 * quantize.Int8Linear.BLOCK + 100, 64) * 0.05, None, torch.float32)
    whole, blocks = layer._fbgemm()
    assert len(blocks) == 6
    x = torch.randn(quantize.Int8Linear.BLOCKED_ROWS * 2, 64)
    together = layer(x)  # in blocks
    assert torch.equal(together, torch.ops.quantized.linear_dynamic_fp16(x, whole))
    for i in range(3):  # one row at a time: the whole matrix
        assert torch.allclose(layer(x[i : i + 1]), together[i : i + 1], atol=1e-5)
