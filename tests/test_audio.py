"""Audio in: every common container decodes to 16 kHz mono float32 with the right length and
content, features match Whisper's reference (faster-whisper's extractor), long files stream in
bounded memory, and unreadable inputs raise a one-line AudioError naming the file."""

from __future__ import annotations

import fractions
from pathlib import Path
import re

import numpy as np
import pytest
import soundfile as sf

av = pytest.importorskip("av")

from whisper_eas.errors import AudioError
from whisper_eas.io.audio import (HOP_LENGTH, N_FFT, N_FRAMES, N_SAMPLES, SAMPLE_RATE, AudioWindows,
                               RawFormat, as_samples, load_audio, log_mel_spectrogram, mel_filters,
                               probe_duration, stream_audio)

FeatureExtractor = pytest.importorskip("faster_whisper.feature_extractor").FeatureExtractor


# -- writing test audio in-process (no system ffmpeg) ----------------------------------------

def _encoder(codec: str):
    try:
        return av.Codec(codec, "w")
    except Exception:
        return None


def write_audio(path, samples: np.ndarray, rate: int, codec: str, options=None) -> None:
    """Encode float samples, shape (n,) or (n, channels), with PyAV's bundled FFmpeg."""
    samples = np.asarray(samples, np.float32)
    if samples.ndim == 1:
        samples = samples[:, None]
    layout = {1: "mono", 2: "stereo"}[samples.shape[1]]
    pcm = np.round(np.clip(samples, -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if options:
            stream.codec_context.options = options
        fmt = stream.codec_context.codec.audio_formats[0].name
        stream.format = fmt
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=rate)
        for i in range(0, len(pcm), 4096):
            chunk = np.ascontiguousarray(pcm[i : i + 4096])
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout=layout)
            frame.sample_rate, frame.pts, frame.time_base = rate, i, fractions.Fraction(1, rate)
            for out in resampler.resample(frame):
                container.mux(stream.encode(out))
        for out in resampler.resample(None):
            container.mux(stream.encode(out))
        container.mux(stream.encode(None))


def tone(freq: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def spectrum(audio: np.ndarray):
    mag = np.abs(np.fft.rfft(audio))
    return np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE), mag


def peak_hz(audio: np.ndarray) -> float:
    freqs, mag = spectrum(audio)
    return float(freqs[np.argmax(mag)])


def band_level(audio: np.ndarray, hz: float, width: float = 25.0) -> float:
    """Energy of the spectrum within `width` Hz of `hz` (robust to leakage of lossy codecs)."""
    freqs, mag = spectrum(audio)
    return float(np.sqrt((mag[np.abs(freqs - hz) <= width] ** 2).sum()))


# (extension, encoder, input rates it takes, codec frame in input samples: the length tolerance, extra
# encoder options); the mono/stereo rates are what a user's files would typically have
FORMATS = [
    ("wav", "pcm_s16le", 0, None),
    ("flac", "flac", 0, None),
    ("mp3", "libmp3lame", 1152, None),
    ("opus", "libopus", 960, None),
    ("ogg", "libopus", 960, None),
    ("ogg", "vorbis", 2048, {"strict": "experimental"}),  # FFmpeg's own Vorbis encoder: stereo only
    ("m4a", "aac", 1024, None),
]
FORMAT_IDS = [f"{ext}-{codec}" for ext, codec, _, _ in FORMATS]
SECONDS = 2.5


def _write_or_skip(path, samples, rate, codec, options):
    if _encoder(codec) is None:
        pytest.skip(f"PyAV's bundled FFmpeg has no {codec} encoder")
    if codec == "vorbis" and samples.ndim == 1:
        pytest.skip("FFmpeg's native vorbis encoder only encodes stereo (libvorbis is not bundled)")
    write_audio(path, samples, rate, codec, options)


@pytest.mark.parametrize("ext,codec,frame,options", FORMATS, ids=FORMAT_IDS)
def test_mono_16k_decodes_to_same_length_and_pitch(tmp_path, ext, codec, frame, options):
    path = tmp_path / f"tone.{ext}"
    _write_or_skip(path, tone(440, SECONDS, 16000), 16000, codec, options)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SECONDS * SAMPLE_RATE) <= frame + 1
    assert peak_hz(audio) == pytest.approx(440, abs=1.0)
    rms = float(np.sqrt(np.mean(audio[2000:-2000] ** 2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.1)
    assert probe_duration(path) == pytest.approx(SECONDS, abs=0.1)


@pytest.mark.parametrize("ext,codec,frame,options", FORMATS, ids=FORMAT_IDS)
def test_stereo_44k_is_resampled_and_downmixed(tmp_path, ext, codec, frame, options):
    rate = 48000 if "opus" in codec else 44100  # Opus has no 44.1 kHz mode
    left, right = tone(440, SECONDS, rate), tone(1000, SECONDS, rate)
    path = tmp_path / f"stereo.{ext}"
    _write_or_skip(path, np.stack([left, right], axis=1), rate, codec, options)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - SECONDS * SAMPLE_RATE) <= frame * SAMPLE_RATE / rate + 1
    # both channels are in the mix, each at half level, and nothing else is
    a440, a1000 = band_level(audio, 440), band_level(audio, 1000)
    assert a440 == pytest.approx(a1000, rel=0.2)
    freqs, mag = spectrum(audio)
    elsewhere = mag[(np.abs(freqs - 440) > 25) & (np.abs(freqs - 1000) > 25)]
    noise = 0.3 if codec == "vorbis" else 0.1  # FFmpeg's experimental Vorbis encoder is noisy
    assert np.sqrt((elsewhere ** 2).sum()) < noise * a440
    rms = float(np.sqrt(np.mean(audio[2000:-2000] ** 2)))
    assert rms == pytest.approx(0.25, rel=0.15)  # (L + R) / 2 of two 0.5 sines


def test_lossless_16k_samples_are_exact(tmp_path):
    rng = np.random.default_rng(0)
    pcm = rng.integers(-20000, 20000, size=16000 * 2).astype(np.int16)
    for ext in ("wav", "flac"):
        path = tmp_path / f"noise.{ext}"
        sf.write(path, pcm, 16000, subtype="PCM_16")
        np.testing.assert_array_equal(load_audio(path), pcm.astype(np.float32) / 32768.0)


def test_stereo_opposite_channels_cancel(tmp_path):
    """The downmix is the mean of the channels: L = -R gives silence."""
    s = tone(440, 1.0, 44100)
    path = tmp_path / "cancel.wav"
    sf.write(path, np.stack([s, -s], axis=1), 44100, subtype="PCM_16")
    audio = load_audio(path)
    assert len(audio) == 16000
    assert np.abs(audio).max() < 1e-3


# -- raw PCM --------------------------------------------------------------------------------

def test_raw_s16le_stereo_8k(tmp_path):
    left, right = tone(440, 2.0, 8000), tone(1000, 2.0, 8000)
    pcm = np.round(np.stack([left, right], axis=1) * 32767).astype("<i2")
    path = tmp_path / "audio.raw"
    path.write_bytes(pcm.tobytes())
    fmt = RawFormat(sample_rate=8000, channels=2)
    audio = load_audio(path, fmt)
    assert audio.dtype == np.float32
    assert len(audio) == 2 * SAMPLE_RATE
    assert band_level(audio, 440) == pytest.approx(band_level(audio, 1000), rel=0.1)
    assert probe_duration(path, fmt) == pytest.approx(2.0)


def test_raw_s16le_mono_16k_is_exact(tmp_path):
    pcm = np.random.default_rng(1).integers(-30000, 30000, size=8000).astype("<i2")
    path = tmp_path / "audio.pcm"
    path.write_bytes(pcm.tobytes())
    np.testing.assert_array_equal(load_audio(path, RawFormat()), pcm.astype(np.float32) / 32768.0)


@pytest.mark.parametrize("rate,channels", [(0, 1), (-8000, 1), (16000, 0), (16000, 9)])
def test_raw_format_rejects_nonsense(rate, channels):
    with pytest.raises(ValueError):
        RawFormat(rate, channels)


# -- features -------------------------------------------------------------------------------

@pytest.mark.parametrize("n_mels", [80, 128])
def test_mel_filters_match_faster_whisper(n_mels):
    ours = mel_filters(n_mels)
    ref = FeatureExtractor.get_mel_filters(16000, 400, n_mels)
    assert ours.shape == (n_mels, N_FFT // 2 + 1)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("n_mels", [80, 128])
def test_first_window_matches_faster_whisper(jfk, jfk_audio, n_mels):
    features, n = AudioWindows(jfk, n_mels=n_mels, padding="zeros").window(0)
    assert features.shape == (n_mels, N_FRAMES)
    assert n == len(jfk_audio) // HOP_LENGTH
    ref = FeatureExtractor(feature_size=n_mels)(jfk_audio)  # one frame more than ours
    assert ref.shape[1] == n + 1
    np.testing.assert_allclose(features[:, :n].numpy(), ref[:, :n], atol=1e-4)
    assert (features[:, n:] == 0).all()


def test_silence_padding_fills_with_the_clamp_floor(jfk):
    zeros, n = AudioWindows(jfk, padding="zeros").window(0)
    silence, n2 = AudioWindows(jfk, padding="silence").window(0)
    assert n == n2
    assert np.array_equal(zeros[:, :n].numpy(), silence[:, :n].numpy())
    floor = float(silence[:, :n].max()) - 2.0
    assert np.allclose(silence[:, n:].numpy(), floor)
    assert float(silence[:, :n].min()) >= floor - 1e-6  # nothing in the audio is below the floor


def test_default_padding_is_silence(jfk):
    features, n = AudioWindows(jfk).window(0)
    assert float(features[0, -1]) == pytest.approx(float(features[:, :n].max()) - 2.0)


def test_window_from_array_equals_window_from_file(jfk, jfk_audio):
    from_file, n = AudioWindows(jfk, padding="zeros").window(0)
    from_array, m = AudioWindows(jfk_audio, padding="zeros").window(0)
    assert n == m
    assert np.array_equal(from_file.numpy(), from_array.numpy())


def test_log_mel_spectrogram_of_a_short_clip(jfk_audio):
    """The whole-clip definition agrees with the windowed one (same 160 appended zeros)."""
    n = len(jfk_audio) // HOP_LENGTH
    whole = log_mel_spectrogram(np.pad(jfk_audio, (0, HOP_LENGTH)))
    window, m = AudioWindows(jfk_audio, padding="zeros").window(0)
    assert m == n and whole.shape == (80, n + 1)
    # normalisation differs only if the one extra frame held the maximum; it does not here
    np.testing.assert_allclose(window[:, :n].numpy(), whole[:, :n].numpy(), atol=1e-4)


def test_window_past_the_end_is_an_error(jfk_audio):
    windows = AudioWindows(jfk_audio)
    n = len(jfk_audio) // HOP_LENGTH
    assert windows.available_frames(n - 10) == 10
    assert windows.available_frames(n) == 0
    with pytest.raises(ValueError):
        windows.window(n)


def test_bad_padding_name():
    with pytest.raises(ValueError, match="padding"):
        AudioWindows(np.zeros(16000, np.float32), padding="noise")


# -- long audio, streamed -------------------------------------------------------------------

LONG_SAMPLES = 600 * SAMPLE_RATE + 1234  # 10 minutes and a bit: the last window is partial


@pytest.fixture(scope="module")
def long_flac(tmp_path_factory):
    """10 minutes of noise whose level changes every second (so every window is different)."""
    rng = np.random.default_rng(0)
    gain = rng.uniform(0.01, 0.5, size=LONG_SAMPLES // SAMPLE_RATE + 1).astype(np.float32)
    audio = rng.standard_normal(LONG_SAMPLES, dtype=np.float32) * np.repeat(gain, SAMPLE_RATE)[:LONG_SAMPLES] / 3
    audio += tone(523.25, LONG_SAMPLES / SAMPLE_RATE, SAMPLE_RATE, 0.1)
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    path = tmp_path_factory.mktemp("long") / "long.flac"
    sf.write(path, pcm, SAMPLE_RATE, subtype="PCM_16")
    return path, pcm.astype(np.float32) / 32768.0


def _reference_window(audio: np.ndarray, start: int, n: int, n_mels: int = 80) -> np.ndarray:
    """Frames start..start+n-1 of Whisper's features of the whole file (160 zeros appended,
    centred reflect-padded STFT), normalised over those frames only - computed with
    faster-whisper's numpy STFT on a slice around them."""
    margin = 2 * HOP_LENGTH  # >= N_FFT // 2, and a whole number of hops
    lo = max(0, start * HOP_LENGTH - margin)
    hi = (start + n) * HOP_LENGTH + margin
    piece = audio[lo:hi]
    if hi >= len(audio):
        piece = np.pad(piece, (0, HOP_LENGTH))  # the end of the file: as faster-whisper pads it
    stft = FeatureExtractor.stft(piece.astype(np.float32), N_FFT, HOP_LENGTH,
                                 window=np.hanning(N_FFT + 1)[:-1].astype(np.float32), return_complex=True)
    first = (start * HOP_LENGTH - lo) // HOP_LENGTH
    power = np.abs(stft[:, first : first + n]) ** 2
    mel = FeatureExtractor.get_mel_filters(SAMPLE_RATE, N_FFT, n_mels) @ power
    log_spec = np.log10(np.clip(mel, 1e-10, None))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0


def test_long_file_streams_in_bounded_memory(long_flac):
    path, audio = long_flac
    assert len(audio) == LONG_SAMPLES
    total = LONG_SAMPLES // HOP_LENGTH
    windows = AudioWindows(path, padding="zeros")
    rng = np.random.default_rng(2)
    start, largest, seen = 0, 0, []
    check = {0, 6}  # windows whose features are compared (all of them would take too long)
    while True:
        n = windows.available_frames(start)
        largest = max(largest, len(windows._buf))
        if n <= 0:
            break
        seen.append((start, n))
        if len(seen) - 1 in check or n < N_FRAMES:
            features, n2 = windows.window(start)
            assert n2 == n
            np.testing.assert_allclose(features[:, :n].numpy(), _reference_window(audio, start, n),
                                       atol=2e-4, err_msg=f"window at frame {start}")
            assert (features[:, n:] == 0).all()
        # move on as transcription does: a full window, or less when a segment ends early
        start += n if len(seen) % 2 else int(rng.integers(1500, N_FRAMES))
        windows.release_before(start * HOP_LENGTH)
        largest = max(largest, len(windows._buf))
    # 30 s of window plus one 60-s decoded block at most, never the whole file
    assert largest <= 3 * N_SAMPLES + 2 * N_FFT + 8192, largest
    assert windows.n_samples == LONG_SAMPLES
    assert seen[-1][0] + seen[-1][1] == total
    assert seen[-1][1] < N_FRAMES  # the partial last window was checked against the reference
    assert windows.available_frames(total) == 0
    assert windows.available_frames(total - 5) == 5


def test_total_frames_reads_to_the_end_in_bounded_memory(long_flac):
    path, _ = long_flac
    windows = AudioWindows(path)
    assert windows.total_frames() == LONG_SAMPLES // HOP_LENGTH
    assert windows.n_samples == LONG_SAMPLES
    assert len(windows._buf) <= 3 * N_SAMPLES + 2 * N_FFT + 8192


def test_stream_audio_blocks_add_up(long_flac):
    path, audio = long_flac
    blocks = list(stream_audio(path, block_seconds=60.0))
    assert all(len(b) <= 61 * SAMPLE_RATE for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), audio)


# -- bad input ------------------------------------------------------------------------------

def _assert_one_line_naming(error: AudioError, path) -> None:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("valid")
    s = tone(440, 3.0, 16000)
    files = {}
    for ext, codec in [("wav", "pcm_s16le"), ("flac", "flac"), ("mp3", "libmp3lame"), ("ogg", "libopus"),
                       ("m4a", "aac")]:
        if _encoder(codec) is not None:
            write_audio(d / f"ok.{ext}", s, 16000, codec)
            files[ext] = d / f"ok.{ext}"
    return files


def _bad(tmp_path, kind):
    if kind == "missing":
        return tmp_path / "nope.wav"
    if kind == "directory":
        (tmp_path / "dir.wav").mkdir()
        return tmp_path / "dir.wav"
    if kind == "random-bytes":
        p = tmp_path / "junk.wav"
        p.write_bytes(np.random.default_rng(0).bytes(5000))
        return p
    if kind == "text-renamed":
        p = tmp_path / "notes.wav"
        p.write_text("these are meeting notes, not audio\n" * 40)
        return p
    if kind == "subtitles-renamed":  # ffmpeg reads it as a subtitle file: no audio stream
        p = tmp_path / "talk.mp3"
        p.write_text("1\n00:00:00,000 --> 00:00:02,000\nHello there.\n\n2\n00:00:02,000 --> 00:00:04,000\nBye.\n")
        return p
    if kind == "zero-length":
        p = tmp_path / "empty.flac"
        p.write_bytes(b"")
        return p
    if kind == "wav-without-samples":
        p = tmp_path / "nothing.wav"
        sf.write(p, np.zeros(0, np.float32), 16000, subtype="PCM_16")
        assert p.stat().st_size > 0
        return p
    if kind == "flac-without-samples":
        p = tmp_path / "nothing.flac"
        write_audio(p, np.zeros(0, np.float32), 16000, "flac")
        assert p.stat().st_size > 0
        return p
    raise AssertionError(kind)


BAD_KINDS = ["missing", "directory", "random-bytes", "text-renamed", "subtitles-renamed", "zero-length",
             "wav-without-samples", "flac-without-samples"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_unreadable_input_is_a_one_line_audio_error(tmp_path, kind):
    path = _bad(tmp_path, kind)
    with pytest.raises(AudioError) as e:
        load_audio(path)
    _assert_one_line_naming(e.value, path)
    assert "Errno" not in str(e.value)
    # the streaming path used by transcription says the same
    with pytest.raises(AudioError) as e2:
        AudioWindows(path).available_frames(0)
    _assert_one_line_naming(e2.value, path)


@pytest.mark.parametrize("ext", ["wav", "flac", "mp3", "ogg", "m4a"])
@pytest.mark.parametrize("keep", [100, 0.5])
def test_truncated_file_gives_partial_audio_or_audio_error(tmp_path, valid_files, ext, keep):
    """A cut-off download: decode what is there (the beginning of the audio), or say it can't be
    read; never another exception type. Half a file with its header (wav, flac, mp3, ogg) decodes
    partially; an .m4a whose index (moov, written last) is cut off cannot be read."""
    if ext not in valid_files:
        pytest.skip(f"no {ext} encoder in PyAV's FFmpeg")
    data = valid_files[ext].read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(data[:n])
    full = load_audio(valid_files[ext])
    try:
        audio = load_audio(path)
    except AudioError as e:
        _assert_one_line_naming(e, path)
        assert not (isinstance(keep, float) and ext != "m4a"), f"half a {ext} file should decode partially"
        return
    assert 0 < len(audio) < len(full)
    if ext in ("wav", "flac"):  # lossless: the beginning of the clip (a damaged last frame aside)
        good = max(0, len(audio) - 4096)
        np.testing.assert_array_equal(audio[:good], full[:good])


def test_damage_right_after_a_streamed_block_keeps_what_was_decoded(tmp_path):
    """A file cut inside any FLAC frame keeps everything before it - also when the damaged frame
    is the first one after a 60-s block has been handed out (it used to raise AudioError then)."""
    pcm = np.round(tone(300, 70.0, 16000, 0.3) * 32767).astype(np.int16)
    path = tmp_path / "long.flac"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    with av.open(str(path)) as c:
        packets = [(p.pos, p.size) for p in c.demux(audio=0) if p.size]
    with av.open(str(path)) as c:
        ends = np.cumsum([f.samples for f in c.decode(audio=0)])
    assert len(ends) == len(packets)
    first_block = int(np.argmax(ends >= 60 * SAMPLE_RATE))  # the frame that completes the first block
    data = path.read_bytes()
    for k in (first_block, first_block + 1, first_block + 2):
        pos, size = packets[k]
        cut = tmp_path / f"cut{k}.flac"
        cut.write_bytes(data[: pos + size // 2])  # the decoder fails on the half frame
        audio = load_audio(cut)
        assert len(audio) >= ends[k - 1], k
        good = ends[k - 1]  # the damaged frame itself may decode to garbage
        np.testing.assert_array_equal(audio[:good], pcm[:good].astype(np.float32) / 32768.0)


def test_silence_loads_fine(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(2 * SAMPLE_RATE, np.float32), SAMPLE_RATE, subtype="PCM_16")
    audio = load_audio(path)
    assert len(audio) == 2 * SAMPLE_RATE and not audio.any()
    features, n = AudioWindows(path).window(0)
    assert n == 200 and np.isfinite(features.numpy()).all()


def test_empty_array_is_an_error():
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(np.zeros(0, np.float32))


# -- samples given directly (the Python API) ------------------------------------------------

def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def _text(tiny, audio) -> str:
    segments, _ = tiny.transcribe(audio, temperature=0.0)
    return _norm("".join(s.text for s in segments))


@pytest.mark.parametrize("dtype, scale, offset", [(np.int16, 32768, 0), (np.int32, 2 ** 31, 0), (np.int8, 128, 0),
                                                  (np.uint8, 128, 128)])
def test_integer_pcm_is_scaled_to_float(dtype, scale, offset):
    x = np.array([-1.0, -0.5, 0.0, 0.25, 0.5], np.float32)
    pcm = (x * scale + offset).astype(dtype)
    np.testing.assert_allclose(as_samples(pcm), x, atol=1 / scale)


def test_int16_samples_transcribe_like_the_file(tiny, jfk_audio):
    pcm = np.round(jfk_audio * 32767).astype(np.int16)
    assert "ask not what your country can do for you" in _text(tiny, pcm)  # it used to be '' silently


@pytest.mark.parametrize("layout", ["channels, samples", "samples, channels"])
def test_a_stereo_array_is_mixed_down_either_way_round(tiny, jfk_audio, layout):
    quiet = np.zeros_like(jfk_audio)
    stereo = np.stack([jfk_audio, quiet]) if layout == "channels, samples" else np.stack([jfk_audio, quiet], axis=1)
    np.testing.assert_allclose(as_samples(stereo), jfk_audio / 2)
    text = _text(tiny, stereo)
    assert text.count("country") == 2  # once through, not twice (it was flattened)


def test_a_list_or_a_tensor_of_samples_is_an_array(tiny, jfk_audio):
    import torch

    np.testing.assert_array_equal(as_samples(jfk_audio.tolist()), jfk_audio)
    np.testing.assert_array_equal(as_samples(torch.from_numpy(jfk_audio)), jfk_audio)
    assert "ask not what your country" in _text(tiny, jfk_audio[: 8 * SAMPLE_RATE].tolist())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_one_audio_error(tiny, jfk_audio, bad):
    audio = jfk_audio.copy()
    audio[SAMPLE_RATE : SAMPLE_RATE + 3] = bad
    with pytest.raises(AudioError) as e:
        tiny.transcribe(audio)
    assert str(e.value) == "<array>: 3 samples are NaN or infinite"


@pytest.mark.parametrize("samples, message", [
    (np.ones((3, 3), np.float32), "a 3 x 3 array is not (channels, samples)"),
    (np.ones((9, 16000), np.float32), "with 1 to 8 channels"),
    (np.ones((2, 2, 16000), np.float32), "3-dimensional"),
    (np.ones(16000, np.int64), "int64"),
    (np.ones(16000, np.complex64), "complex64"),
    (np.ones(16000, bool), "bool"),
    (["a", "b"], "<U1"),
    ([[0.1], [0.1, 0.2]], "not an array of samples"),
], ids=["3x3", "9 channels", "3-D", "int64", "complex", "bool", "strings", "ragged"])
def test_samples_that_cannot_be_read_unambiguously_are_refused(samples, message):
    with pytest.raises(AudioError, match=re.escape(message)) as e:
        load_audio(samples)
    assert str(e.value).startswith("<array>: ") and "\n" not in str(e.value)


@pytest.mark.parametrize("version, passed", [("18.1.0", True), ("19.0.2", False)])
def test_pyav_19_which_dropped_metadata_errors_still_opens_files(monkeypatch, version, passed):
    from whisper_eas.io import audio

    real_open = av.open
    seen = []

    def open_as_that_version(*args, **kwargs):
        seen.append("metadata_errors" in kwargs)
        if version.startswith("19") and "metadata_errors" in kwargs:
            raise TypeError("open() got an unexpected keyword argument 'metadata_errors'")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(av, "__version__", version)
    monkeypatch.setattr(av, "open", open_as_that_version)
    audio._lenient_metadata.cache_clear()
    try:
        samples = audio.load_audio(str(Path(__file__).resolve().parents[1] / "samples" / "jfk.flac"))
    finally:
        audio._lenient_metadata.cache_clear()
    assert len(samples) == 176000
    assert seen and all(s == passed for s in seen)
