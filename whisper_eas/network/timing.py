"""Word timestamps: align text tokens to audio frames by dynamic time warping over the
cross-attention of the model's alignment heads (openai-whisper's method).

With EAS the cross-attention covers only the kept tokens; it is spread back onto the original
50-tokens-per-second axis through `kept_index` (each frame takes the weight of the kept token it
belongs to, shared among the frames that token stands for), so words land on real time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np
import torch
import torch.nn.functional as F

from .model import TokenSet, Whisper
from .tokenizer import Tokenizer
from ..types import Word

TOKENS_PER_SECOND = 50  # encoder tokens per second: 100 mel frames per second, halved by the conv stem
TIME_PRECISION = 0.02  # seconds per timestamp token (= per encoder token)
SENTENCE_END = ".。!！?？"


@dataclass
class WordTiming:
    word: str
    tokens: List[int]
    start: float
    end: float
    probability: float


def dtw(cost: np.ndarray):
    """Monotonic alignment path through `cost` (rows x cols), minimising the summed cost;
    computed one anti-diagonal at a time so numpy does the inner loop."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0 diagonal, 1 from above, 2 from the left
    acc[0, 0] = 0
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        options = np.stack([acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]])
        choice = options.argmin(axis=0)
        acc[i, j] = cost[i - 1, j - 1] + options[choice, np.arange(len(i))]
        trace[i, j] = choice
    trace[0, :] = 2
    trace[:, 0] = 1
    i, j, path = n, m, []
    while i > 0 or j > 0:
        path.append((i - 1, j - 1))
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    path = np.array(path[::-1])
    return path[:, 0], path[:, 1]


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    flat = x.reshape(1, -1, x.shape[-1])  # reflect padding wants a 3-D tensor
    padded = F.pad(flat, (pad, pad), mode="reflect")[0]
    return padded.unfold(-1, width, 1).median(dim=-1).values.reshape(x.shape)


def frame_weights(probs: torch.Tensor, audio: TokenSet, n_tokens: int) -> torch.Tensor:
    """(..., k) attention over kept tokens -> (..., n_tokens) over original token frames."""
    if audio.size is None:
        return probs[..., :n_tokens]
    kept = audio.kept_index[0]
    size = audio.size[0]
    valid = size > 0
    kept, size, probs = kept[valid], size[valid], probs[..., valid]
    frames = torch.arange(n_tokens, device=kept.device)
    slot = (torch.searchsorted(kept, frames, right=True) - 1).clamp(min=0)
    return probs[..., slot] / size[slot]


@torch.inference_mode()
def find_alignment(model: Whisper, tokenizer: Tokenizer, text_tokens: List[int], audio: TokenSet,
                   num_frames: int, medfilt_width: int = 7) -> List[WordTiming]:
    if not text_tokens:
        return []
    tokens = [*tokenizer.sot_sequence, tokenizer.no_timestamps, *text_tokens, tokenizer.eot]
    cache = model.decoder.new_cache(audio)
    cross: list = []
    hidden = model.decoder(torch.tensor([tokens], device=audio.x.device), cache, cross_probs=cross)
    n_sot = len(tokenizer.sot_sequence)
    logits = model.decoder.logits(hidden[0, n_sot:]).float()[:, : tokenizer.eot]
    probs = logits.softmax(dim=-1)
    text_probs = probs[torch.arange(len(text_tokens)), torch.tensor(text_tokens)].cpu().numpy()

    weights = torch.stack([cross[layer][0, head] for layer, head in model.alignment_heads]).float()
    weights = frame_weights(weights, audio, num_frames // 2)
    weights = weights / weights.sum(dim=-1, keepdim=True).clamp(min=1e-12)
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = median_filter((weights - mean) / std.clamp(min=1e-12), medfilt_width)
    matrix = weights.mean(dim=0)[n_sot:-1].cpu().numpy()
    text_index, time_index = dtw(-matrix.astype(np.float64))

    words, word_tokens = tokenizer.split_to_word_tokens(text_tokens + [tokenizer.eot])
    if len(word_tokens) <= 1:
        return []
    boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
    jump_times = time_index[jumps] / TOKENS_PER_SECOND
    starts, ends = jump_times[boundaries[:-1]], jump_times[boundaries[1:]]
    word_probs = [float(np.mean(text_probs[i:j])) for i, j in zip(boundaries[:-1], boundaries[1:])]
    return [WordTiming(w, t, float(s), float(e), p)
            for w, t, s, e, p in zip(words, word_tokens, starts, ends, word_probs)]


def merge_punctuations(alignment: List[WordTiming], prepended: str, appended: str) -> None:
    """Attach opening punctuation to the next word and closing punctuation to the previous."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        previous, following = alignment[i], alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word = previous.word + following.word
            following.tokens = previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        previous, following = alignment[i], alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word = previous.word + following.word
            previous.tokens = previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def add_word_timestamps(model: Whisper, tokenizer: Tokenizer, audio: TokenSet, segments: list,
                        num_frames: int, time_offset: float, options, last_speech_end: float) -> float:
    """Fill `segment.words` for the segments of one window, and tighten the segment bounds to
    their words (openai-whisper's heuristics for over-long first/last words included).
    `last_speech_end` is where the previous speech ended (seconds); returns the new value."""

    per_segment = [[t for t in s.tokens if t < tokenizer.eot] for s in segments]
    text_tokens = [t for tokens in per_segment for t in tokens]
    alignment = find_alignment(model, tokenizer, text_tokens, audio, num_frames)
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = median * 2
    if len(durations):  # truncate long words at sentence boundaries
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > longest:
                if alignment[i].word in SENTENCE_END:
                    alignment[i].end = alignment[i].start + longest
                elif alignment[i - 1].word in SENTENCE_END:
                    alignment[i].start = alignment[i].end - longest
    merge_punctuations(alignment, options.prepend_punctuations, options.append_punctuations)

    index = 0
    for segment, tokens in zip(segments, per_segment):
        saved, words = 0, []
        while index < len(alignment) and saved < len(tokens):
            timing = alignment[index]
            if timing.word:
                words.append(Word(round(time_offset + timing.start, 2), round(time_offset + timing.end, 2),
                                  timing.word, round(timing.probability, 4)))
            saved += len(timing.tokens)
            index += 1
        if words:
            first, last = words[0], words[-1]
            # the first word after a pause should not stretch back over the silence
            if first.end - last_speech_end > median * 4 and (
                    first.end - first.start > longest or (len(words) > 1 and words[1].end - first.start > longest * 2)):
                if len(words) > 1 and words[1].end - words[1].start > longest:
                    boundary = max(words[1].end / 2, words[1].end - longest)
                    first.end = words[1].start = boundary
                first.start = max(0.0, first.end - longest)
            if segment.start < first.end and segment.start - 0.5 > first.start:
                first.start = max(0.0, min(first.end - median, segment.start))
            else:
                segment.start = first.start
            if segment.end > last.start and segment.end + 0.5 < last.end:
                last.end = max(last.start + median, segment.end)
            else:
                segment.end = last.end
            last_speech_end = segment.end
        segment.words = words
    return last_speech_end
