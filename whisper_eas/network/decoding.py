"""Decoding one 30-second window per batch item: greedy/sampling and beam search over a KV-cached
decoder, with Whisper's logit rules applied as vectorised tensor ops."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..errors import OptionsError
from .model import DecoderCache, TokenSet, Whisper
from .tokenizer import Tokenizer

NEG_INF = float("-inf")
PAD_TEXT = 0  # a text token: what DecodingStream pads sampled tokens with (see LogitFilter)


@dataclass(frozen=True)
class DecodingOptions:
    temperature: float = 0.0
    sample_len: Optional[int] = None  # max tokens to sample; default: half the text context
    best_of: Optional[int] = None  # independent samples when temperature > 0
    beam_size: Optional[int] = None  # beam search when > 1
    patience: Optional[float] = None
    length_penalty: Optional[float] = None  # None: rank by logprob / length (openai-whisper)
    suppress_tokens: Tuple[int, ...] = (-1,)  # -1: the non-speech symbol set
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: Optional[float] = 1.0

    def __post_init__(self):
        if self.temperature < 0:
            raise OptionsError("temperature must be >= 0")
        if self.beam_size is not None and self.beam_size < 1:
            raise OptionsError("beam size must be >= 1")
        if self.best_of is not None and self.best_of < 1:
            raise OptionsError("best_of must be >= 1")
        if self.beam_size and self.beam_size > 1 and self.temperature > 0:
            raise OptionsError("beam search is deterministic: it takes temperature 0 only")
        if self.patience is not None and (self.patience <= 0 or not self.beam_size or self.beam_size < 2):
            raise OptionsError("patience needs beam search and must be > 0")


@dataclass
class DecodingResult:
    tokens: List[int]  # sampled tokens, without the final end-of-text
    text: str
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float
    sum_logprob: float = 0.0


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


# ---------------------------------------------------------------------------------------------
# Logit rules. Each works on the whole batch at once; `tokens` holds every row's sequence so far
# and the sampled part starts at column `sample_begin`.

class LogitFilter:
    """A rule on the next token's logits, applied in place to the whole batch.

    `apply` may return the log-softmax of the logits *as they are when it returns*, when it had
    to compute it anyway (the timestamp rule does); the loops then take it instead of computing
    it again. None (the default) means "not computed": a filter that changes the logits after
    an earlier one returned log-probabilities returns None, and the loop computes them.

    A rule reads a row's sampled tokens only through whether there are none, the last two, and
    which timestamps were sampled: a decoding stream (DecodingStream) filters rows of different
    lengths together, each row's sampled tokens left-padded with a text token (`PAD_TEXT`) to
    the longest, when every row has at least two."""

    def apply(self, logits: Tensor, tokens: Tensor, sample_begin: int) -> Optional[Tensor]:
        raise NotImplementedError


class SuppressTokens(LogitFilter):
    def __init__(self, suppress: Sequence[int], n_vocab: int, device):
        self.bias = torch.zeros(n_vocab, device=device)
        self.bias[list(suppress)] = NEG_INF

    def apply(self, logits, tokens, sample_begin):
        logits += self.bias


class SuppressBlank(LogitFilter):
    """No leading blank or immediate end-of-text."""

    def __init__(self, tokenizer: Tokenizer, begin_suppress: Optional[Sequence[int]] = None):
        self.ids = list(begin_suppress) if begin_suppress else tokenizer.encode(" ") + [tokenizer.eot]

    def apply(self, logits, tokens, sample_begin):
        if tokens.shape[1] == sample_begin:
            logits[:, self.ids] = NEG_INF


class ApplyTimestampRules(LogitFilter):
    """Whisper's timestamp grammar: timestamps come in pairs (except right before end-of-text),
    never go back, and win when their total probability beats any single text token."""

    def __init__(self, tokenizer: Tokenizer, max_initial_timestamp_index: Optional[int]):
        self.ts_begin = tokenizer.timestamp_begin
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.max_initial = max_initial_timestamp_index

    def apply(self, logits, tokens, sample_begin):
        ts_begin = self.ts_begin
        logits[:, self.no_timestamps] = NEG_INF
        seq = tokens[:, sample_begin:]
        n = seq.shape[1]
        if n == 0:
            logits[:, :ts_begin] = NEG_INF  # start with a timestamp
            if self.max_initial is not None:
                logits[:, ts_begin + self.max_initial + 1 :] = NEG_INF
        elif logits.device.type == "cpu":
            self._grammar_by_row(logits, seq)
        else:
            self._grammar_masked(logits, seq)
        logprobs = logits.float().log_softmax(dim=-1)
        ts_mass = logprobs[:, ts_begin:].logsumexp(dim=-1)
        best_text = logprobs[:, :ts_begin].amax(dim=-1)  # the values of max(), without its slow indices
        text_banned = ts_mass > best_text
        if logits.device.type != "cpu":
            return self._ban_text_masked(logits, text_banned, logprobs)
        if not bool(text_banned.any()):
            # the logits are final: these are the log-probabilities the loop would compute
            return logprobs if logits.dtype == torch.float32 else None
        rows = text_banned.nonzero()[:, 0].tolist()  # a few rows: slice fills, no whole-batch mask
        for row in rows:
            logits[row, :ts_begin] = NEG_INF
        if logits.dtype != torch.float32:
            return None
        # log_softmax works row by row, so recomputing only the changed rows gives what
        # recomputing all of them gives
        for row in rows:
            logprobs[row : row + 1] = logits[row : row + 1].log_softmax(dim=-1)
        return logprobs

    def _ban_text_masked(self, logits: Tensor, text_banned: Tensor, logprobs: Tensor) -> Optional[Tensor]:
        """Ban text in the `text_banned` rows and return the final log-probabilities, as
        whole-batch operations with no host round trip (for accelerators; the CPU bans row by
        row and recomputes only those rows)."""
        logits[:, : self.ts_begin].masked_fill_(text_banned[:, None], NEG_INF)
        if logits.dtype != torch.float32:
            return None
        return torch.where(text_banned[:, None], logits.log_softmax(dim=-1), logprobs)

    def _grammar_by_row(self, logits: Tensor, seq: Tensor) -> None:
        """The pair and monotonicity rules, row by row with slice fills. On a CPU a decoding
        batch has a few rows, and a slice fill per row costs microseconds, where the masked
        form below costs about 0.1 ms per whole-batch mask (the decoder's step is ~10 ms)."""
        ts_begin = self.ts_begin
        last_ts = (seq[:, -1] >= ts_begin).tolist()
        penult_ts = (seq[:, -2] >= ts_begin).tolist() if seq.shape[1] >= 2 else [True] * len(last_ts)
        last_value = torch.where(seq >= ts_begin, seq, seq.new_full((), -1)).max(dim=1).values.tolist()
        for row, (last, penult, value) in enumerate(zip(last_ts, penult_ts, last_value)):
            if last and penult:  # after a closed pair: text (or end) comes next
                logits[row, ts_begin:] = NEG_INF
            elif last:  # after an opening timestamp: close it or end
                logits[row, : self.eot] = NEG_INF
            if value >= 0:  # timestamps never decrease, and a segment has nonzero length
                floor = value if (last and not penult) else value + 1  # timestamps below are banned
                logits[row, ts_begin:floor] = NEG_INF

    def _grammar_masked(self, logits: Tensor, seq: Tensor) -> None:
        """The same rules as `_grammar_by_row`, as whole-batch masks (no host round trip per
        row: for accelerators)."""
        ts_begin = self.ts_begin
        last_ts = seq[:, -1] >= ts_begin
        penult_ts = seq[:, -2] >= ts_begin if seq.shape[1] >= 2 else torch.ones_like(last_ts)
        pair_done = last_ts & penult_ts  # after a closed pair: text (or end) comes next
        pair_open = last_ts & ~penult_ts  # after an opening timestamp: close it or end
        logits[pair_done, ts_begin:] = NEG_INF
        logits[pair_open, : self.eot] = NEG_INF
        # timestamps never decrease, and a segment has nonzero length
        last_value = torch.where(seq >= ts_begin, seq, seq.new_full((), -1)).max(dim=1).values
        floor = torch.where(pair_open, last_value, last_value + 1)  # tokens below are banned
        has_ts = last_value >= 0
        if bool(has_ts.any()):
            positions = torch.arange(ts_begin, logits.shape[-1], device=logits.device)
            banned = has_ts[:, None] & (positions[None, :] < floor[:, None])
            logits[:, ts_begin:].masked_fill_(banned, NEG_INF)


def build_filters(tokenizer: Tokenizer, options: DecodingOptions, n_vocab: int, device,
                  begin_suppress: Optional[Sequence[int]] = None) -> List[LogitFilter]:
    filters: List[LogitFilter] = []
    if options.suppress_blank:
        filters.append(SuppressBlank(tokenizer, begin_suppress))
    if options.suppress_tokens:
        filters.append(SuppressTokens(tokenizer.suppress_tokens(options.suppress_tokens), n_vocab, device))
    if not options.without_timestamps:
        max_initial = None
        if options.max_initial_timestamp is not None:
            max_initial = round(options.max_initial_timestamp / 0.02)
        filters.append(ApplyTimestampRules(tokenizer, max_initial))
    return filters


# ---------------------------------------------------------------------------------------------
# The loops

@torch.inference_mode()
def detect_language(model: Whisper, audio: TokenSet, tokenizer: Tokenizer) -> List[Dict[str, float]]:
    """Per item: language code -> probability, from the logits after the start-of-transcript."""
    cache = model.decoder.new_cache(audio)
    sot = torch.full((audio.x.shape[0], 1), tokenizer.sot, device=audio.x.device)
    logits = model.decoder.logits(model.decoder(sot, cache)[:, 0]).float()
    lang_ids = torch.tensor(tokenizer.all_language_tokens, device=logits.device)
    probs = logits[:, lang_ids].softmax(dim=-1).cpu()
    return [dict(zip(tokenizer.language_codes, row.tolist())) for row in probs]


ARGMAX_BLOCK = 128  # columns per block of greedy_tokens' first pass


def greedy_tokens(logits: Tensor) -> Tensor:
    """`logits.argmax(dim=-1)`: each row's first largest column, the same index in every case
    (ties, -inf, NaN). On a CPU PyTorch's argmax over a row is a scalar loop and its amax a
    vector one (16 x 51864 logits on an AVX2 AMD EPYC, timed once: 1.04 ms against 0.19), so
    rows go in two passes: the maxima of blocks of columns, then the first largest column of
    each row's first largest block."""
    rows, width = logits.shape
    if logits.device.type != "cpu" or rows < 2 or width < 4 * ARGMAX_BLOCK:
        return logits.argmax(dim=-1)
    w = ARGMAX_BLOCK
    full = width // w
    maxima = logits[:, : full * w].reshape(rows, full, w).amax(dim=-1)
    if full * w < width:  # the last, shorter block
        maxima = torch.cat([maxima, logits[:, full * w :].amax(dim=-1, keepdim=True)], dim=1)
    block = maxima.argmax(dim=-1)
    # past the last column the index repeats it, after its first occurrence: argmax keeps the first
    columns = (block[:, None] * w + torch.arange(w, device=logits.device)).clamp_(max=width - 1)
    return block * w + logits.gather(1, columns).argmax(dim=-1)


def draw_tokens(probs: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
    """One token per row of `probs` (rows of probabilities summing to about 1), drawn by the
    inverse of the row's cumulative distribution: one uniform number per row from `generator`
    (None: torch's global one). `torch.multinomial` draws a number per column instead (5 x
    51864, timed once on an AVX2 AMD EPYC: 7.8 ms against 0.2). A token of probability 0 is never
    drawn: the point searched for lies in (0, total], and the first column whose cumulative sum
    reaches it has a share of its own."""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device, dtype=cdf.dtype)
    # clamped: a row of NaNs (no finite logit, which the rules never leave) still names a token
    return torch.searchsorted(cdf, (1 - u) * cdf[:, -1:])[:, 0].clamp_(max=probs.shape[-1] - 1)


def _draw(probs: Tensor, items: Tensor, generators: Optional[List[torch.Generator]]) -> Tensor:
    """One token per row of `probs`; row r belongs to item `items[r]`, whose rows draw from
    `generators[item]` (None: all from torch's global generator)."""
    if generators is None:
        return draw_tokens(probs)
    out = torch.empty(probs.shape[0], dtype=torch.long, device=probs.device)
    for item in items.unique().tolist():
        rows = (items == item).nonzero()[:, 0]
        out[rows] = draw_tokens(probs[rows], generators[item])
    return out


class Decoder:
    """Decodes a batch of windows that share one initial token sequence length."""

    def __init__(self, model: Whisper, tokenizer: Tokenizer, options: DecodingOptions,
                 begin_suppress: Optional[Sequence[int]] = None):
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.n_ctx = model.dims.n_text_ctx
        self.sample_len = options.sample_len or self.n_ctx // 2
        self.begin_suppress = begin_suppress
        self._filters: Dict[str, List[LogitFilter]] = {}

    def filters(self, device) -> List[LogitFilter]:
        key = str(device)
        if key not in self._filters:
            self._filters[key] = build_filters(self.tokenizer, self.options, self.model.dims.n_vocab,
                                               device, self.begin_suppress)
        return self._filters[key]

    def initial_tokens(self, prompt: Optional[Sequence[int]] = None, prefix: Optional[Sequence[int]] = None) -> List[int]:
        tok = self.tokenizer
        seq = []
        if prompt:
            seq = [tok.sot_prev] + list(prompt)[-(self.n_ctx // 2 - 1):]
        seq += list(tok.sot_sequence)
        if self.options.without_timestamps:
            seq.append(tok.no_timestamps)
        if prefix:
            seq += list(prefix)[: self.n_ctx // 2 - 1]
        return seq

    @torch.inference_mode()
    def run(self, audio: TokenSet, initial: List[List[int]],
            seeds: Optional[Sequence[int]] = None) -> List[DecodingResult]:
        """Decode each item from its initial tokens. `seeds`, one per item: at a temperature > 0
        each item draws from its own generator seeded with it, so what it draws depends neither on
        the rest of the batch nor on what ran before (None: torch's global generator)."""
        n = audio.x.shape[0]
        if len({len(s) for s in initial}) != 1 or len(initial) != n:
            raise ValueError("a decoding batch needs one initial sequence of equal length per item")
        sot_index = initial[0].index(self.tokenizer.sot)
        opts = self.options
        if opts.beam_size and opts.beam_size > 1:
            groups = self._beam_search(audio, initial, sot_index)
        else:
            repeats = (opts.best_of or 1) if opts.temperature > 0 else 1
            groups = self._sample(audio, initial, sot_index, repeats, seeds)
        return [self._best(candidates) for candidates in groups]

    def _start(self, audio: TokenSet, initial: List[List[int]], sot_index: int, repeats: int):
        if repeats > 1:
            audio = audio.repeat(repeats)
            initial = [s for s in initial for _ in range(repeats)]
        cache = self.model.decoder.new_cache(audio)
        device = audio.x.device
        tokens = torch.tensor(initial, device=device)
        hidden = self.model.decoder(tokens, cache)
        logits = self.model.decoder.logits(hidden[:, -1]).float()
        # the start of transcript is often the last initial token: then its logits are those
        sot_logits = logits if sot_index == tokens.shape[1] - 1 else self.model.decoder.logits(hidden[:, sot_index]).float()
        no_speech = sot_logits.softmax(dim=-1)[:, self.tokenizer.no_speech].tolist()
        return cache, tokens, logits, no_speech

    def _next_logits(self, cache: DecoderCache, last: Tensor) -> Tensor:
        return self.model.decoder.logits(self.model.decoder(last[:, None], cache)[:, 0]).float()

    def _sample(self, audio, initial, sot_index, repeats, seeds=None):
        """Greedy (temperature 0) or sampling; finished rows leave the batch so the rest run
        cheaper."""
        tok, opts = self.tokenizer, self.options
        cache, tokens, logits, no_speech = self._start(audio, initial, sot_index, repeats)
        n_rows, sample_begin = tokens.shape
        device = tokens.device
        generators = None  # one per item: its `repeats` rows draw from it
        if opts.temperature > 0 and seeds is not None:
            generators = [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]
        buf = torch.full((n_rows, sample_begin + self.sample_len + 1), tok.eot, device=device)
        buf[:, :sample_begin] = tokens
        sum_logprobs = torch.zeros(n_rows, device=device)
        lengths = torch.full((n_rows,), self.sample_len, dtype=torch.long)  # sampled tokens per row
        active = torch.arange(n_rows, device=device)  # rows of `buf` still decoding
        filters = self.filters(device)
        for step in range(self.sample_len):
            history = buf[active, : sample_begin + step]  # the rows' tokens so far, gathered once per step
            logprobs = None
            for f in filters:
                logprobs = f.apply(logits, history, sample_begin)
            if logprobs is None:
                logprobs = logits.log_softmax(dim=-1)
            if opts.temperature == 0:
                next_tokens = greedy_tokens(logits)
            else:
                next_tokens = _draw((logits / opts.temperature).softmax(dim=-1), active // repeats, generators)
            sum_logprobs[active] += logprobs.gather(1, next_tokens[:, None])[:, 0]
            buf[active, sample_begin + step] = next_tokens
            done = next_tokens == tok.eot
            if step == self.sample_len - 1:
                break
            if bool(done.any()):
                lengths[active[done].cpu()] = step
                keep = (~done).nonzero()[:, 0]
                if keep.numel() == 0:
                    break
                active = active[keep]
                cache.select(keep)
                next_tokens = next_tokens[keep]
            logits = self._next_logits(cache, next_tokens)
        rows = buf[:, sample_begin:].tolist()
        results = []
        for r in range(n_rows):
            seq = rows[r][: int(lengths[r])]
            results.append((seq, float(sum_logprobs[r]), no_speech[r]))
        return [results[i * repeats : (i + 1) * repeats] for i in range(n_rows // repeats)]

    def stream(self) -> "DecodingStream":
        """A decoding batch that windows can join while it runs (see DecodingStream); this
        decoder, greedy, is its own."""
        return DecodingStream(self)

    def _beam_search(self, audio, initial, sot_index):
        """openai-whisper's beam search: each beam proposes its beam_size + 1 best tokens; the
        best beam_size unfinished candidates continue; an item ends once it has
        round(beam_size * patience) finished candidates."""
        tok, opts = self.tokenizer, self.options
        beam = opts.beam_size
        max_finished = round(beam * (opts.patience or 1.0))
        cache, tokens, logits, no_speech = self._start(audio, initial, sot_index, beam)
        n_items = tokens.shape[0] // beam
        sample_begin = tokens.shape[1]
        seqs: List[List[int]] = [[] for _ in range(n_items * beam)]
        sum_logprobs = [0.0] * (n_items * beam)
        finished: List[Dict[tuple, float]] = [{} for _ in range(n_items)]
        done = [False] * n_items
        filters = self.filters(tokens.device)
        history = tokens
        for step in range(self.sample_len):
            logprobs = None
            for f in filters:
                logprobs = f.apply(logits, history, sample_begin)
            if logprobs is None:
                logprobs = logits.log_softmax(dim=-1)
            top_lp, top_id = logprobs.topk(beam + 1, dim=-1)
            top_lp, top_id = top_lp.tolist(), top_id.tolist()
            source, new_seqs, new_sums = [], [], []
            for i in range(n_items):
                if done[i]:  # keep the rows in place; their output is ignored
                    for j in range(beam):
                        r = i * beam + j
                        source.append(r)
                        new_seqs.append(seqs[r] + [tok.eot])
                        new_sums.append(sum_logprobs[r])
                    continue
                scores, origin = {}, {}
                for j in range(beam):
                    r = i * beam + j
                    for lp, t in zip(top_lp[r], top_id[r]):
                        seq = tuple(seqs[r] + [t])
                        scores[seq] = sum_logprobs[r] + lp
                        origin[seq] = r
                saved = 0
                for seq in sorted(scores, key=scores.get, reverse=True):
                    if seq[-1] == tok.eot:
                        if len(finished[i]) < max_finished:
                            finished[i][seq[:-1]] = scores[seq]
                    else:
                        source.append(origin[seq])
                        new_seqs.append(list(seq))
                        new_sums.append(scores[seq])
                        saved += 1
                        if saved == beam:
                            break
                done[i] = len(finished[i]) >= max_finished
            seqs, sum_logprobs = new_seqs, new_sums
            if all(done):
                break
            index = torch.tensor(source, device=tokens.device)
            cache.select(index)
            last = torch.tensor([s[-1] for s in seqs], device=tokens.device)
            history = torch.cat([history.index_select(0, index), last[:, None]], dim=1)
            logits = self._next_logits(cache, last)
        groups = []
        for i in range(n_items):
            if not finished[i]:  # ran out of length: take the live beams
                for j in range(beam):
                    r = i * beam + j
                    finished[i][tuple(seqs[r])] = sum_logprobs[r]
            groups.append([(list(s), lp, no_speech[i * beam]) for s, lp in finished[i].items()])
        return groups

    def _best(self, candidates) -> DecodingResult:
        def score(c):
            seq, lp, _ = c
            n = len(seq)
            penalty = n if self.options.length_penalty is None else ((5 + n) / 6) ** self.options.length_penalty
            return lp / max(penalty, 1e-9)

        seq, lp, no_speech = max(candidates, key=score)
        seq = [t for t in seq if t != self.tokenizer.eot]
        text = self.tokenizer.decode(seq)
        return DecodingResult(
            tokens=seq, text=text, avg_logprob=lp / (len(seq) + 1), no_speech_prob=no_speech,
            temperature=self.options.temperature, compression_ratio=compression_ratio(text), sum_logprob=lp,
        )


def _rows_view(x: Tensor, rows: List[int]) -> Optional[Tensor]:
    """`x[rows]` as a view when `rows` are consecutive and increasing (changes to it change
    `x`), else None."""
    if rows[-1] - rows[0] + 1 == len(rows) and all(b == a + 1 for a, b in zip(rows, rows[1:])):
        return x[rows[0] : rows[-1] + 1]
    return None


@dataclass
class _StreamItem:
    """One window in a stream: its rows (one greedy row, or `best_of` samples), and the
    candidates of those that ended, in row order as `Decoder.run` lists them."""

    tag: object
    decoder: "Decoder"  # whose options (temperature, length penalty) make the result
    generator: Optional[torch.Generator]  # the item's draws (sampling; None: greedy or torch's global one)
    candidates: List[Optional[tuple]]  # per row of the item: (tokens, sum of log-probs, no-speech prob) once ended


class DecodingStream:
    """Decoding of windows that join while others are under way: a server's requests arriving
    mid-flight start decoding at the next step instead of waiting for the batch's longest window
    to end. Each row keeps its own position in the decoder's cache (`DecoderCache.join`); every
    `step` decodes one token for all rows at once and hands back the windows that ended. A
    window joins greedily (the stream's own decoder: temperature 0, no beams) or with a sampling
    decoder of the same options at a temperature above 0 (a fallback temperature): then its
    `best_of` rows draw from the window's own generator, and it ends when all of them have.

    Each window gets what `Decoder.run` gives it in a batch of its own (up to the float rounding
    of batched matrix products): the same logit rules (applied to all rows at once, in at most
    three groups: see `_choose`), the same draws from a seeded generator, the same stopping rule,
    the same choice among samples and the same result fields.

    A decoder step costs far less per row with many rows (it reads every weight once, whatever
    the rows), so rows that join a stream in flight share the steps of the others; a batch that
    waits for its longest row runs its last steps with one row."""

    def __init__(self, decoder: Decoder):
        opts = decoder.options
        if opts.temperature != 0 or (opts.beam_size or 1) > 1:
            raise OptionsError("a decoding stream is greedy: temperature 0, no beam search")
        self.decoder = decoder
        self._ids = 0
        self._clear()

    def _clear(self) -> None:
        self.seqs: List[List[int]] = []  # per row: its tokens so far, the initial ones first
        self.begins: List[int] = []  # per row: where its sampled tokens start in seqs
        self.no_speech: List[float] = []
        self.fresh: List[bool] = []  # per row: joined with its start of transcript not fed yet (see join)
        self.items: List[int] = []  # per row: its window's key in `_items`
        self.slots: List[int] = []  # per row: its place among its window's rows
        self._items: Dict[int, _StreamItem] = {}
        self.sum_logprobs: Optional[Tensor] = None  # (B,) float32, as Decoder.run sums them
        self.cache: Optional[DecoderCache] = None
        self.logits: Optional[Tensor] = None  # (B, V): each row's next-token logits

    def __len__(self) -> int:
        """Rows under way (a sampled window has several)."""
        return len(self.items)

    @property
    def tags(self) -> List[object]:
        """Per row: its window's tag (the caller's, handed back with its result)."""
        return [self._items[key].tag for key in self.items]

    def join(self, audio: TokenSet, initial: List[List[int]], tags: Sequence[object],
             decoder: Optional[Decoder] = None, seeds: Optional[Sequence[int]] = None) -> None:
        """Start decoding `audio`'s rows, each from its initial tokens; `tags` name them in the
        results of `step`. `decoder`: a sampling decoder (temperature > 0, the stream's options
        otherwise) for these windows, each drawing `best_of` samples from a generator seeded with
        its `seeds` entry, as `Decoder.run` does (without seeds, from torch's global generator:
        then what a window draws depends on what else decodes, as in `Decoder.run`).

        Rows whose initial tokens are the start of transcript alone (an English-only model with
        timestamps and no prompt: most of a server's requests) are fed it by the next step, with
        the other rows' next tokens, instead of in a decoder pass of their own; the rest are
        fed theirs here."""
        repeats = 1
        if decoder is not None and decoder is not self.decoder:
            opts = decoder.options
            if opts.temperature <= 0 or dataclasses.replace(opts, temperature=0.0, best_of=None) != self.decoder.options:
                raise OptionsError("a stream's sampled windows share its options but the temperature")
            repeats = opts.best_of or 1
            audio, initial = audio.repeat(repeats), [seq for seq in initial for _ in range(repeats)]
        decoder = decoder or self.decoder
        keys = []
        for i, tag in enumerate(tags):
            generator = None
            if decoder is not self.decoder and seeds is not None:
                generator = torch.Generator(device=audio.x.device).manual_seed(int(seeds[i]))
            self._items[self._ids] = _StreamItem(tag, decoder, generator, [None] * repeats)
            keys.append(self._ids)
            self._ids += 1
        by_length: Dict[int, List[int]] = {}
        for i, seq in enumerate(initial):
            by_length.setdefault(len(seq), []).append(i)
        sot = self.decoder.tokenizer.sot
        for rows in by_length.values():
            part = audio.select(torch.tensor(rows, device=audio.x.device)) if len(rows) < len(initial) else audio
            first = [initial[i] for i in rows]
            fresh = first[0] == [sot]
            if fresh:
                cache = self.decoder.model.decoder.new_cache(part)
                logits = part.x.new_empty((len(rows), self.decoder.model.dims.n_vocab), dtype=torch.float32)
                no_speech = [0.0] * len(rows)  # from the logits after the start of transcript, once fed
            else:
                cache, _, logits, no_speech = self.decoder._start(part, first, first[0].index(sot), 1)
            zeros = torch.zeros(len(rows), device=logits.device)
            if self.cache is None:
                self.cache, self.logits, self.sum_logprobs = cache, logits, zeros
            else:
                self.cache.join(cache)
                self.logits = torch.cat([self.logits, logits])
                self.sum_logprobs = torch.cat([self.sum_logprobs, zeros])
            self.items += [keys[i // repeats] for i in rows]
            self.slots += [i % repeats for i in rows]
            self.seqs += [list(initial[i]) for i in rows]
            self.begins += [len(initial[i]) for i in rows]
            self.no_speech += no_speech
            self.fresh += [fresh] * len(rows)

    def step(self) -> List[Tuple[object, DecodingResult]]:
        """One token for every row; returns (tag, result) of the windows that ended (all their
        rows at end-of-text or the sample length), whose rows leave the stream."""
        if not self.items:
            return []
        dec, tok = self.decoder, self.decoder.tokenizer
        device = self.logits.device
        live = [r for r, fresh in enumerate(self.fresh) if not fresh]  # rows that choose a token now
        next_tokens = torch.full((len(self),), tok.sot, dtype=torch.long, device=device)  # fresh rows: fed it
        if live:
            # rows join at the end, so the live rows are usually the first ones: a view, no copy
            logits = _rows_view(self.logits, live)
            if logits is None:
                logits = self.logits.index_select(0, torch.tensor(live, device=device))
            chosen = self._choose(logits, live)
            self.sum_logprobs[live] += chosen[1]
            next_tokens[live] = chosen[0]
        ended = []
        for r, t in zip(live, next_tokens[live].tolist() if live else []):
            self.seqs[r].append(t)
            if t == tok.eot or len(self.seqs[r]) - self.begins[r] >= dec.sample_len:
                ended.append(r)
        keep = sorted(set(range(len(self))) - set(ended))
        results = []
        if ended:
            sums = self.sum_logprobs.tolist()
            for r in ended:
                item = self._items[self.items[r]]
                sampled = self.rows_sampled(r)
                if sampled and sampled[-1] == tok.eot:  # Decoder.run's candidates stop before it
                    sampled = sampled[:-1]
                item.candidates[self.slots[r]] = (sampled, sums[r], self.no_speech[r])
                if all(c is not None for c in item.candidates):
                    del self._items[self.items[r]]
                    results.append((item.tag, item.decoder._best(item.candidates)))
            if not keep:
                self._clear()
                return results
            next_tokens = self._keep(keep, next_tokens)
        self.logits = dec._next_logits(self.cache, next_tokens)
        fresh = [r for r, f in enumerate(self.fresh) if f]
        if fresh:  # their first logits follow the start of transcript: its no-speech probability
            index = torch.tensor(fresh, device=device)
            probs = self.logits.index_select(0, index).softmax(dim=-1)[:, tok.no_speech].tolist()
            for r, p in zip(fresh, probs):
                self.no_speech[r], self.fresh[r] = p, False
        return results

    def _choose(self, logits: Tensor, rows: List[int]) -> Tuple[Tensor, Tensor]:
        """The logit rules on `logits` (of `rows`), in place, and each row's token (greedy, or
        drawn as its window's decoder draws) and its log-probability."""
        filters = self.decoder.filters(logits.device)
        # The rules read a row's sampled tokens only: rows with none, with one, and with more
        # (left-padded with text tokens, which the rules ignore: see LogitFilter) go together.
        cohorts: Dict[int, List[int]] = {}
        for i, r in enumerate(rows):
            cohorts.setdefault(min(len(self.seqs[r]) - self.begins[r], 2), []).append(i)
        if len(cohorts) == 1:
            logprobs = self._filter(logits, [self.rows_sampled(r) for r in rows], filters)
        else:
            logprobs = torch.empty_like(logits, dtype=torch.float32)
            for members in cohorts.values():
                sampled = [self.rows_sampled(rows[i]) for i in members]
                part = _rows_view(logits, members)  # cohorts are mostly runs of rows (rows join at the end)
                if part is not None:
                    logprobs[members[0] : members[-1] + 1] = self._filter(part, sampled, filters)
                    continue
                index = torch.tensor(members, device=logits.device)
                part = logits.index_select(0, index)
                logprobs[index] = self._filter(part, sampled, filters)
                logits[index] = part
        tokens = greedy_tokens(logits)
        drawing: Dict[int, List[int]] = {}  # sampled windows -> their live rows (positions in `rows`), in order
        for i, r in enumerate(rows):
            if self._items[self.items[r]].decoder is not self.decoder:
                drawing.setdefault(self.items[r], []).append(i)
        for key, members in drawing.items():
            item = self._items[key]
            index = torch.tensor(members, device=logits.device)
            probs = (logits.index_select(0, index) / item.decoder.options.temperature).softmax(dim=-1)
            tokens[index] = draw_tokens(probs, item.generator)
        return tokens, logprobs.gather(1, tokens[:, None])[:, 0]

    def drop(self, which: Callable[[object], bool]) -> None:
        """Take the windows whose tag `which` names out of the stream, unfinished (a request
        whose client went away)."""
        keep = [r for r, tag in enumerate(self.tags) if not which(tag)]
        if len(keep) == len(self):
            return
        if not keep:
            self._clear()
            return
        self._items = {key: item for key, item in self._items.items() if not which(item.tag)}
        self.logits = self.logits[torch.tensor(keep, device=self.logits.device)]
        self._keep(keep)

    def _keep(self, keep: List[int], next_tokens: Optional[Tensor] = None) -> Optional[Tensor]:
        index = torch.tensor(keep, device=self.sum_logprobs.device)
        self.cache.select(index)
        self.sum_logprobs = self.sum_logprobs[index]
        for name in ("seqs", "begins", "no_speech", "fresh", "items", "slots"):
            values = getattr(self, name)
            setattr(self, name, [values[r] for r in keep])
        lengths = self.cache.row_lengths
        if lengths is not None and bool((lengths == lengths[0]).all()):  # in step again: the plain path
            self.cache.row_lengths, self.cache.length = None, int(lengths[0])
        return None if next_tokens is None else next_tokens[index]

    def rows_sampled(self, r: int) -> List[int]:
        return self.seqs[r][self.begins[r]:]

    @staticmethod
    def _filter(logits: Tensor, sampled: List[List[int]], filters: List[LogitFilter]) -> Tensor:
        """The logit rules, in place, on rows whose sampled tokens are `sampled` (all empty, all
        one token, or all at least two); their log-probabilities."""
        n = max(len(s) for s in sampled)
        history = torch.tensor([[PAD_TEXT] * (n - len(s)) + s for s in sampled], dtype=torch.long,
                               device=logits.device).reshape(len(sampled), n)
        logprobs = None
        for f in filters:
            logprobs = f.apply(logits, history, 0)
        return logits.log_softmax(dim=-1) if logprobs is None else logprobs
