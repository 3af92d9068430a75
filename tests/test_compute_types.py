"""Our reduced-precision paths against float32 on jfk: bfloat16 (encoder and decoder) and int8
(int8 decoder weights over a bfloat16 encoder), within stated tolerances.

Tolerances are relative errors, ||x - x32|| / ||x32||, over the whole tensor, with the figures
measured on this engine written beside them; each bound leaves room for another CPU's kernels
(a different summation order) but stays far below what a wrong conversion gives (a transposed or
mis-scaled weight lands at 0.5 and more). This CPU may lack native bfloat16 (hardware.py says),
in which case torch emulates it, slowly: the test encodes one window per type."""

from __future__ import annotations

import pytest
import torch

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
# worst-case weight error of 0.4% of the row's largest) on bfloat16 activations 1.6%, bound 4%.
LOGITS_BF16 = 0.02
LOGITS_INT8 = 0.04
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


@pytest.fixture(scope="module", params=["bfloat16", "int8"])
def reduced(request, window):
    """(compute type, the loaded model, its own encoder output on jfk): one encoding per type."""
    loaded = load_model("tiny.en", compute_type=request.param)
    with torch.inference_mode():
        audio = loaded.model.encoder(window[0][None].to(torch.bfloat16))
    return request.param, loaded, audio


def test_the_encoder_in_bfloat16_is_within_its_tolerance_of_float32(reduced, reference):
    compute_type, loaded, audio = reduced
    assert audio.x.dtype == torch.bfloat16  # int8 runs its encoder in bfloat16 too (quantize.py)
    assert rel(audio.x, reference[0].x) < ENCODER_BF16, (compute_type, has_native_bf16())


def test_decoder_logits_are_within_their_tolerance_of_float32(reduced, reference):
    compute_type, loaded, _ = reduced
    audio32, sequence, text_from, _, logits32 = reference
    audio = TokenSet(audio32.x.to(torch.bfloat16), audio32.kept_index, audio32.size)
    logits = logits_along(loaded.model, audio, sequence)[text_from:]
    expected = logits32[text_from:]
    bound = LOGITS_INT8 if compute_type == "int8" else LOGITS_BF16
    assert rel(logits, expected) < bound
    agree = float((logits.argmax(-1) == expected.argmax(-1)).float().mean())
    assert agree == 1.0 if compute_type == "bfloat16" else agree >= TOP1_INT8


def test_the_jfk_transcript_is_the_same_in_every_compute_type(reduced, reference):
    compute_type, loaded, audio = reduced
    decoder = Decoder(loaded.model, loaded.tokenizer, DecodingOptions(without_timestamps=True))
    assert decoder.run(audio, [decoder.initial_tokens()])[0].text == reference[3]
