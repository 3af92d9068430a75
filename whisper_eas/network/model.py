"""The Whisper network: an audio encoder whose token set can shrink part-way, and a text decoder
with a preallocated KV cache.

The shapes follow openai-whisper's `model.py`. Two things differ, both for speed and for EAS:

- Between encoder blocks the tokens travel as a `TokenSet`: the hidden states plus, for every token,
  the original time frame it came from (`kept_index`) and how many frames it stands for (`size`).
  An EAS stage (see `eas.py`) may replace the set after any block; the blocks after it, and the
  decoder's cross-attention, add log(size) to the attention logits of each key, which is
  proportional attention for merged tokens and a -inf mask (size 0) for batch padding.
- The decoder writes its self-attention keys and values into a cache allocated once per window
  (`DecoderCache`) instead of growing it with forward hooks, and computes the cross-attention keys
  and values once per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass(frozen=True)
class ModelDimensions:
    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int
    n_vocab: int
    n_text_ctx: int
    n_text_state: int
    n_text_head: int
    n_text_layer: int

    def __post_init__(self):
        for name, value in self.__dict__.items():
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"model dimension {name} must be a positive integer, got {value!r}")
        if self.n_audio_state % self.n_audio_head or self.n_text_state % self.n_text_head:
            raise ValueError("model width must be divisible by the number of heads")


@dataclass
class TokenSet:
    """Encoder tokens of a batch. Dense: `size` is None and `kept_index` is 0..T-1."""

    x: Tensor  # (B, k, d) hidden states
    kept_index: Tensor  # (B, k) original time frame of each token, -1 for batch padding
    size: Optional[Tensor] = None  # (B, k) frames each token stands for; 0 marks batch padding

    def select(self, index: Tensor) -> "TokenSet":
        """Batch rows `index` (repeats allowed)."""
        size = None if self.size is None else self.size.index_select(0, index)
        return TokenSet(self.x.index_select(0, index), self.kept_index.index_select(0, index), size)

    @staticmethod
    def concat(sets: List["TokenSet"]) -> "TokenSet":
        """Stack the rows of several sets; shorter ones are padded with size-0 (masked) tokens."""
        if all(t.size is None for t in sets) and len({t.x.shape[1] for t in sets}) == 1:
            return TokenSet(torch.cat([t.x for t in sets]), torch.cat([t.kept_index for t in sets]))
        k = max(t.x.shape[1] for t in sets)
        xs, idxs, sizes = [], [], []
        for t in sets:
            pad = k - t.x.shape[1]
            size = t.size if t.size is not None else torch.ones(t.kept_index.shape, dtype=t.x.dtype, device=t.x.device)
            xs.append(F.pad(t.x, (0, 0, 0, pad)))
            idxs.append(F.pad(t.kept_index, (0, pad), value=-1))
            sizes.append(F.pad(size, (0, pad)))
        return TokenSet(torch.cat(xs), torch.cat(idxs), torch.cat(sizes))

    def repeat(self, n: int) -> "TokenSet":
        """Each row n times in a row (for beams and samples)."""
        return self.select(torch.arange(self.x.shape[0], device=self.x.device).repeat_interleave(n))

    @property
    def key_bias(self) -> Optional[Tensor]:
        """Additive attention bias over keys, (B, 1, 1, k): log(size)."""
        if self.size is None:
            return None
        return self.size.log()[:, None, None, :].to(self.x.dtype)


@dataclass
class AttentionRecord:
    """What the EAS scoring block keeps of its self-attention: sums over the queries, so the
    (B, H, k, k) probability matrix never needs to exist at once."""

    keys: Tensor  # (B, H, k, dh)
    # with the probabilities recorded ("probs"; None when only the keys were asked for):
    received: Optional[Tensor] = None  # (B, H, k) probability each key receives, summed over the valid queries
    diagonal: Optional[Tensor] = None  # (B, H, k) each token's attention to itself
    n_queries: Optional[Tensor] = None  # (B,) valid (non-padding) queries


class TokenReducer:
    """An EAS hook: called before block 0 (index -1) and after every encoder block with the
    block's output tokens and, if it asked for it (`wants_attention`), the block's attention."""

    def wants_attention(self, block_index: int) -> Optional[str]:
        """What the hook reads of block `block_index`'s attention: None, "keys" (the keys only:
        the fused attention kernel runs) or "probs" (also the probabilities' sums: the block's
        attention runs in `attention_with_record`)."""
        return None

    def __call__(self, block_index: int, tokens: TokenSet, attention: Optional[AttentionRecord]) -> TokenSet:
        return tokens


def _split_heads(x: Tensor, n_head: int) -> Tensor:
    b, t, d = x.shape
    return x.view(b, t, n_head, d // n_head).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    b, h, t, dh = x.shape
    return x.transpose(1, 2).reshape(b, t, h * dh)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection (the key has no bias in Whisper;
    its slice of the fused bias is zero)."""

    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(n_state, 3 * n_state)
        self.out = nn.Linear(n_state, n_state)

    def forward(self, x: Tensor, key_bias: Optional[Tensor] = None, record: Optional[str] = None):
        """-> (output, AttentionRecord or None); `record`: what to keep (TokenReducer.wants_attention)."""
        q, k, v = (_split_heads(t, self.n_head) for t in self.qkv(x).chunk(3, dim=-1))
        if record == "probs":
            out, kept = attention_with_record(q, k, v, key_bias)
            return self.out(_merge_heads(out)), kept
        out = self.out(_merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=key_bias)))
        return out, (AttentionRecord(keys=k) if record == "keys" else None)


def attention_with_record(q: Tensor, k: Tensor, v: Tensor, key_bias: Optional[Tensor],
                          chunk: int = 128) -> tuple:
    """The EAS scoring block's attention: the same softmax attention, whose probabilities also
    give the importance score, so scoring costs no second pass. Queries go in chunks so that
    memory stays O(chunk x k) per head instead of O(k x k)."""
    b, h, t, dh = q.shape
    scale = dh ** -0.5
    valid = torch.ones(b, t, dtype=q.dtype, device=q.device) if key_bias is None else \
        torch.isfinite(key_bias[:, 0, 0]).to(q.dtype)
    received = q.new_zeros(b, h, t, dtype=torch.float32)
    diagonal = q.new_zeros(b, h, t, dtype=torch.float32)
    out = torch.empty_like(q)
    keys_t = k.transpose(-1, -2)
    for i in range(0, t, chunk):
        j = min(i + chunk, t)
        logits = (q[:, :, i:j] @ keys_t) * scale
        if key_bias is not None:
            logits = logits + key_bias
        probs = logits.softmax(dim=-1)
        out[:, :, i:j] = probs @ v
        received += (probs * valid[:, None, i:j, None]).sum(dim=2, dtype=torch.float32)
        diagonal[:, :, i:j] = torch.diagonal(probs[..., i:j], dim1=-2, dim2=-1).float()
    return out, AttentionRecord(keys=k, received=received, diagonal=diagonal, n_queries=valid.sum(dim=1).float())


class EncoderBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.attn_ln = nn.LayerNorm(n_state)
        self.attn = SelfAttention(n_state, n_head)
        self.mlp_ln = nn.LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))

    def forward(self, x: Tensor, key_bias: Optional[Tensor] = None, record: Optional[str] = None):
        h, attention = self.attn(self.attn_ln(x), key_bias, record)
        x = x + h
        x = x + self.mlp(self.mlp_ln(x))
        return x, attention


class AudioEncoder(nn.Module):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        d = dims.n_audio_state
        self.conv1 = nn.Conv1d(dims.n_mels, d, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d, d, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", torch.zeros(dims.n_audio_ctx, d))
        self.blocks = nn.ModuleList(EncoderBlock(d, dims.n_audio_head) for _ in range(dims.n_audio_layer))
        self.ln_post = nn.LayerNorm(d)

    def embed(self, mel: Tensor, audio_frames: Optional[int] = None) -> Tensor:
        """(B, n_mels, 2T) log-mel -> (B, T, d) tokens with positions added.

        With `audio_frames`, the caller promises that every frame from there on is the same
        padding column. Then only the audio part goes through the convolutions: the interior
        padding tokens are one constant vector, and only the last token (which sees the zero
        padding of the convolution) is computed separately."""
        n_frames = mel.shape[-1]
        edge = None if audio_frames is None else min(n_frames, audio_frames + 8) // 2 * 2
        if edge is None or edge + 16 >= n_frames:
            x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
            return x + self.positional_embedding[: x.shape[1]]
        stem = lambda m: F.gelu(self.conv2(F.gelu(self.conv1(m))))  # noqa: E731
        head = stem(mel[..., : edge + 2])[..., : edge // 2]  # exact up to token edge/2
        pad_column = mel[..., -8:-7].expand(-1, -1, 16)
        interior = stem(pad_column)[..., 4:5]  # a token whose receptive field is all padding
        last = stem(mel[..., -10:])[..., -1:]  # sees the convolution's zero padding
        n_tokens = n_frames // 2
        # written straight into the (B, T, d) layout and the positions added in place: a 30-s
        # window's 1500 tokens are mostly padding, and a concatenation plus a transposed sum
        # cost more than the stem of a short clip
        x = head.new_empty((head.shape[0], n_tokens, head.shape[1]))
        x[:, : edge // 2] = head.transpose(1, 2)
        x[:, edge // 2 : -1] = interior.transpose(1, 2)
        x[:, -1:] = last.transpose(1, 2)
        return x.add_(self.positional_embedding[:n_tokens])

    def forward(self, mel: Tensor, reducer: Optional[TokenReducer] = None,
                audio_frames: Optional[int] = None) -> TokenSet:
        x = self.embed(mel, audio_frames)
        b, t, _ = x.shape
        tokens = TokenSet(x, torch.arange(t, device=x.device).expand(b, t))
        if reducer is not None:
            tokens = reducer(-1, tokens, None)
        for i, block in enumerate(self.blocks):
            want = reducer.wants_attention(i) if reducer is not None else None
            x, attention = block(tokens.x, tokens.key_bias, record=want)
            tokens = TokenSet(x, tokens.kept_index, tokens.size)
            if reducer is not None:
                tokens = reducer(i, tokens, attention)
        tokens.x = self.ln_post(tokens.x)
        return tokens


def decoder_attention(q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor] = None) -> Tensor:
    """Attention for the decoder's few queries. PyTorch's fused CPU kernel is slow for one
    bfloat16/float16 query (about 4x two plain matmuls), so reduced precision takes the matmuls."""
    if q.dtype == torch.float32 or q.shape[-2] > 1:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    weights = (q @ k.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
    if mask is not None:
        weights = weights + mask
    return weights.softmax(dim=-1) @ v


class DecoderCache:
    """Per-window decoder state: self-attention K/V preallocated to the text context, and the
    cross-attention K/V of the encoder tokens, computed once.

    Rows that joined at different times (`join`) each have their own position (`row_lengths`);
    then every entry before `length` holds a number, a row's own K/V up to its position and
    zeros after it (masked out), so that masking never meets uninitialised memory. Their
    cross-attention K/V stay in the groups they joined in (`groups`), each as long as its own
    encoder tokens: reading them is most of a step's memory traffic, and padding every row to
    the longest would multiply it.

    The self-attention K/V are the first rows of a larger store (`_store_k`, `_store_v`): rows
    that leave are closed up in place (`select` with rows in order) and rows that join are
    written into the spare rows (`join`), so a decoding stream allocates its store once instead
    of a new one at every change of rows (fresh large allocations come from the kernel page by
    page: a 16-row tiny.en store, 44 MB, took ~3 ms per copy on an AVX2 AMD EPYC, timed once)."""

    def __init__(self, self_k: Tensor, self_v: Tensor, cross_k: List[Tensor], cross_v: List[Tensor],
                 cross_bias: Optional[Tensor]):
        self._store_k, self._store_v = self_k, self_v  # (layers, capacity >= B, H, n_ctx, dh)
        self._spare: Tuple[Optional[Tensor], Optional[Tensor]] = (None, None)  # what a reordering writes into
        self.self_k, self.self_v = self_k, self_v  # (layers, B, H, n_ctx, dh): the store's first B rows
        self.cross_k, self.cross_v = cross_k, cross_v  # per layer (B, H, k, dh)
        self.cross_bias = cross_bias  # (B, 1, 1, k) or None
        self.length = 0  # positions filled (of every row; of the longest row with row_lengths)
        self.row_lengths: Optional[Tensor] = None  # (B,) positions filled per row, once rows joined at different times
        self.groups: Optional[List[CrossGroup]] = None  # the rows' cross K/V in consecutive groups, once rows joined

    @property
    def batch_size(self) -> int:
        return self.self_k.shape[1]

    def select(self, index: Tensor) -> None:
        """Keep/reorder batch rows (beam search, dropping finished items)."""
        if self.row_lengths is not None:
            self.row_lengths = self.row_lengths.index_select(0, index)
            self.length = int(self.row_lengths.max()) if index.numel() else 0
        kept = index.tolist()
        if all(a < b for a, b in zip(kept, kept[1:])):  # rows leave, the rest keep their order: close up in place
            for i, r in enumerate(kept):
                if r != i:
                    self._store_k[:, i, :, : self.length] = self._store_k[:, r, :, : self.length]
                    self._store_v[:, i, :, : self.length] = self._store_v[:, r, :, : self.length]
        else:  # reordered or repeated rows (beam search): into the spare stores, and the old ones become spare
            spare_k, spare_v = self._spare
            self._spare = (self._store_k, self._store_v)
            self._store_k = _select_prefix(self.self_k, kept, self.length, spare_k)
            self._store_v = _select_prefix(self.self_v, kept, self.length, spare_v)
        self.self_k, self.self_v = self._store_k[:, : len(kept)], self._store_v[:, : len(kept)]
        if self.groups is not None:  # `index` keeps rows in order (DecodingStream drops finished ones)
            self.groups = CrossGroup.select(self.groups, index)
            return
        self.cross_k = [k.index_select(0, index) for k in self.cross_k]
        self.cross_v = [v.index_select(0, index) for v in self.cross_v]
        if self.cross_bias is not None:
            self.cross_bias = self.cross_bias.index_select(0, index)

    def cross_attention(self, q: Tensor, layer: int) -> Tensor:
        """Attention of the queries `q` (B, H, n, dh) over each row's encoder tokens."""
        if self.groups is None:
            return decoder_attention(q, self.cross_k[layer], self.cross_v[layer], self.cross_bias)
        parts, start = [], 0
        for g in self.groups:
            parts.append(decoder_attention(q[start : start + g.rows], g.k[layer], g.v[layer], g.bias))
            start += g.rows
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def lengths(self) -> Tensor:
        """(B,) positions filled per row."""
        if self.row_lengths is not None:
            return self.row_lengths
        return torch.full((self.batch_size,), self.length, dtype=torch.long, device=self.self_k.device)

    def join(self, other: "DecoderCache") -> None:
        """Append `other`'s rows (windows that start decoding while these rows are under way):
        each row keeps its own position, and `other`'s cross-attention K/V become new groups."""
        lengths = torch.cat([self.lengths(), other.lengths()])
        groups = self._cross_groups() + other._cross_groups()
        n = max(self.length, other.length)
        b, rows = self.batch_size, self.batch_size + other.batch_size
        if self._store_k.shape[1] < rows:  # a larger store, with room for as many rows again
            shape = (self.self_k.shape[0], max(rows, 2 * b)) + self.self_k.shape[2:]
            store_k, store_v = self.self_k.new_empty(shape), self.self_v.new_empty(shape)
            store_k[:, :b, :, : self.length] = self.self_k[:, :, :, : self.length]
            store_v[:, :b, :, : self.length] = self.self_v[:, :, :, : self.length]
            self._store_k, self._store_v = store_k, store_v
        for store, theirs in ((self._store_k, other.self_k), (self._store_v, other.self_v)):
            store[:, b:rows, :, : other.length] = theirs[:, :, :, : other.length]
            # a row's positions beyond its own are masked, and must hold numbers: -inf + NaN is NaN
            store[:, :b, :, self.length : n] = 0
            store[:, b:rows, :, other.length : n] = 0
        self.self_k, self.self_v = self._store_k[:, :rows], self._store_v[:, :rows]
        self.groups = groups
        self.cross_k = self.cross_v = []
        self.cross_bias = None
        self.row_lengths, self.length = lengths, n

    def _cross_groups(self) -> List["CrossGroup"]:
        if self.groups is not None:
            return self.groups
        return [CrossGroup(self.batch_size, self.cross_k, self.cross_v, self.cross_bias)]


@dataclass
class CrossGroup:
    """Consecutive rows of a decoder cache that share one cross-attention K/V tensor per layer."""

    rows: int
    k: List[Tensor]  # per layer (rows, H, k, dh)
    v: List[Tensor]
    bias: Optional[Tensor]  # (rows, 1, 1, k) or None

    @staticmethod
    def select(groups: List["CrossGroup"], index: Tensor) -> List["CrossGroup"]:
        """The groups of the rows `index` (increasing); emptied groups go."""
        kept, start, out = index.tolist(), 0, []
        for g in groups:
            local = [r - start for r in kept if start <= r < start + g.rows]
            start += g.rows
            if len(local) == g.rows:
                out.append(g)
            elif local:
                i = torch.tensor(local, device=g.k[0].device)
                out.append(CrossGroup(len(local), [k.index_select(0, i) for k in g.k], [v.index_select(0, i) for v in g.v],
                                      None if g.bias is None else g.bias.index_select(0, i)))
        return out


def _select_prefix(cache: Tensor, index: List[int], n: int, spare: Optional[Tensor] = None) -> Tensor:
    """A store whose first rows are the rows `index` of `cache` (layers, B, H, n_ctx, dh): `spare`
    where it has room (a beam search reorders at every step, and a fresh store of a few hundred
    MB comes from the kernel page by page), else a new one. Only the filled prefix is copied (the
    rest is overwritten before it is read), row by row straight into place: index_select would
    copy each row twice."""
    rows = len(index)
    out = spare
    if out is None or out.shape[1] < rows or out.shape[2:] != cache.shape[2:] or out.dtype != cache.dtype:
        out = cache.new_empty((cache.shape[0], rows) + cache.shape[2:])
    for j, r in enumerate(index):
        out[:, j, :, :n] = cache[:, r, :, :n]
    return out


class DecoderBlock(nn.Module):
    def __init__(self, n_state: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.attn_ln = nn.LayerNorm(n_state)
        self.attn = SelfAttention(n_state, n_head)
        self.cross_attn_ln = nn.LayerNorm(n_state)
        self.cross_q = nn.Linear(n_state, n_state)
        self.cross_kv = nn.Linear(n_state, 2 * n_state)
        self.cross_out = nn.Linear(n_state, n_state)
        self.mlp_ln = nn.LayerNorm(n_state)
        self.mlp = nn.Sequential(nn.Linear(n_state, 4 * n_state), nn.GELU(), nn.Linear(4 * n_state, n_state))

    def cross_keys_values(self, audio: Tensor, valid: Optional[Tensor] = None):
        """The cross-attention K/V of the encoder tokens `audio` (B, k, d). With `valid` (B, k),
        only those tokens are projected; the others (batch padding, masked out by the key bias)
        get zeros."""
        if valid is None:
            kv = self.cross_kv(audio)
        else:
            kv = audio.new_zeros(audio.shape[:2] + (self.cross_kv.out_features,))
            kv[valid] = self.cross_kv(audio[valid])
        k, v = kv.chunk(2, dim=-1)
        return _split_heads(k, self.n_head).contiguous(), _split_heads(v, self.n_head).contiguous()

    def forward(self, x: Tensor, cache: DecoderCache, layer: int, start: int,
                cross_probs: Optional[list] = None, rows: Optional[Tuple[Tensor, Tensor, Tensor]] = None) -> Tensor:
        """`rows` (one new token per row, rows at their own positions): (row index, each row's
        position, the attention bias that hides every row's positions beyond its own)."""
        n = x.shape[1]
        end = start + n
        q, k, v = (_split_heads(t, self.n_head) for t in self.attn.qkv(self.attn_ln(x)).chunk(3, dim=-1))
        if rows is not None:
            index, position, mask = rows
            cache.self_k[layer, index, :, position] = k[:, :, 0]
            cache.self_v[layer, index, :, position] = v[:, :, 0]
            end = mask.shape[-1]
        else:
            cache.self_k[layer, :, :, start:end] = k
            cache.self_v[layer, :, :, start:end] = v
            # one new token sees every cached position; a prompt is causal within its new positions
            mask = None if n == 1 else torch.ones(n, end, dtype=torch.bool, device=x.device).tril(start)
        keys, values = cache.self_k[layer, :, :, :end], cache.self_v[layer, :, :, :end]
        x = x + self.attn.out(_merge_heads(decoder_attention(q, keys, values, mask)))

        q = _split_heads(self.cross_q(self.cross_attn_ln(x)), self.n_head)
        if cross_probs is None:
            h = cache.cross_attention(q, layer)
        else:  # word timestamps need the cross-attention weights themselves
            ck, cv = cache.cross_k[layer], cache.cross_v[layer]
            logits = (q @ ck.transpose(-1, -2)) * (q.shape[-1] ** -0.5)
            if cache.cross_bias is not None:
                logits = logits + cache.cross_bias
            probs = logits.softmax(dim=-1)
            cross_probs.append(probs)
            h = probs @ cv
        x = x + self.cross_out(_merge_heads(h))
        return x + self.mlp(self.mlp_ln(x))


class TextDecoder(nn.Module):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        d = dims.n_text_state
        self.dims = dims
        self.token_embedding = nn.Embedding(dims.n_vocab, d)
        self.register_buffer("positional_embedding", torch.zeros(dims.n_text_ctx, d))
        self.blocks = nn.ModuleList(DecoderBlock(d, dims.n_text_head) for _ in range(dims.n_text_layer))
        self.ln = nn.LayerNorm(d)
        self.output: Optional[nn.Module] = None  # a quantized copy of the tied output projection

    def new_cache(self, audio: TokenSet) -> DecoderCache:
        b = audio.x.shape[0]
        h, d = self.dims.n_text_head, self.dims.n_text_state
        shape = (len(self.blocks), b, h, self.dims.n_text_ctx, d // h)
        valid = None
        if audio.size is not None:  # rows of different lengths: project only the real tokens
            valid = audio.size > 0
            if int(valid.sum()) > 0.9 * valid.numel():
                valid = None
        cross = [blk.cross_keys_values(audio.x, valid) for blk in self.blocks]
        return DecoderCache(
            audio.x.new_empty(shape), audio.x.new_empty(shape),
            [k for k, _ in cross], [v for _, v in cross], audio.key_bias,
        )

    def forward(self, tokens: Tensor, cache: DecoderCache, cross_probs: Optional[list] = None) -> Tensor:
        """Feed `tokens` (B, n) at the cache's current position; returns hidden states (B, n, d)."""
        start = cache.length
        n = tokens.shape[1]
        if cache.row_lengths is not None:  # rows at their own positions: one token each
            return self._forward_rows(tokens, cache)
        if start + n > self.dims.n_text_ctx:
            raise ValueError(f"decoder context of {self.dims.n_text_ctx} tokens exceeded")
        x = self.token_embedding(tokens) + self.positional_embedding[start : start + n]
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, start, cross_probs)
        cache.length = start + n
        return self.ln(x)

    def _forward_rows(self, tokens: Tensor, cache: DecoderCache) -> Tensor:
        position = cache.row_lengths
        if tokens.shape[1] != 1:
            raise ValueError("rows at different positions take one token each")
        end = int(position.max()) + 1
        if end > self.dims.n_text_ctx:
            raise ValueError(f"decoder context of {self.dims.n_text_ctx} tokens exceeded")
        if end > cache.length:  # a new column: zero for the rows that have not reached it (see join)
            cache.self_k[:, :, :, cache.length : end] = 0
            cache.self_v[:, :, :, cache.length : end] = 0
        index = torch.arange(tokens.shape[0], device=tokens.device)
        hidden = torch.arange(end, device=tokens.device)[None, :] > position[:, None]  # (B, end)
        mask = torch.zeros(hidden.shape, dtype=cache.self_k.dtype, device=tokens.device)
        mask = mask.masked_fill(hidden, float("-inf"))[:, None, None, :]
        x = self.token_embedding(tokens) + self.positional_embedding[position][:, None]
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, 0, rows=(index, position, mask))
        cache.row_lengths = position + 1
        cache.length = end
        return self.ln(x)

    def logits(self, hidden: Tensor) -> Tensor:
        if self.output is not None:
            return self.output(hidden)
        return hidden @ self.token_embedding.weight.T


class Whisper(nn.Module):
    def __init__(self, dims: ModelDimensions):
        super().__init__()
        self.dims = dims
        self.encoder = AudioEncoder(dims)
        self.decoder = TextDecoder(dims)
        # (layer, head) pairs whose cross-attention follows the time alignment; set by the loader.
        self.alignment_heads: List[tuple] = [
            (layer, head)
            for layer in range(dims.n_text_layer // 2, dims.n_text_layer)
            for head in range(dims.n_text_head)
        ]

    @property
    def is_multilingual(self) -> bool:
        return self.dims.n_vocab >= 51865

    @property
    def num_languages(self) -> int:
        return self.dims.n_vocab - 51765 - int(self.is_multilingual)

    @classmethod
    def from_openai_state_dict(cls, dims: ModelDimensions, state: dict) -> "Whisper":
        """Build from openai-whisper's parameter names (the one layout every loader maps to)."""
        model = cls(dims)
        model.load_state_dict(_fuse_openai_names(state, dims))
        return model.requires_grad_(False)  # an inference engine: no autograd bookkeeping


def _fuse_openai_names(state: dict, dims: ModelDimensions) -> dict:
    """openai-whisper names, separate q/k/v -> this module's fused projections."""
    state = dict(state)
    out = {}

    def take(name):
        if name not in state:
            raise KeyError(f"checkpoint is missing {name}")
        return state.pop(name)

    def fused_bias(prefix, parts):
        biases = []
        for part in parts:
            w = state[f"{prefix}.{part}.weight"]
            b = state.pop(f"{prefix}.{part}.bias", None)
            biases.append(torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b)
        return torch.cat(biases)

    def attn(prefix, new_prefix, parts, new_name):
        out[f"{new_prefix}.{new_name}.bias"] = fused_bias(prefix, parts)
        out[f"{new_prefix}.{new_name}.weight"] = torch.cat([take(f"{prefix}.{p}.weight") for p in parts])

    for side, n_layer in (("encoder", dims.n_audio_layer), ("decoder", dims.n_text_layer)):
        for i in range(n_layer):
            p = f"{side}.blocks.{i}"
            attn(f"{p}.attn", f"{p}.attn", ("query", "key", "value"), "qkv")
            out[f"{p}.attn.out.weight"] = take(f"{p}.attn.out.weight")
            out[f"{p}.attn.out.bias"] = take(f"{p}.attn.out.bias")
            if side == "decoder":
                out[f"{p}.cross_q.weight"] = take(f"{p}.cross_attn.query.weight")
                out[f"{p}.cross_q.bias"] = take(f"{p}.cross_attn.query.bias")
                attn(f"{p}.cross_attn", p, ("key", "value"), "cross_kv")
                out[f"{p}.cross_out.weight"] = take(f"{p}.cross_attn.out.weight")
                out[f"{p}.cross_out.bias"] = take(f"{p}.cross_attn.out.bias")
                for suffix in ("weight", "bias"):
                    out[f"{p}.cross_attn_ln.{suffix}"] = take(f"{p}.cross_attn_ln.{suffix}")
    out.update(state)  # everything else keeps its openai name
    return out


def sinusoids(length: int, channels: int, max_timescale: float = 10000) -> Tensor:
    """Whisper's fixed sinusoidal encoder positions (used when a checkpoint omits them)."""
    log_timescale_increment = math.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2))
    scaled_time = torch.arange(length)[:, None] * inv_timescales[None, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)
