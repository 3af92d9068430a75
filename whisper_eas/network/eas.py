"""Early attentive sparsification (EAS): shrink the encoder's 1500 time tokens part-way through.

After encoder block L (or before block 0, L = -1) an EAS stage

1. scores every token; the default score is the attention it *receives* in block L's
   self-attention, averaged over heads and queries (the block's own softmax, kept from its
   forward pass, so scoring costs no second attention pass);
2. keeps the k best tokens in time order, remembering each one's original frame (`kept_index`);
   the positional embedding was added at the input, so kept tokens still know where they are;
3. merges every other token into its most similar kept token (or drops it): a kept token that
   stands for n tokens holds their size-weighted mean and adds log(n) to its attention logits as
   a key ("proportional attention", as in Token Merging), in the later encoder blocks and in the
   decoder's cross-attention. Merging matters because Whisper's padding frames act as attention
   sinks: dropping them changes where attention mass goes and the decoder hallucinates.

Padding-aware selection (`pad_stride`): the pipeline knows where each window's audio ends, so
padding tokens need no score. At the first stage they are pooled in runs of `pad_stride` (one
token per run, with its size), and the sparsity and the score apply to the speech tokens only.
Short clips then shed most of their window and long speech keeps what it needs.

Pauses inside the audio (`pause`): the same pooling for runs of quiet tokens inside the speech -
at least `pause_min` tokens whose log-mel energy is `pause_db` below the window's speech level,
less `pause_edge` tokens at each end - pooled in runs of `pause`, before the first stage.

Adjacent merging (`score=adjacent`), for windows full of speech: instead of ranking tokens, merge
neighbours that say the same thing. Speech changes more slowly than 50 tokens a second, so
neighbouring tokens are often near-duplicates; in the spirit of ToMe and A-ToMe, every other
candidate may join the more similar of its two neighbours (cosine similarity of the hidden
states, centred on the window's mean), and the `sparsity` share of candidates that are most
similar to a neighbour do (`threshold=t` instead: all at least that similar). Targets never move,
so runs never chain, one stage removes at most half, and a second stage merges the merged. The
merged token holds the size-weighted mean, and proportional attention keeps its weight as a key.
Ranking by attention keeps the tokens that many attend to and loses the words between them;
merging neighbours keeps every stretch of the signal represented.

k is `ceil((1 - s) * n)` of the n candidate tokens, or, with `adaptive = p`, the fewest tokens
holding a share p of the score mass (at least `min_keep`). Items of a batch may keep different
numbers of tokens; the shorter ones are padded with size-0 tokens, which log(0) = -inf masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Dict, Optional, Tuple, Union

import torch
from torch import Tensor

from ..errors import OptionsError
from .model import AttentionRecord, TokenReducer, TokenSet


@dataclass(frozen=True)
class Stage:
    layer: int  # prune after this encoder block; -1: before block 0
    sparsity: float  # share of the candidate tokens removed


@dataclass(frozen=True)
class EASConfig:
    stages: Tuple[Stage, ...]
    score: str = "attention"
    merge: bool = True  # merge removed tokens into kept ones (False: drop them)
    adaptive: Optional[float] = None  # keep the smallest set holding this share of the score mass
    min_keep: int = 8  # adaptive mode: floor on the tokens kept per item
    pad_stride: Optional[int] = None  # pool padding tokens in runs of this many (None: no padding rule)
    seed: int = 0  # for the "random" score
    pause: Optional[int] = None  # pool pauses inside the audio in runs of this many tokens (None: no pause rule)
    pause_db: float = 30.0  # a token is in a pause when its energy is this far below the window's speech level
    pause_min: int = 10  # shorter pauses (in tokens, 20 ms each) are left alone
    pause_edge: int = 2  # tokens kept as they are at each end of a pause
    threshold: Optional[float] = None  # adjacent scores: merge every pair at least this similar

    def __post_init__(self):
        object.__setattr__(self, "stages", tuple(sorted(self.stages, key=lambda s: s.layer)))
        layers = [s.layer for s in self.stages]
        if len(set(layers)) != len(layers):
            raise OptionsError("EAS: at most one stage per layer")
        for s in self.stages:
            if s.layer < -1:
                raise OptionsError(f"EAS layer {s.layer} is out of range (use -1 for the input, 0.. for blocks)")
            if not 0.0 <= s.sparsity < 1.0:
                raise OptionsError(f"EAS sparsity must be in [0, 1), got {s.sparsity}")
        if self.score not in SCORES:
            raise OptionsError(f"unknown EAS score {self.score!r}: use one of {', '.join(SCORES)}")
        if self.adaptive is not None and not 0.0 < self.adaptive <= 1.0:
            raise OptionsError(f"EAS adaptive mass must be in (0, 1], got {self.adaptive}")
        if self.pad_stride is not None and self.pad_stride < 1:
            raise OptionsError("EAS padding stride must be >= 1")
        if self.min_keep < 1:
            raise OptionsError("EAS min_keep must be >= 1")
        if self.pause is not None and self.pause < 1:
            raise OptionsError("EAS pause stride must be >= 1")
        if self.score in ADJACENT_SCORES and any(s.sparsity > 0.5 for s in self.stages):
            raise OptionsError("EAS adjacent merging removes at most half the tokens per stage (sparsity <= 0.5)")
        if self.needs_attention and any(s.layer < 0 for s in self.stages if self._prunes(s)):
            raise OptionsError(f"EAS score {self.score!r} needs a block's attention: use a layer >= 0")

    def _prunes(self, stage: Stage) -> bool:
        return stage.sparsity > 0 or self.adaptive is not None or self.threshold is not None

    @property
    def needs_attention(self) -> bool:
        return self.score in ATTENTION_SCORES or self.score == "adjacent-keys"

    @property
    def is_dense(self) -> bool:
        """True when no stage would change the token set: the exact dense path runs."""
        return self.pad_stride is None and self.pause is None and not any(self._prunes(s) for s in self.stages)

    def check_layers(self, n_layers: int) -> None:
        for s in self.stages:
            if s.layer >= n_layers:
                raise OptionsError(f"EAS layer {s.layer} is out of range: this encoder has blocks 0..{n_layers - 1}")

    def describe(self) -> str:
        """The canonical string form, in the syntax parse_eas reads: defaults are left out, and so
        are the score and reduction when no stage prunes (then they do nothing).
        E.g. '1:0.5', '0:0.5 score=keynorm drop', '-1:0 pad=32'."""
        parts = [",".join(f"{s.layer}:{s.sparsity:g}" for s in self.stages)]
        if any(self._prunes(s) for s in self.stages):
            if self.score != "attention":
                parts.append(f"score={self.score}")
            if not self.merge:
                parts.append("drop")
        if self.adaptive is not None:
            parts.append(f"adaptive={self.adaptive:g}")
        if self.pad_stride is not None:
            parts.append(f"pad={self.pad_stride}")
        if self.pause is not None:
            parts.append(f"pause={self.pause}")
            if self.pause_db != 30.0:
                parts.append(f"pause_db={self.pause_db:g}")
            if self.pause_min != 10:
                parts.append(f"pause_min={self.pause_min}")
            if self.pause_edge != 2:
                parts.append(f"pause_edge={self.pause_edge}")
        if self.threshold is not None:
            parts.append(f"threshold={self.threshold:g}")
        if self.min_keep != 8 and self.adaptive is not None:
            parts.append(f"min_keep={self.min_keep}")
        if self.seed != 0 and self.score == "random":
            parts.append(f"seed={self.seed}")
        return " ".join(parts)

    def reducer(self, audio_tokens: Tensor, n_layers: int, energy: Optional[Tensor] = None) -> "EASReducer":
        self.check_layers(n_layers)
        return EASReducer(self, audio_tokens, energy)


SPEECH_SHARE = 0.5  # a window whose audio covers at least this share of it is "full of speech"


@dataclass(frozen=True)
class EASPolicy:
    """Two configurations and the rule that picks one for each window by its content.

    A window that is mostly padding (a short clip, the tail of a file) and a window full of speech
    (a chunk of a talk) want different things: the first sheds its padding and must keep every
    speech token, the second has no padding to shed and pays only if speech tokens go. A window
    whose audio covers at least `speech_share` of it runs `speech`, any other runs `short`
    (either may be None: dense). Written 'SHORT | SPEECH', e.g. '-1:0 pad=32 | 0:0.5,3:0.5
    score=adjacent pad=32'."""

    short: Optional[EASConfig]
    speech: Optional[EASConfig]
    speech_share: float = SPEECH_SHARE

    def __post_init__(self):
        if not 0.0 < self.speech_share <= 1.0:
            raise OptionsError(f"EAS speech share must be in (0, 1], got {self.speech_share}")

    def pick(self, frames: int, window_frames: int = 3000) -> Optional[EASConfig]:
        """The configuration for a window holding `frames` audio frames of `window_frames`."""
        return self.speech if frames >= self.speech_share * window_frames else self.short

    def check_layers(self, n_layers: int) -> None:
        for config in (self.short, self.speech):
            if config is not None:
                config.check_layers(n_layers)

    def describe(self) -> str:
        return " | ".join("dense" if c is None else c.describe() for c in (self.short, self.speech))


def config_for(eas: "Union[None, EASConfig, EASPolicy]", frames: int) -> Optional[EASConfig]:
    """The configuration a window of `frames` audio frames runs: a policy picks by content; a
    configuration is for all."""
    return eas.pick(frames) if isinstance(eas, EASPolicy) else eas


def _policy_overrides() -> OptionsError:
    return OptionsError("--eas-score/--eas-adaptive/--eas-pad/--eas-reduce change one configuration, not a "
                        "'SHORT | SPEECH' policy: write them into the --eas spec")


def with_overrides(config: "Union[EASConfig, EASPolicy]", **overrides) -> "Union[EASConfig, EASPolicy]":
    """`config` with EASConfig fields replaced (e.g. a profile's configuration with --eas-score),
    validated as a whole; a policy takes none."""
    if not overrides:
        return config
    if isinstance(config, EASPolicy):
        raise _policy_overrides()
    return replace(config, **overrides)


def parse_eas(text: Optional[str], **overrides) -> "Union[None, EASConfig, EASPolicy]":
    """'1:0.5', '1:0.3,2:0.5', with options: '1:0.5 score=keynorm drop adaptive=0.95 pad=16',
    '0:0.5,3:0.5 score=adjacent pad=32', '-1:0 pad=32 pause=8 pause_db=30'.
    'off' / 'none' / 'dense' / '' -> None (dense). 'SHORT | SPEECH' -> an EASPolicy that runs
    SHORT on windows mostly padding and SPEECH on windows full of speech. `overrides` (EASConfig
    fields, e.g. score="stride") go on top of the text's options before the configuration is
    built, so it is validated once, as a whole: '-1:0.5' with score="stride" is fine although
    '-1:0.5' alone is not (a policy takes none: write them into its two specs)."""
    if text is not None and "|" in text:
        if overrides:
            raise _policy_overrides()
        parts = text.split("|")
        if len(parts) != 2:
            raise OptionsError(f"bad EAS spec {text!r}: a policy is 'SHORT | SPEECH', two configurations")
        short, speech = (parse_eas(part) for part in parts)
        if isinstance(short, EASPolicy) or isinstance(speech, EASPolicy):  # pragma: no cover - split on |
            raise OptionsError(f"bad EAS spec {text!r}")
        return EASPolicy(short, speech)
    if text is None or text.strip().lower() in ("", "off", "none", "dense"):
        return None
    fields = text.replace(";", " ").split()
    stages, kwargs = [], {}
    try:
        for part in fields[0].split(","):
            layer, sparsity = part.split(":")
            stages.append(Stage(int(layer), float(sparsity)))
        for opt in fields[1:]:
            key, _, value = opt.partition("=")
            if key in ("merge", "drop") and not value:
                kwargs["merge"] = key == "merge"
            elif key == "score":
                kwargs["score"] = value
            elif key == "adaptive":
                kwargs["adaptive"] = float(value)
            elif key == "pad":
                kwargs["pad_stride"] = int(value)
            elif key == "min_keep":
                kwargs["min_keep"] = int(value)
            elif key == "seed":
                kwargs["seed"] = int(value)
            elif key == "pause":
                kwargs["pause"] = int(value)
            elif key in ("pause_db", "threshold"):
                kwargs[key] = float(value)
            elif key in ("pause_min", "pause_edge"):
                kwargs[key] = int(value)
            else:
                raise OptionsError(f"unknown EAS option {opt!r}")
    except ValueError as e:  # int()/float() of a bad number, or one of ours (an OptionsError)
        if isinstance(e, OptionsError):
            raise
        raise OptionsError(f"bad EAS spec {text!r}: expected LAYER:SPARSITY[,LAYER:SPARSITY] [score=NAME] "
                         f"[merge|drop] [adaptive=P] [pad=N] [pause=N] [threshold=T], e.g. '1:0.5'") from None
    return EASConfig(tuple(stages), **{**kwargs, **overrides})


# ---------------------------------------------------------------------------------------------
# Scores: higher = more important. Each returns (B, T); invalid (size-0) tokens are masked later.

def _received(att: AttentionRecord, valid: Tensor) -> Tensor:
    return att.received.mean(dim=1) / att.n_queries[:, None]


def _received_offdiag(att: AttentionRecord, valid: Tensor) -> Tensor:
    # without a token's attention to itself, which favours tokens that only look at themselves
    return (att.received - att.diagonal).mean(dim=1) / att.n_queries[:, None]


def _received_max_head(att: AttentionRecord, valid: Tensor) -> Tensor:
    # a token one head relies on counts even if the other heads ignore it
    return att.received.max(dim=1).values / att.n_queries[:, None]


def _key_norm(att: AttentionRecord, valid: Tensor) -> Tensor:
    return att.keys.float().norm(dim=-1).mean(dim=1)


ATTENTION_SCORES: Dict[str, Callable[[AttentionRecord, Tensor], Tensor]] = {
    "attention": _received,
    "attention-offdiag": _received_offdiag,
    "attention-maxhead": _received_max_head,
    "keynorm": _key_norm,
}
# Baselines that need no attention: chance, an even grid, and the first k frames (whisper.cpp's
# audio_ctx trick, which is known to hallucinate without fine-tuning).
POSITION_SCORES = ("random", "stride", "truncate")
# Merging neighbours instead of ranking: the most similar adjacent pairs become one token.
ADJACENT_SCORES = ("adjacent", "adjacent-keys")
SCORES = tuple(ATTENTION_SCORES) + POSITION_SCORES + ADJACENT_SCORES


def _position_score(name: str, tokens: TokenSet, seed: int) -> Tensor:
    b, t = tokens.kept_index.shape
    if name == "random":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(b, t, generator=g).to(tokens.x.device)
    if name == "truncate":
        return -tokens.kept_index.float()
    # stride: rank tokens so that any top-k is spread evenly: bit-reversed order of position
    return _even_spread_rank(t, tokens.x.device).expand(b, t)


def _even_spread_rank(t: int, device) -> Tensor:
    """A score over 0..t-1 whose top-k, for every k, is close to an even grid (van der Corput)."""
    bits = max(1, math.ceil(math.log2(max(t, 2))))
    idx = torch.arange(t, device=device)
    rev = torch.zeros_like(idx)
    for i in range(bits):
        rev |= ((idx >> i) & 1) << (bits - 1 - i)
    return -rev.float()


# ---------------------------------------------------------------------------------------------
# The reduction

class EASReducer(TokenReducer):
    def __init__(self, config: EASConfig, audio_tokens: Tensor, energy: Optional[Tensor] = None):
        self.config = config
        self.audio_tokens = audio_tokens  # (B,) real-audio tokens per window (the rest is padding)
        self.stages = {s.layer: s for s in config.stages}
        self.first_layer = config.stages[0].layer if config.stages else -1
        self.pauses: Optional[Tensor] = None  # (B, T) tokens inside pauses, by original frame
        if config.pause is not None and energy is not None:
            self.pauses = pause_tokens(energy, audio_tokens, config.pause_db, config.pause_min, config.pause_edge)

    def wants_attention(self, block_index: int) -> Optional[str]:
        stage = self.stages.get(block_index)
        if stage is None or not self.config.needs_attention or not self.config._prunes(stage):
            return None
        return "keys" if self.config.score == "adjacent-keys" else "probs"  # keys: the fused kernel runs

    def __call__(self, block_index: int, tokens: TokenSet, attention: Optional[AttentionRecord]) -> TokenSet:
        cfg = self.config
        stage = self.stages.get(block_index)
        pool = block_index == self.first_layer and (cfg.pad_stride is not None or cfg.pause is not None)
        if pool and cfg.pause is not None:  # pauses pooled first: only speech competes in the stage
            tokens = self._pool(tokens)
            pool = False
        if stage is not None and cfg._prunes(stage):
            tokens = self._prune(block_index, stage, tokens, attention)
        if pool:
            tokens = self._pool(tokens)
        return tokens

    def _pool(self, tokens: TokenSet) -> TokenSet:
        return pool_padding(tokens, self.audio_tokens, self.config.pad_stride, self.pauses, self.config.pause)

    def _prune(self, block_index: int, stage: Stage, tokens: TokenSet, attention) -> TokenSet:
        cfg = self.config
        valid = tokens.size > 0 if tokens.size is not None else torch.ones_like(tokens.kept_index, dtype=torch.bool)
        if cfg.score in ADJACENT_SCORES:
            score = None
        elif cfg.needs_attention:
            score = ATTENTION_SCORES[cfg.score](attention, valid).float()
        else:
            score = _position_score(cfg.score, tokens, cfg.seed + block_index)
        # Candidates compete for the k slots; with the padding rule (or the pause rule) only speech
        # competes, and padding (and pauses) are kept, to be pooled or pooled already.
        candidate, protected = valid, torch.zeros_like(valid)
        if cfg.pad_stride is not None or cfg.pause is not None:
            is_speech = tokens.kept_index < self.audio_tokens[:, None]
            if self.pauses is not None:
                is_speech = is_speech & ~self.pauses.gather(1, tokens.kept_index.clamp(min=0))
            candidate, protected = valid & is_speech, valid & ~is_speech
        if cfg.score in ADJACENT_SCORES:
            source = tokens.x if cfg.score == "adjacent" else attention.keys.float().mean(dim=1)
            return merge_adjacent(tokens, source, candidate, stage.sparsity, cfg.threshold)
        k = self._keep_counts(score, candidate, stage.sparsity)
        return select_tokens(tokens, score, candidate, protected, k, cfg.merge)

    def _keep_counts(self, score: Tensor, candidate: Tensor, sparsity: float) -> Tensor:
        n = candidate.sum(dim=1)
        if self.config.adaptive is None:
            return torch.ceil((1.0 - sparsity) * n.float()).long()
        # Attention scores are probability mass already; other scores (norms, ranks) go through a
        # softmax so that the rule still reads "the smallest set holding p".
        if self.config.needs_attention:
            mass = score.clamp(min=0).masked_fill(~candidate, 0.0)
        else:
            mass = score.masked_fill(~candidate, float("-inf")).softmax(dim=1)
        mass = mass / mass.sum(dim=1, keepdim=True).clamp(min=1e-30)
        cumulative = mass.sort(dim=1, descending=True).values.cumsum(dim=1)
        k = (cumulative < self.config.adaptive).sum(dim=1) + 1
        return torch.minimum(torch.clamp(k, min=self.config.min_keep), n)


def pool_padding(tokens: TokenSet, audio_tokens: Tensor, stride: Optional[int],
                 pauses: Optional[Tensor] = None, pause_stride: Optional[int] = None) -> TokenSet:
    """Replace each run of `stride` padding tokens (index >= the item's audio length) by their
    size-weighted mean, of size = the run's total size; audio tokens pass unchanged, except
    that tokens marked in `pauses` (B, T) are pooled the same way in runs of `pause_stride`."""
    b, t, d = tokens.x.shape
    size = tokens.size if tokens.size is not None else torch.ones(b, t, dtype=tokens.x.dtype, device=tokens.x.device)
    idx = tokens.kept_index
    audio = audio_tokens[:, None]
    group = idx.clone()
    if stride is not None:
        is_pad = (idx >= audio) & (size > 0)
        # group id: audio tokens each their own group, padding grouped by run of `stride` frames
        group = torch.where(is_pad, audio + (idx - audio) // stride * stride, group)
    if pauses is not None and pause_stride is not None:
        inside = pauses.gather(1, idx.clamp(min=0)) & (idx >= 0) & (idx < audio) & (size > 0)
        # a pause run starts where `inside` turns on; its tokens are grouped by `pause_stride`
        # counted from that start
        first = torch.where(inside & ~_shift_right(inside), idx, torch.full_like(idx, -1))
        run_start = torch.cummax(first, dim=1).values
        group = torch.where(inside, run_start + (idx - run_start) // pause_stride * pause_stride, group)
    group = torch.where(size > 0, group, torch.full_like(group, -1))
    return _merge_groups(tokens.x, size, idx, group, weighted=tokens.size is not None)


def _shift_right(mask: Tensor) -> Tensor:
    return torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], dim=1)


def pause_tokens(energy: Tensor, audio_tokens: Tensor, drop_db: float, min_run: int, edge: int) -> Tensor:
    """(B, T) True for tokens inside a pause: at least `drop_db` below the window's speech level
    (the 90th percentile of its audio tokens' energy), in runs of at least `min_run` tokens, minus
    `edge` tokens at each end of the run (word onsets and endings stay as they are). `energy` is
    the mean normalised log-mel of each token's frames (1 unit = 40 dB)."""
    b, t = energy.shape
    pos = torch.arange(t, device=energy.device)
    is_audio = pos[None, :] < audio_tokens[:, None]
    out = torch.zeros(b, t, dtype=torch.bool, device=energy.device)
    for i in range(b):
        n = int(audio_tokens[i])
        if n < min_run:
            continue
        e = energy[i, :n].float()
        level = torch.quantile(e, 0.9)
        quiet = (e < level - drop_db / 40.0).tolist()
        j = 0
        while j < n:
            if not quiet[j]:
                j += 1
                continue
            k = j
            while k < n and quiet[k]:
                k += 1
            if k - j >= min_run and k - j > 2 * edge:
                out[i, j + edge : k - edge] = True
            j = k
    return out & is_audio


def merge_adjacent(tokens: TokenSet, source: Tensor, candidate: Tensor, sparsity: float,
                   threshold: Optional[float]) -> TokenSet:
    """Merge the most similar neighbouring candidates (adjacent-token merging in the spirit of
    ToMe / A-ToMe): every other candidate (the odd ones of each row, in time order) may join the
    more similar of its two neighbours; the `sparsity` share of the candidates (or, with
    `threshold`, every one at least that similar, by cosine of `source`) with the highest
    similarity are merged, size-weighted, into that neighbour. Targets never move, so no
    chains form, and at most half the candidates go.

    The similarities are centred on the mean of all the row's tokens, but only the stretch from
    its first candidate to its last is compared and merged: a token outside it can be neither a
    merged token nor a target (both neighbours must be candidates). Before the first block of a
    short clip that stretch is its speech, a tenth of the window, and the padding passes as it
    is (the same values: each is its size-weighted sum over its size, as a merged token is)."""
    b, t, d = tokens.x.shape
    size = tokens.size if tokens.size is not None else torch.ones(b, t, dtype=tokens.x.dtype, device=tokens.x.device)
    xs, idxs, sizes = [], [], []
    for i in range(b):
        valid = (size[i] > 0).nonzero()[:, 0]
        if len(valid) == t:  # no batch padding in this row: views, not copies
            valid = slice(None)
        cand = candidate[i, valid]
        x, s, ix = tokens.x[i, valid], size[i, valid], tokens.kept_index[i, valid]
        src = source[i, valid].float()
        mean = src.mean(dim=0, keepdim=True)  # what all tokens share says nothing of similarity
        at = cand.nonzero()[:, 0]
        lo, hi = (int(at[0]), int(at[-1]) + 1) if len(at) else (0, 0)
        # outside [lo, hi): the size-weighted sum over the size, as inside (x itself for size 1)
        parts = (slice(0, lo), slice(hi, None))
        if tokens.size is None:  # every size 1: x * 1 / 1 is x, bit for bit
            outside = [x[part].float() for part in parts]
        else:
            outside = [(x[part] * s[part, None]).float() / s[part, None].float() for part in parts]
        merged_x, merged_s, merged_ix = _merge_neighbours(x[lo:hi], s[lo:hi], ix[lo:hi], cand[lo:hi],
                                                          src[lo:hi] - mean, sparsity, threshold)
        xs.append(torch.cat([outside[0], merged_x, outside[1]]).to(x.dtype))
        idxs.append(torch.cat([ix[:lo], merged_ix, ix[hi:]]))
        sizes.append(torch.cat([s[:lo], merged_s, s[hi:]]))
    return _pad_rows(xs, idxs, sizes)


def _merge_neighbours(x: Tensor, s: Tensor, ix: Tensor, cand: Tensor, centred: Tensor, sparsity: float,
                      threshold: Optional[float]) -> Tuple[Tensor, Tensor, Tensor]:
    """merge_adjacent on one row's stretch of tokens: (x as float32, sizes, original indices) of
    the tokens left."""
    src = torch.nn.functional.normalize(centred, dim=-1)
    n = len(x)
    sim_next = (src[:-1] * src[1:]).sum(-1)  # similarity of token j and j+1
    # token j may merge left (into j-1) or right (into j+1) when both are candidates
    left = torch.full((n,), -2.0, device=x.device)
    right = torch.full((n,), -2.0, device=x.device)
    both = cand[:-1] & cand[1:]
    left[1:] = torch.where(both, sim_next, torch.tensor(-2.0, device=x.device))
    right[:-1] = torch.where(both, sim_next, torch.tensor(-2.0, device=x.device))
    order = torch.cumsum(cand.long(), 0) - 1  # rank of each candidate among candidates
    odd = cand & (order % 2 == 1)
    best = torch.maximum(left, right)
    target = torch.where(left >= right, torch.arange(n, device=x.device) - 1, torch.arange(n, device=x.device) + 1)
    eligible = odd & (best > -2.0)
    if threshold is not None:
        chosen = eligible & (best >= threshold)
    else:
        r = int(sparsity * int(cand.sum()))
        score = torch.where(eligible, best, torch.tensor(-3.0, device=x.device))
        top = score.topk(min(r, n)).indices if r > 0 else score.new_zeros(0, dtype=torch.long)
        chosen = torch.zeros(n, dtype=torch.bool, device=x.device)
        chosen[top] = True
        chosen &= eligible
    acc = (x * s[:, None]).float()
    tot = s.float().clone()
    src_i = chosen.nonzero()[:, 0]
    acc.index_add_(0, target[src_i], acc[src_i])
    tot.index_add_(0, target[src_i], tot[src_i])
    kept = (~chosen).nonzero()[:, 0]
    return acc[kept] / tot[kept, None], tot[kept].to(s.dtype), ix[kept]


def _merge_groups(x: Tensor, size: Tensor, idx: Tensor, group: Tensor, weighted: bool = True) -> TokenSet:
    """Merge tokens sharing a group id (>= 0, time-ordered) into one; group -1 is discarded.
    `weighted=False`: every size is 1 (tokens not merged before), so the tokens are summed as
    they are (the same sums, without a weighted copy of a whole window's tokens)."""
    b, t, d = x.shape
    out_x, out_idx, out_size = [], [], []
    for i in range(b):
        keep = group[i] >= 0
        keep = slice(None) if bool(keep.all()) else keep  # all kept: views, no copies of the tokens
        g, w, tokens = group[i][keep], size[i][keep], x[i][keep]
        uniq, inverse = torch.unique(g, return_inverse=True)  # sorted = time order
        acc = x.new_zeros(len(uniq), d).index_add_(0, inverse, tokens * w[:, None] if weighted else tokens)
        tot = w.new_zeros(len(uniq)).index_add_(0, inverse, w)
        first = torch.full((len(uniq),), t * 10**6, dtype=idx.dtype, device=idx.device)
        first = first.scatter_reduce(0, inverse, idx[i][keep], reduce="amin")
        out_x.append(acc / tot[:, None])
        out_idx.append(first)
        out_size.append(tot)
    return _pad_rows(out_x, out_idx, out_size)


def _pad_rows(xs, idxs, sizes) -> TokenSet:
    if len(xs) == 1:  # one row: nothing to pad (and no copy of a whole window's tokens)
        return TokenSet(xs[0][None], idxs[0][None], sizes[0][None])
    k = max(len(v) for v in idxs)
    b, d = len(xs), xs[0].shape[-1]
    x = xs[0].new_zeros(b, k, d)
    idx = idxs[0].new_full((b, k), -1)
    size = sizes[0].new_zeros(b, k)
    for i in range(b):
        n = len(idxs[i])
        x[i, :n], idx[i, :n], size[i, :n] = xs[i], idxs[i], sizes[i]
    return TokenSet(x, idx, size)


def select_tokens(tokens: TokenSet, score: Tensor, candidate: Tensor, protected: Tensor, k: Tensor,
                  merge: bool) -> TokenSet:
    """Keep the top-k candidates by score plus the protected tokens, in time order; merge the rest
    into their most similar kept token (cosine similarity of hidden states) or drop them."""
    b, t, d = tokens.x.shape
    size = tokens.size if tokens.size is not None else torch.ones(b, t, dtype=tokens.x.dtype, device=tokens.x.device)
    ranked = score.masked_fill(~candidate, float("-inf")).argsort(dim=1, descending=True)
    rank = torch.empty_like(ranked).scatter_(1, ranked, torch.arange(t, device=score.device).expand(b, t))
    keep = protected | (candidate & (rank < k[:, None]))
    rest = (size > 0) & ~keep
    xs, idxs, sizes = [], [], []
    for i in range(b):
        kept = keep[i].nonzero()[:, 0]  # ascending = time order
        kx, ks = tokens.x[i, kept], size[i, kept]
        if merge and bool(rest[i].any()):
            gone = rest[i].nonzero()[:, 0]
            gx, gs = tokens.x[i, gone], size[i, gone]
            sim = torch.nn.functional.normalize(gx, dim=-1) @ torch.nn.functional.normalize(kx, dim=-1).T
            # similarities within 1e-4 count as equal and the earlier kept token wins: the last
            # bits of a hidden state differ between a batch and a single window, and must not
            # decide where a token goes
            target = (sim * 1e4).round().argmax(dim=1)
            acc = (kx * ks[:, None]).index_add(0, target, gx * gs[:, None])
            ks = ks.index_add(0, target, gs)
            kx = acc / ks[:, None]
        xs.append(kx)
        idxs.append(tokens.kept_index[i, kept])
        sizes.append(ks)
    return _pad_rows(xs, idxs, sizes)
