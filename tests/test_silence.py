"""Silence costs what a short clip costs: digital silence is not decoded at all, quiet room tone
ends at the first window with the no-speech check, and neither hallucinates text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from whisper_eas.io.audio import SILENCE_FLOOR, AudioWindows, log_mel_spectrogram

SAMPLES = 10 * 16000


def test_the_padding_of_a_silent_clip_is_the_silence_openai_whisper_appends():
    features, n = AudioWindows(np.zeros(SAMPLES, np.float32)).window(0)
    # openai-whisper's decode path: log-mel of the clip padded with zeros to 30 s, one constant
    reference = log_mel_spectrogram(np.zeros(30 * 16000, np.float32))
    assert float(reference.min()) == float(reference.max()) == pytest.approx(SILENCE_FLOOR)
    assert torch.allclose(features, torch.full_like(features, SILENCE_FLOOR))  # not below the audio's own level


@pytest.mark.parametrize("eas", [None, "-1:0 pad=32"], ids=["dense", "eas"])
def test_ten_seconds_of_digital_silence_decode_nothing(tiny, eas):
    # before: 922 decoder steps (the padding sat below the clip's own silence, and the decoder
    # looped through every fallback temperature); a short clip takes 20-40
    segments, info = tiny.transcribe(np.zeros(SAMPLES, np.float32), eas=eas)
    assert list(segments) == [] and info.decoder_steps == 0 and info.windows == 0
    assert info.duration == pytest.approx(10.0)


@pytest.mark.parametrize("eas", [None, "-1:0 pad=32"], ids=["dense", "eas"])
def test_ten_seconds_of_room_tone_end_at_the_no_speech_check(tiny, eas):
    tone = np.random.default_rng(0).normal(0, 1e-3, SAMPLES).astype(np.float32)  # -60 dBFS
    segments, info = tiny.transcribe(tone, eas=eas)
    assert list(segments) == [] and info.decoder_steps <= 16
