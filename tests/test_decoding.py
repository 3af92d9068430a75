"""Decoding: the logit rules, greedy and beam search, batching, and agreement with faster-whisper."""

from __future__ import annotations

import pytest
import torch

from whisper_eas.io.audio import AudioWindows
from whisper_eas.network.decoding import (ApplyTimestampRules, Decoder, DecodingOptions, SuppressBlank, SuppressTokens,
                                  compression_ratio, draw_tokens, greedy_tokens)

NEG = float("-inf")


@pytest.fixture(scope="module")
def tok(tiny):
    return tiny.tokenizer


def _logits(tok, rows=1, fill=0.0):
    return torch.full((rows, tok.n_vocab), fill)


def test_timestamp_rules(tok):
    ts = tok.timestamp_begin
    rules = ApplyTimestampRules(tok, max_initial_timestamp_index=50)
    begin = 3

    # the first sampled token is a timestamp no later than 1.00 s
    logits = _logits(tok)
    rules.apply(logits, torch.zeros(1, begin, dtype=torch.long), begin)
    allowed = (logits[0] > NEG).nonzero()[:, 0]
    assert allowed.min().item() == ts and allowed.max().item() == ts + 50

    # after an opening timestamp and text, a closing timestamp not before the opening one, or EOT
    seq = torch.tensor([[0, 0, 0, ts + 10, 400]])
    logits = _logits(tok)
    logits[0, 500] = 10.0  # likelier than all ~1490 timestamps together (log 1490 = 7.3)
    rules.apply(logits, seq, begin)
    assert logits[0, ts + 9] == NEG and logits[0, ts + 10] == NEG and logits[0, ts + 11] > NEG  # nonzero length
    assert logits[0, 500] > NEG  # text still allowed here

    # after "<|t0|> text <|t1|>" (an open timestamp): no text, only a timestamp >= t1 or EOT
    seq = torch.tensor([[0, 0, 0, ts + 10, 400, ts + 20]])
    logits = _logits(tok)
    logits[0, tok.eot] = 10.0
    rules.apply(logits, seq, begin)
    assert logits[0, 400] == NEG and logits[0, tok.eot] > NEG
    assert logits[0, ts + 19] == NEG and logits[0, ts + 20] > NEG

    # after a closed pair: no timestamp
    seq = torch.tensor([[0, 0, 0, ts + 10, 400, ts + 20, ts + 20]])
    logits = _logits(tok)
    rules.apply(logits, seq, begin)
    assert bool((logits[0, ts:] == NEG).all()) and logits[0, 400] > NEG

    # timestamps win when their total probability beats every single text token
    seq = torch.tensor([[0, 0, 0, ts + 10, 400]])
    logits = _logits(tok, fill=-10.0)
    logits[0, 400] = 0.0
    logits[0, ts + 11 :] = 0.0
    rules.apply(logits, seq, begin)
    assert logits[0, 400] == NEG
    assert logits[0, tok.no_timestamps] == NEG


def test_suppress_blank_and_tokens(tok):
    logits = _logits(tok, rows=2)
    SuppressBlank(tok).apply(logits, torch.zeros(2, 1, dtype=torch.long), 1)
    assert logits[0, tok.eot] == NEG and logits[0, tok.encode(" ")[0]] == NEG
    logits = _logits(tok)
    SuppressBlank(tok).apply(logits, torch.zeros(1, 2, dtype=torch.long), 1)  # not at the start
    assert logits[0, tok.eot] == 0.0
    logits = _logits(tok)
    SuppressTokens(tok.suppress_tokens((-1,)), tok.n_vocab, "cpu").apply(logits, None, 0)
    assert logits[0, tok.no_speech] == NEG and logits[0, tok.sot_prev] == NEG
    assert logits[0, tok.encode('"')[0]] == NEG  # a non-speech symbol
    assert logits[0, tok.encode(" hello")[0]] == 0.0


def test_compression_ratio_flags_repetition():
    assert compression_ratio("the cat sat on the mat") < 1.5
    assert compression_ratio("la " * 200) > 2.4
    assert compression_ratio("") == 0.0


@pytest.fixture(scope="module")
def jfk_audio(tiny, jfk):
    feats, n = AudioWindows(jfk, padding="zeros").window(0)
    return tiny.encode(feats[None], [n], None)


def test_greedy_matches_faster_whisper_tokens(tiny, jfk, jfk_audio):
    """Same CT2 weights, same features: the greedy token sequence is identical."""
    faster_whisper = pytest.importorskip("faster_whisper")
    from whisper_eas.io.loading import _bundled

    dec = Decoder(tiny.model, tiny.tokenizer, DecodingOptions())
    ours = dec.run(jfk_audio, [dec.initial_tokens()])[0]
    fw = faster_whisper.WhisperModel(str(_bundled("tiny.en")[0]), device="cpu", compute_type="float32", cpu_threads=2)
    segments, _ = fw.transcribe(str(jfk), beam_size=1, temperature=0.0, condition_on_previous_text=False)
    fw_tokens = [t for s in segments for t in s.tokens]
    assert ours.tokens == fw_tokens


def test_beam_search_finds_a_sequence_at_least_as_likely_as_greedy(tiny, jfk_audio):
    greedy = Decoder(tiny.model, tiny.tokenizer, DecodingOptions(without_timestamps=True))
    beam = Decoder(tiny.model, tiny.tokenizer, DecodingOptions(without_timestamps=True, beam_size=4))
    g = greedy.run(jfk_audio, [greedy.initial_tokens()])[0]
    b = beam.run(jfk_audio, [beam.initial_tokens()])[0]
    assert b.avg_logprob >= g.avg_logprob - 1e-6
    assert "ask not what your country can do for you" in b.text


def test_batch_decoding_equals_one_by_one(tiny, jfk):
    windows = [AudioWindows(jfk).window(s) for s in (0, 400, 700)]
    audio = tiny.encode(torch.stack([f for f, _ in windows]), [n for _, n in windows], None)
    for options in (DecodingOptions(), DecodingOptions(beam_size=3, without_timestamps=True)):
        dec = Decoder(tiny.model, tiny.tokenizer, options)
        together = dec.run(audio, [dec.initial_tokens()] * 3)
        for i in range(3):
            alone = dec.run(audio.select(torch.tensor([i])), [dec.initial_tokens()])[0]
            assert together[i].tokens == alone.tokens
            assert together[i].avg_logprob == pytest.approx(alone.avg_logprob, abs=1e-4)


def test_prompt_and_prefix_are_placed_before_the_sampled_tokens(tiny):
    tok = tiny.tokenizer
    dec = Decoder(tiny.model, tok, DecodingOptions(without_timestamps=True))
    prompt = tok.encode(" earlier words")
    seq = dec.initial_tokens(prompt, prefix=tok.encode(" And"))
    assert seq[0] == tok.sot_prev and seq[1 : 1 + len(prompt)] == prompt
    assert seq[1 + len(prompt)] == tok.sot and tok.no_timestamps in seq
    long_prompt = list(range(1000))
    assert len(dec.initial_tokens(long_prompt)) <= tiny.model.dims.n_text_ctx // 2 + 2


def test_sampling_uses_best_of_and_is_seedable(tiny, jfk_audio):
    dec = Decoder(tiny.model, tiny.tokenizer, DecodingOptions(temperature=0.8, best_of=3, without_timestamps=True))
    torch.manual_seed(0)
    a = dec.run(jfk_audio, [dec.initial_tokens()])[0]
    torch.manual_seed(0)
    b = dec.run(jfk_audio, [dec.initial_tokens()])[0]
    assert a.tokens == b.tokens and a.temperature == 0.8


def test_greedy_tokens_are_the_first_largest_column_as_argmax_gives_with_ties_infinities_and_nans():
    gen = torch.Generator().manual_seed(0)
    for trial in range(300):
        rows = int(torch.randint(1, 20, (), generator=gen))
        width = int(torch.randint(1, 3000, (), generator=gen))
        logits = torch.randint(-3, 3, (rows, width), generator=gen).float()  # many ties
        if trial % 3 == 0:
            logits[torch.rand(rows, width, generator=gen) < 0.3] = NEG
        if trial % 7 == 0:
            logits[torch.rand(rows, width, generator=gen) < 0.001] = float("nan")
        assert torch.equal(greedy_tokens(logits), logits.argmax(dim=-1)), (rows, width)
    vocab = torch.randn(16, 51864, generator=gen)
    vocab[3, 51863] = vocab[5, 0] = 100.0  # the last column; the first
    assert torch.equal(greedy_tokens(vocab), vocab.argmax(dim=-1))


def test_drawn_tokens_follow_the_probabilities_never_take_a_zero_and_repeat_with_the_seed():
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0, 1.0]]).repeat(4000, 1)
    tokens = draw_tokens(probs, torch.Generator().manual_seed(1))
    first = torch.bincount(tokens[0::2], minlength=5).float() / 4000
    assert torch.allclose(first, torch.tensor([0.1, 0.0, 0.6, 0.3, 0.0]), atol=0.03)
    assert bool((tokens[1::2] == 4).all())  # a certain token, after a run of zeros
    again = draw_tokens(probs, torch.Generator().manual_seed(1))
    assert torch.equal(tokens, again)
    # unnormalised rows (a float sum a little off 1) draw in proportion too
    assert torch.equal(draw_tokens(probs * 0.999, torch.Generator().manual_seed(1)), tokens)


def test_invalid_options():
    for kwargs in (dict(temperature=-1), dict(beam_size=0), dict(best_of=0), dict(beam_size=3, temperature=0.5),
                   dict(patience=2.0)):
        with pytest.raises(ValueError):
            DecodingOptions(**kwargs)


def test_the_row_by_row_timestamp_grammar_bans_what_the_masked_one_bans_and_returns_the_final_log_probs(tok):
    """The CPU applies the pair and monotonicity rules row by row, accelerators as whole-batch
    masks: both ban the same tokens. And the log-probabilities the rule hands the loop are those
    of the logits as it leaves them."""
    ts = tok.timestamp_begin
    rules = ApplyTimestampRules(tok, max_initial_timestamp_index=50)
    begin = 3
    seqs = torch.tensor([
        [0, 0, 0, ts + 10, 400, 401],          # text after an opening timestamp
        [0, 0, 0, ts + 10, 400, ts + 20],      # an open timestamp: close it or end
        [0, 0, 0, ts + 10, 400, 402],          # made a closed pair below
        [0, 0, 0, 400, 401, 402],              # no timestamp yet
        [0, 0, 0, ts + 5, ts + 5, 400],        # a closed pair then text
    ])
    seqs[2, -2:] = torch.tensor([ts + 30, ts + 30])  # a closed pair: no timestamp next
    torch.manual_seed(0)
    base = torch.randn(len(seqs), tok.n_vocab) * 3
    by_row, masked = base.clone(), base.clone()
    rules._grammar_by_row(by_row, seqs)
    rules._grammar_masked(masked, seqs)
    assert torch.equal(by_row == NEG, masked == NEG)
    for boost in (0.0, 5.0):  # with 5, the timestamps' total mass beats the best text token in rows 0 and 3
        rows = base.clone()
        rows[[0, 3], ts:] += boost
        logprobs = rules.apply(rows, seqs, begin)
        assert bool((rows[0, :ts] == NEG).all()) == (boost > 0)
        assert logprobs is not None and torch.allclose(logprobs, rows.log_softmax(dim=-1), equal_nan=True)
        # the accelerators' whole-batch form of the text ban gives the same logits and log-probabilities
        masked = base.clone()
        masked[[0, 3], ts:] += boost
        masked[:, tok.no_timestamps] = NEG
        rules._grammar_masked(masked, seqs[:, begin:])
        before = masked.log_softmax(dim=-1)
        banned = before[:, ts:].logsumexp(dim=-1) > before[:, :ts].max(dim=-1).values
        masked_logprobs = rules._ban_text_masked(masked, banned, before)
        assert torch.equal(masked == NEG, rows == NEG)
        assert torch.allclose(masked_logprobs, logprobs, equal_nan=True)


def _stream_windows(tiny, jfk):
    """Windows of different lengths, encoded with the padding rule: their encoder token counts
    (and so their cross-attention keys) differ."""
    from whisper_eas.network.eas import parse_eas

    eas = parse_eas("-1:0 pad=32")
    windows = [AudioWindows(jfk).window(s) for s in (0, 300, 500, 800)]
    windows[1] = (windows[1][0], 250)  # a 2.5-s window
    return [tiny.encode(f[None], [n], eas) for f, n in windows]


def test_windows_that_join_a_greedy_stream_mid_flight_get_the_tokens_they_get_alone(tiny, jfk):
    """Rows that join at different steps (so at different positions), with different encoder
    lengths and a prompt of a different length, decode as each does in a batch of its own."""
    from whisper_eas.network.model import TokenSet

    tok = tiny.tokenizer
    dec = Decoder(tiny.model, tok, DecodingOptions())
    audio = _stream_windows(tiny, jfk)
    assert len({a.x.shape[1] for a in audio}) == 4
    initial = [dec.initial_tokens(), dec.initial_tokens(), dec.initial_tokens(tok.encode(" Fellow citizens.")),
               dec.initial_tokens()]
    alone = [dec.run(a, [i])[0] for a, i in zip(audio, initial)]
    stream = dec.stream()
    joins = {0: [0], 2: [1, 2], 5: [3]}  # step -> rows that join before it
    got, step = {}, 0
    while step == 0 or len(stream):
        if step in joins:
            rows = joins[step]
            stream.join(TokenSet.concat([audio[r] for r in rows]), [initial[r] for r in rows], rows)
        got.update(dict(stream.step()))
        step += 1
        assert step < 500
    assert sorted(got) == [0, 1, 2, 3]
    for r, want in enumerate(alone):
        assert got[r].tokens == want.tokens, r
        assert got[r].avg_logprob == pytest.approx(want.avg_logprob, abs=1e-4)
        assert got[r].no_speech_prob == pytest.approx(want.no_speech_prob, abs=1e-5)
        assert got[r].text == want.text and got[r].temperature == 0.0


def test_a_row_dropped_from_a_stream_leaves_the_others_as_they_were(tiny, jfk):
    from whisper_eas.network.model import TokenSet

    dec = Decoder(tiny.model, tiny.tokenizer, DecodingOptions())
    audio = _stream_windows(tiny, jfk)[:3]
    alone = [dec.run(a, [dec.initial_tokens()])[0] for a in audio]
    stream = dec.stream()
    stream.join(TokenSet.concat(audio[:2]), [dec.initial_tokens()] * 2, ["a", "gone"])
    got = dict(stream.step())
    stream.join(audio[2], [dec.initial_tokens()], ["c"])
    stream.drop(lambda tag: tag == "gone")
    assert len(stream) == 2
    while len(stream):
        got.update(dict(stream.step()))
    assert "gone" not in got
    assert got["a"].tokens == alone[0].tokens and got["c"].tokens == alone[2].tokens


def test_a_stream_decodes_greedily_only(tiny):
    from whisper_eas.errors import OptionsError

    with pytest.raises(OptionsError):
        Decoder(tiny.model, tiny.tokenizer, DecodingOptions(temperature=0.2)).stream()
    with pytest.raises(OptionsError):
        Decoder(tiny.model, tiny.tokenizer, DecodingOptions(beam_size=2)).stream()


def test_a_decoder_cache_closes_up_leaving_rows_and_fills_joining_rows_in_its_own_store():
    """Rows that leave in order are moved up in place and rows that join go into the spare rows
    of the same store (a stream allocates it once); beam reorderings take turns between two
    stores; what every row holds is what a copy holds."""
    from whisper_eas.network.model import DecoderCache

    def cache(rows, length, seed):
        g = torch.Generator().manual_seed(seed)
        k, v = (torch.randn(2, rows, 3, 16, 4, generator=g) for _ in range(2))
        cross = [torch.randn(rows, 3, 5, 4, generator=g) for _ in range(2)]
        c = DecoderCache(k, v, cross, [x.clone() for x in cross], None)
        c.length = length
        return c

    c, other = cache(4, 6, 0), cache(1, 3, 1)
    before = c.self_k[:, :, :, :6].clone()
    store = c.self_k.data_ptr()
    c.select(torch.tensor([0, 2, 3]))
    assert c.self_k.data_ptr() == store and c.batch_size == 3
    assert torch.equal(c.self_k[:, :, :, :6], before[:, [0, 2, 3]])
    c.join(other)  # a fourth row fits in the store's spare row
    assert c.self_k.data_ptr() == store and c.batch_size == 4 and c.length == 6
    assert torch.equal(c.self_k[:, :3, :, :6], before[:, [0, 2, 3]])
    assert torch.equal(c.self_k[:, 3, :, :3], other.self_k[:, 0, :, :3])
    assert not c.self_k[:, 3, :, 3:6].any()  # beyond its own position: zeros, never stale rows
    c.join(cache(2, 2, 2))  # no room left: a larger store, the rows carried over
    assert c.self_k.data_ptr() != store and c.batch_size == 6
    assert torch.equal(c.self_k[:, :3, :, :6], before[:, [0, 2, 3]])
    beams = cache(3, 4, 3)
    kept = beams.self_v[:, :, :, :4].clone()
    beams.select(torch.tensor([2, 0, 0]))  # reordered and repeated (beam search): a copy
    assert torch.equal(beams.self_v[:, :, :, :4], kept[:, [2, 0, 0]])
    first = beams.self_v.data_ptr()
    kept = beams.self_v[:, :, :, :4].clone()
    beams.select(torch.tensor([1, 1, 2]))  # the next reordering writes into the previous store
    assert torch.equal(beams.self_v[:, :, :, :4], kept[:, [1, 1, 2]])
    beams.select(torch.tensor([0, 2, 1]))  # and back into the one the first reordering made
    assert torch.equal(beams.self_v[:, :, :, :4], kept[:, [1, 1, 2]][:, [0, 2, 1]])
    assert beams.self_v.data_ptr() == first


def test_a_window_that_joins_a_stream_at_a_temperature_draws_the_samples_it_draws_alone(tiny, jfk):
    """A fallback window (best_of samples from its own seeded generator) joins greedy rows in
    flight, and gets the samples and the choice among them that `Decoder.run` gives it."""
    import dataclasses

    from whisper_eas.errors import OptionsError
    from whisper_eas.network.model import TokenSet

    tok = tiny.tokenizer
    greedy = Decoder(tiny.model, tok, DecodingOptions())
    sampling = Decoder(tiny.model, tok, DecodingOptions(temperature=0.6, best_of=3))
    audio = _stream_windows(tiny, jfk)
    prompt = greedy.initial_tokens(tok.encode(" Fellow citizens."))
    alone = [sampling.run(audio[1], [greedy.initial_tokens()], seeds=[7])[0],
             sampling.run(audio[2], [prompt], seeds=[8])[0]]
    stream = greedy.stream()
    stream.join(TokenSet.concat([audio[0], audio[3]]), [greedy.initial_tokens()] * 2, ["g0", "g3"])
    got = dict(stream.step())
    stream.join(audio[1], [greedy.initial_tokens()], ["s1"], decoder=sampling, seeds=[7])
    assert len(stream) == 5  # three samples joined the two greedy rows
    got.update(dict(stream.step()))
    stream.join(audio[2], [prompt], ["s2"], decoder=sampling, seeds=[8])
    steps = 0
    while len(stream):
        got.update(dict(stream.step()))
        steps += 1
        assert steps < 500
    assert sorted(got) == ["g0", "g3", "s1", "s2"]
    for tag, want in zip(("s1", "s2"), alone):
        assert got[tag].tokens == want.tokens and got[tag].temperature == 0.6
        assert got[tag].avg_logprob == pytest.approx(want.avg_logprob, abs=1e-4)
        assert got[tag].no_speech_prob == pytest.approx(want.no_speech_prob, abs=1e-5)
    with pytest.raises(OptionsError):  # other options than the temperature: not this stream's rows
        stream.join(audio[0], [greedy.initial_tokens()], ["x"],
                    decoder=Decoder(tiny.model, tok, dataclasses.replace(sampling.options, suppress_blank=False)))
