"""EAS: which tokens are kept, what they stand for, and that the rest of the model sees only them."""

from __future__ import annotations

import pytest
import torch

from whisper_eas.io.audio import AudioWindows
from whisper_eas.network.eas import (EASConfig, EASReducer, Stage, merge_adjacent, parse_eas, pause_tokens,
                                     pool_padding)
from whisper_eas.network.model import AttentionRecord, TokenSet


def _tokens(b=1, t=8, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g)
    return TokenSet(x, torch.arange(t).expand(b, t).clone())


def _record(probs):
    """An AttentionRecord from a full (B, H, T, T) probability matrix."""
    b, h, t, _ = probs.shape
    return AttentionRecord(keys=torch.zeros(b, h, t, 3), received=probs.sum(dim=2),
                           diagonal=torch.diagonal(probs, dim1=-2, dim2=-1), n_queries=torch.full((b,), float(t)))


def _attention_receiving(weights):
    """An attention record where every query gives key j the share weights[j]."""
    w = torch.tensor(weights, dtype=torch.float32)
    w = w / w.sum()
    t = len(weights)
    return _record(w.expand(1, 2, t, t).clone())  # 1 item, 2 heads


def test_attention_score_keeps_most_attended_tokens_in_time_order():
    tokens = _tokens(t=8)
    att = _attention_receiving([1, 9, 1, 5, 1, 1, 8, 2])
    reducer = EASReducer(EASConfig((Stage(0, 0.5),), merge=False), torch.tensor([8]))
    assert reducer.wants_attention(0) and not reducer.wants_attention(1)
    out = reducer(0, tokens, att)
    assert out.kept_index.tolist() == [[1, 3, 6, 7]]  # the 4 highest, sorted by time
    assert torch.equal(out.x[0], tokens.x[0, [1, 3, 6, 7]])
    assert out.size.tolist() == [[1, 1, 1, 1]]


def test_kept_count_is_ceil_of_one_minus_sparsity():
    tokens = _tokens(t=10)
    att = _attention_receiving(list(range(1, 11)))
    out = EASReducer(EASConfig((Stage(0, 0.55),), merge=False, min_keep=1), torch.tensor([10]))(0, tokens, att)
    assert out.kept_index.shape[1] == 5  # ceil(0.45 * 10)
    assert out.kept_index.tolist() == [[5, 6, 7, 8, 9]]


def test_merge_folds_every_removed_token_into_its_most_similar_kept_token():
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9], [1.0, 0.05]]])
    tokens = TokenSet(x, torch.arange(5)[None])
    att = _attention_receiving([5, 5, 1, 1, 1])  # keeps tokens 0 and 1
    out = EASReducer(EASConfig((Stage(0, 0.6),), merge=True, min_keep=1), torch.tensor([5]))(0, tokens, att)
    assert out.kept_index.tolist() == [[0, 1]]
    assert out.size.tolist() == [[3.0, 2.0]]  # token 0 absorbs 2 and 4, token 1 absorbs 3
    assert torch.allclose(out.x[0, 0], (x[0, 0] + x[0, 2] + x[0, 4]) / 3)
    assert torch.allclose(out.x[0, 1], (x[0, 1] + x[0, 3]) / 2)
    assert torch.allclose(out.key_bias[0, 0, 0], torch.log(torch.tensor([3.0, 2.0])))


def test_baseline_scores():
    tokens = _tokens(t=16)
    truncate = EASReducer(EASConfig((Stage(-1, 0.75),), score="truncate", merge=False, min_keep=1), torch.tensor([16]))
    assert truncate(-1, tokens, None).kept_index.tolist() == [[0, 1, 2, 3]]
    stride = EASReducer(EASConfig((Stage(-1, 0.75),), score="stride", merge=False, min_keep=1), torch.tensor([16]))
    assert stride(-1, tokens, None).kept_index.tolist() == [[0, 4, 8, 12]]
    rnd = EASConfig((Stage(-1, 0.5),), score="random", merge=False, min_keep=1)
    a = EASReducer(rnd, torch.tensor([16]))(-1, tokens, None).kept_index
    b = EASReducer(rnd, torch.tensor([16]))(-1, tokens, None).kept_index
    assert torch.equal(a, b) and a.shape[1] == 8  # seeded


def test_padding_pool_keeps_audio_and_pools_padding_runs():
    tokens = _tokens(t=12)
    out = pool_padding(tokens, torch.tensor([5]), stride=4)
    # audio tokens 0..4 pass; padding 5..11 pools into runs starting at 5 and 9
    assert out.kept_index.tolist() == [[0, 1, 2, 3, 4, 5, 9]]
    assert out.size.tolist() == [[1, 1, 1, 1, 1, 4, 3]]
    assert torch.allclose(out.x[0, 5], tokens.x[0, 5:9].mean(0))
    assert torch.allclose(out.x[0, 6], tokens.x[0, 9:12].mean(0))


def test_padding_rule_prunes_speech_only_and_keeps_pooled_padding():
    tokens = _tokens(t=12)
    att = _attention_receiving([1, 9, 2, 8, 1, 1, 1, 1, 1, 1, 1, 1])
    cfg = EASConfig((Stage(0, 0.5),), pad_stride=4, merge=False, min_keep=1)
    reducer = EASReducer(cfg, torch.tensor([4]))
    pooled = reducer(-1, tokens, None)  # before block 0 nothing happens: the stage is after block 0
    assert pooled.kept_index.shape[1] == 12
    out = reducer(0, tokens, att)  # speech top-k, then the padding pooled
    assert out.kept_index.tolist() == [[1, 3, 4, 8]]  # 2 of the 4 speech tokens + 2 pooled runs


def test_adaptive_keeps_smallest_set_holding_the_mass_per_item():
    tokens = _tokens(b=2, t=8)
    peaked = [100, 1, 1, 1, 1, 1, 1, 1]
    flat = [1] * 8
    w = torch.tensor([peaked, flat], dtype=torch.float32)
    w = w / w.sum(dim=1, keepdim=True)
    att = _record(w[:, None, None, :].expand(2, 2, 8, 8).clone())
    cfg = EASConfig((Stage(0, 0.0),), adaptive=0.9, merge=False, min_keep=1)
    out = EASReducer(cfg, torch.tensor([8, 8]))(0, tokens, att)
    kept_per_item = (out.size > 0).sum(1).tolist()
    assert kept_per_item == [1, 8]  # 100/107 > 0.9 with one token; the flat item needs 8 (>= 7.2)
    assert out.kept_index[0].tolist() == [0, -1, -1, -1, -1, -1, -1, -1]  # padded with size 0
    assert out.key_bias[0, 0, 0, 1].item() == float("-inf")


def test_config_validation_and_parsing():
    cfg = parse_eas("1:0.3,2:0.5 score=keynorm drop adaptive=0.95 pad=16")
    assert cfg.stages == (Stage(1, 0.3), Stage(2, 0.5)) and cfg.score == "keynorm" and not cfg.merge
    assert cfg.adaptive == 0.95 and cfg.pad_stride == 16
    assert parse_eas(cfg.describe()) == cfg
    assert parse_eas("off") is None and parse_eas(None) is None
    assert parse_eas("1:0").is_dense
    for bad, message in [("1:1.5", "sparsity"), ("1:-0.1", "sparsity"), ("-2:0.5", "out of range"),
                         ("1:0.5 score=nope", "unknown EAS score"), ("1", "bad EAS spec"), ("1:x", "bad EAS spec"),
                         ("1:0.5 bogus", "unknown EAS option"), ("-1:0.5", "needs a block's attention")]:
        with pytest.raises(ValueError, match=message):
            parse_eas(bad)
    with pytest.raises(ValueError, match="blocks 0..3"):
        parse_eas("4:0.5").check_layers(4)


# ---------------------------------------------------------------------------------------------
# In the real model

@pytest.fixture(scope="module")
def jfk_window(jfk):
    return AudioWindows(jfk).window(0)


def _encode(tiny, features, frames, eas):
    return tiny.encode(features, frames, parse_eas(eas) if isinstance(eas, str) else eas)


def test_zero_sparsity_is_bit_for_bit_dense(tiny, jfk):
    dense_segments, _ = tiny.transcribe(jfk)
    zero_segments, info = tiny.transcribe(jfk, eas="1:0")
    assert [s.tokens for s in dense_segments] == [s.tokens for s in zero_segments]
    assert info.tokens_kept == [1500]
    feats, n = AudioWindows(jfk).window(0)
    assert torch.equal(_encode(tiny, feats[None], [n], None).x, _encode(tiny, feats[None], [n], "1:0").x)


def test_later_blocks_and_cross_attention_run_on_kept_tokens_only(tiny, jfk_window):
    feats, n = jfk_window
    seen = []
    hooks = [blk.register_forward_hook(lambda m, args, kw, out, i=i: seen.append((i, args[0].shape[1], kw.get("record"))),
                                       with_kwargs=True)
             for i, blk in enumerate(tiny.model.encoder.blocks)]
    try:
        out = _encode(tiny, feats[None], [n], "1:0.6 drop")
    finally:
        for h in hooks:
            h.remove()
    k = out.x.shape[1]
    assert k == 600  # ceil(0.4 * 1500)
    assert [(i, t) for i, t, _ in seen] == [(0, 1500), (1, 1500), (2, k), (3, k)]
    # block 1's attention ran once, with its probabilities kept for the score; no other block
    assert [(i, record) for i, _, record in seen if record] == [(1, "probs")]
    cache = tiny.model.decoder.new_cache(out)
    assert all(ck.shape[2] == k for ck in cache.cross_k)


def test_scoring_block_computes_attention_once(tiny, jfk_window, monkeypatch):
    feats, n = jfk_window
    sdpa_calls, manual_calls = [], []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention

    def counting_sdpa(*a, **kw):
        sdpa_calls.append(a[0].shape)
        return real_sdpa(*a, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counting_sdpa)
    from whisper_eas.network import model as model_module

    real_record = model_module.AttentionRecord

    def counting_record(*a, **kw):
        manual_calls.append(1)
        return real_record(*a, **kw)

    monkeypatch.setattr(model_module, "AttentionRecord", counting_record)
    _encode(tiny, feats[None], [n], "2:0.5")
    assert len(manual_calls) == 1  # block 2, once
    assert len(sdpa_calls) == 3  # blocks 0, 1, 3 use the fused kernel


@pytest.mark.parametrize("spec", ["1:0.5", "0:0.3 adaptive=0.9", "1:0.5 pad=16", "1:0.3,2:0.5", "0:0.5 score=stride drop",
                                  "0:0.5,3:0.5 score=adjacent pad=32", "-1:0 pad=32 pause=8"])
def test_batched_equals_unbatched(tiny, jfk, spec):
    win = AudioWindows(jfk)
    items = [win.window(0), AudioWindows(jfk).window(300), AudioWindows(jfk).window(800)]
    feats = torch.stack([f for f, _ in items])
    frames = [n for _, n in items]
    batched = _encode(tiny, feats, frames, spec)
    for i, (f, n) in enumerate(items):
        alone = _encode(tiny, f[None], [n], spec)
        k = alone.x.shape[1]
        assert torch.equal(batched.kept_index[i, :k], alone.kept_index[0])
        assert bool((batched.size[i, k:] == 0).all())
        assert torch.equal(batched.size[i, :k], alone.size[0])
        assert torch.allclose(batched.x[i, :k], alone.x[0], atol=2e-4)
    # and the decoded text is the same
    from whisper_eas.network.decoding import Decoder, DecodingOptions

    dec = Decoder(tiny.model, tiny.tokenizer, DecodingOptions(without_timestamps=True))
    initial = dec.initial_tokens()
    together = dec.run(batched, [initial] * 3)
    for i, (f, n) in enumerate(items):
        alone = dec.run(_encode(tiny, f[None], [n], spec), [initial])[0]
        assert together[i].tokens == alone.tokens


def test_word_timestamps_survive_pruning(tiny, jfk):
    dense = list(tiny.transcribe(jfk, word_timestamps=True)[0])
    sparse, info = tiny.transcribe(jfk, word_timestamps=True, eas="1:0.5")
    sparse = list(sparse)
    assert info.tokens_kept == [750]
    dense_words = [w for s in dense for w in s.words]
    sparse_words = [w for s in sparse for w in s.words]
    assert [w.word for w in dense_words] == [w.word for w in sparse_words]
    for a, b in zip(dense_words, sparse_words):
        assert abs(a.start - b.start) <= 0.2 and abs(a.end - b.end) <= 0.2, (a, b)


def test_merging_by_keys_reads_the_keys_of_the_fused_kernel_and_merges_what_the_recording_path_merges(tiny, jfk_window):
    from whisper_eas.network.eas import EASReducer

    feats, n = jfk_window
    config = parse_eas("1:0.3 score=adjacent-keys")
    seen = []
    hooks = [blk.register_forward_hook(lambda m, args, kw, out, i=i: seen.append((i, kw.get("record"))), with_kwargs=True)
             for i, blk in enumerate(tiny.model.encoder.blocks)]
    try:
        fused = _encode(tiny, feats[None], [n], config)
    finally:
        for h in hooks:
            h.remove()
    assert [(i, r) for i, r in seen if r] == [(1, "keys")]
    plain = EASReducer.wants_attention
    EASReducer.wants_attention = lambda self, i: "probs" if plain(self, i) else None  # the recording path
    try:
        recorded = _encode(tiny, feats[None], [n], config)
    finally:
        EASReducer.wants_attention = plain
    assert fused.x.shape[1] == 1050  # 30% of 1500 merged away
    # the keys come from the projection before attention: the same merges either way
    assert torch.equal(fused.kept_index, recorded.kept_index) and torch.equal(fused.size, recorded.size)
    assert torch.allclose(fused.x, recorded.x, atol=1e-3)


def test_scoring_attention_equals_plain_attention_and_its_probabilities():
    from whisper_eas.network.model import attention_with_record

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 3, 300, 16, generator=g) for _ in range(3))
    size = torch.ones(2, 300)
    size[1, 250:] = 0  # the second item is 50 tokens shorter
    size[0, 10] = 4.0  # a merged token
    bias = size.log()[:, None, None, :]
    out, record = attention_with_record(q, k, v, bias, chunk=64)
    probs = ((q @ k.transpose(-1, -2)) * 16 ** -0.5 + bias).softmax(dim=-1)
    assert torch.allclose(out[0], (probs @ v)[0], atol=1e-5)
    assert torch.allclose(out[1, :, :250], (probs @ v)[1, :, :250], atol=1e-5)
    valid = (size > 0).float()
    assert torch.allclose(record.received, (probs * valid[:, None, :, None]).sum(dim=2), atol=1e-4)
    assert torch.allclose(record.diagonal, torch.diagonal(probs, dim1=-2, dim2=-1), atol=1e-6)
    assert record.n_queries.tolist() == [300.0, 250.0]


def test_similar_length_groups_split_mixed_lengths_only_with_the_padding_rule():
    from whisper_eas.pipeline.runner import similar_length_groups

    pad = parse_eas("-1:0 pad=32")
    frames = [106, 328, 2539, 74, 235, 238, 177, 315]
    groups = similar_length_groups(frames, pad, 1500)
    assert sorted(i for g in groups for i in g) == list(range(len(frames)))  # each window once
    assert [2] in groups  # the 25-s window runs alone, not padding seven 1-3 s windows to its length
    assert similar_length_groups([300, 302, 305], pad, 1500) == [[0, 1, 2]]
    assert similar_length_groups(frames, None, 1500) == [list(range(8))]  # dense: all 1500 tokens
    assert similar_length_groups(frames, parse_eas("1:0.5"), 1500) == [list(range(8))]  # k is the same
    assert similar_length_groups([], pad, 1500) == []


def test_batch_of_mixed_lengths_equals_one_by_one(tiny, jfk):
    from whisper_eas.io.audio import SAMPLE_RATE, load_audio

    audio = load_audio(jfk)
    clips = [audio[: int(s * SAMPLE_RATE)] for s in (11.0, 1.5, 4.0, 2.2, 8.0)]
    options = dict(eas="-1:0 pad=32", without_timestamps=True, temperature=0.0)
    alone, kept = [], []
    for c in clips:
        segments, info = tiny.transcribe(c, **options)
        alone.append("".join(s.text for s in segments))  # runs the generator, which fills info
        kept.append(info.tokens_kept)
    results = sorted(tiny.transcribe_batch(clips, batch_size=2, **options), key=lambda r: r.index)
    assert ["".join(s.text for s in r.segments) for r in results] == alone
    assert [r.info.tokens_kept for r in results] == kept


# ---------------------------------------------------------------------------------------------
# Windows full of speech: adjacent merging and pause pooling

def _pairs(t=8, d=6, seed=0):
    """Tokens in near-identical pairs (0,1), (2,3), ...: each pair one sound held for 40 ms."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(t // 2, d, generator=g)
    x = base.repeat_interleave(2, dim=0) + 0.01 * torch.randn(t, d, generator=g)
    return TokenSet(x[None], torch.arange(t)[None])


def test_adjacent_merging_joins_near_duplicate_neighbours():
    tokens = _pairs(t=8)
    out = merge_adjacent(tokens, tokens.x, torch.ones(1, 8, dtype=torch.bool), 0.5, None)
    assert out.kept_index.tolist() == [[0, 2, 4, 6]]  # each odd token joined its twin on the left
    assert out.size.tolist() == [[2.0, 2.0, 2.0, 2.0]]
    assert torch.allclose(out.x[0, 1], tokens.x[0, 2:4].mean(dim=0))


def test_adjacent_merging_takes_the_most_similar_pairs_first_and_at_most_half():
    tokens = _pairs(t=8)
    x = tokens.x.clone()
    x[0, 5] = -x[0, 4]  # the pair (4, 5) now disagrees
    tokens = TokenSet(x, tokens.kept_index)
    quarter = merge_adjacent(tokens, tokens.x, torch.ones(1, 8, dtype=torch.bool), 0.25, None)
    assert quarter.kept_index.shape[1] == 6 and 5 in quarter.kept_index[0].tolist()
    half = merge_adjacent(tokens, tokens.x, torch.ones(1, 8, dtype=torch.bool), 0.5, None)
    assert half.kept_index.shape[1] == 4 and float(half.size.sum()) == 8.0  # nothing lost
    with pytest.raises(ValueError, match="at most half"):
        parse_eas("0:0.6 score=adjacent")


def test_adjacent_merging_leaves_padding_and_non_candidates_alone():
    tokens = _pairs(t=8)
    candidate = torch.tensor([[True] * 4 + [False] * 4])
    out = merge_adjacent(tokens, tokens.x, candidate, 0.5, None)
    assert out.kept_index.tolist() == [[0, 2, 4, 5, 6, 7]]


def test_adjacent_merging_hands_on_every_token_outside_the_candidates_stretch_bit_for_bit():
    # a short clip before block 0: 12 speech tokens and 28 of padding; and, batched with it, a
    # row of merged tokens (sizes) whose last four are batch padding (size 0)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 40, 6, generator=g)
    size = torch.ones(2, 40)
    size[1, :36] = torch.randint(1, 4, (36,), generator=g).float()
    size[1, 36:] = 0
    index = torch.arange(40).expand(2, 40).clone()
    index[1, 36:] = -1
    candidate = (torch.arange(40) < 12)[None].expand(2, 40) & (size > 0)
    for tokens in (TokenSet(x[:1], index[:1]), TokenSet(x, index, size)):
        out = merge_adjacent(tokens, tokens.x, candidate[: len(tokens.x)], 0.5, None)
        sizes = tokens.size if tokens.size is not None else torch.ones(1, 40)
        for row in range(len(tokens.x)):
            n = int((out.size[row] > 0).sum())
            assert n == 40 - (row == 1) * 4 - 6  # half of the 12 speech tokens joined a neighbour
            assert float(out.size[row].sum()) == float(sizes[row].sum())  # nothing lost
            rest = out.kept_index[row, :n] >= 12
            assert out.kept_index[row, :n][rest].tolist() == list(range(12, n + 6))
            s = sizes[row, 12 : n + 6, None]
            assert torch.equal(out.x[row, :n][rest], x[row, 12 : n + 6] * s / s)  # x itself where s = 1


def test_a_second_adjacent_stage_merges_merged_tokens():
    config = parse_eas("0:0.5,1:0.5 score=adjacent")
    tokens = _pairs(t=16)
    reducer = EASReducer(config, torch.tensor([16]))
    once = reducer(0, tokens, None)
    twice = reducer(1, once, None)
    assert once.kept_index.shape[1] == 8 and twice.kept_index.shape[1] == 4
    assert twice.size.sum() == 16 and twice.kept_index[0].tolist() == sorted(twice.kept_index[0].tolist())


def test_pauses_are_quiet_runs_inside_the_audio_less_their_edges():
    energy = torch.full((1, 40), 1.0)
    energy[0, 10:24] = 0.0  # 14 quiet tokens, 40 dB down (1 unit of normalised log-mel)
    energy[0, 30:34] = 0.0  # too short to count
    pauses = pause_tokens(energy, torch.tensor([36]), drop_db=30.0, min_run=10, edge=2)
    assert pauses[0].nonzero()[:, 0].tolist() == list(range(12, 22))


def test_pause_pooling_pools_pauses_and_keeps_speech():
    tokens = _tokens(t=20)
    pauses = torch.zeros(1, 20, dtype=torch.bool)
    pauses[0, 5:13] = True
    out = pool_padding(tokens, torch.tensor([20]), None, pauses, 4)
    assert out.kept_index.tolist() == [[0, 1, 2, 3, 4, 5, 9, 13, 14, 15, 16, 17, 18, 19]]
    assert out.size.tolist()[0][5:7] == [4.0, 4.0]


def test_a_policy_picks_the_speech_configuration_for_windows_full_of_speech():
    policy = parse_eas("-1:0 pad=32 | 0:0.5,3:0.5 score=adjacent pad=32")
    assert policy.describe() == "-1:0 pad=32 | 0:0.5,3:0.5 score=adjacent pad=32"
    assert policy.pick(300).describe() == "-1:0 pad=32"  # a 3-s clip
    assert policy.pick(2800).describe() == "0:0.5,3:0.5 score=adjacent pad=32"  # a 28-s chunk of a talk
    assert parse_eas("off | 0:0.3 score=adjacent").pick(100) is None
    with pytest.raises(ValueError, match="two configurations"):
        parse_eas("1:0.5 | 1:0.5 | 1:0.5")
    with pytest.raises(ValueError, match="out of range"):
        policy.check_layers(2)
