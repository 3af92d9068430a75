"""`whisper-eas search`: the grid, the Pareto front and the pick on synthetic tables, resuming an
interrupted search without measuring anything twice, and a real run with tiny.en."""

from __future__ import annotations

import json

import pytest

from whisper_eas.evaluation import search
from whisper_eas.evaluation.evaluate import EvalResult, UtteranceResult
from whisper_eas.evaluation.manifest import Utterance
from whisper_eas.evaluation.metrics import ErrorCounts, corpus_wer, word_errors
from whisper_eas.io.profiles import find_profile, load_profile
from whisper_eas import EVAL_OPTIONS
from whisper_eas.errors import SearchCacheError
from whisper_eas.evaluation.search import (DENSE, Cache, GridSpec, ModelInfo, Row, Settings,
                                build_grid, pareto_front, pick, run_search, write_outputs)


def _row(key, wer, speedup, dense_wer=0.10, **kw):
    return Row(key=key, wer=wer, speedup=speedup, wer_delta=wer - dense_wer, **kw)


def _keys(rows):
    return [r.key for r in rows]


# ---------------------------------------------------------------------------------------------
# Pareto front

def test_front_keeps_only_undominated_rows_slowest_first():
    rows = [_row(DENSE, 0.10, 1.0), _row("a", 0.105, 1.5), _row("b", 0.13, 2.0), _row("c", 0.12, 1.4),
            _row("d", 0.095, 0.9), _row("e", 0.20, 1.9)]
    # c is slower and worse than a; e is slower and worse than b
    assert _keys(pareto_front(rows)) == ["d", DENSE, "a", "b"]


def test_dense_is_on_the_front_unless_something_is_as_accurate_and_faster():
    assert DENSE in _keys(pareto_front([_row(DENSE, 0.10, 1.0), _row("a", 0.11, 1.3)]))
    assert DENSE not in _keys(pareto_front([_row(DENSE, 0.10, 1.0), _row("a", 0.10, 1.3)]))


def test_front_ties_in_wer_keep_the_faster_and_ties_in_speed_keep_the_more_accurate():
    rows = [_row(DENSE, 0.10, 1.0), _row("x", 0.12, 1.5), _row("y", 0.12, 1.8), _row("p", 0.15, 2.2),
            _row("q", 0.14, 2.2)]
    assert _keys(pareto_front(rows)) == [DENSE, "y", "q"]


def test_front_compares_speed_at_two_decimals_and_keeps_exact_ties_together():
    # 1.503x and 1.498x both show as 1.50x: the less accurate one is dominated
    rows = [_row(DENSE, 0.10, 1.0), _row("fast-but-worse", 0.12, 1.503), _row("better", 0.11, 1.498)]
    assert _keys(pareto_front(rows)) == [DENSE, "better"]
    twins = [_row(DENSE, 0.10, 1.0), _row("t1", 0.11, 1.5), _row("t2", 0.11, 1.5)]
    assert _keys(pareto_front(twins)) == [DENSE, "t1", "t2"]


# ---------------------------------------------------------------------------------------------
# The pick

def test_pick_is_the_fastest_config_within_the_absolute_budget():
    rows = [_row(DENSE, 0.10, 1.0), _row("a", 0.105, 1.5), _row("b", 0.13, 2.0), _row("c", 0.109, 1.7)]
    p = pick(rows, budget=0.01)
    assert p.row.key == "c" and p.qualifying == 2 and p.significant
    assert p.message.startswith("pick: c: 1.70x faster")
    assert pick(rows, budget=0.03).row.key == "b"


def test_relative_budget_is_a_share_of_dense_wer():
    rows = [_row(DENSE, 0.10, 1.0), _row("a", 0.104, 1.5), _row("b", 0.108, 2.0)]
    p = pick(rows, budget=0.05, relative=True)  # 5% of 10% WER = 0.5 points
    assert p.row.key == "a" and p.allowed == pytest.approx(0.005)
    assert pick(rows, budget=0.10, relative=True).row.key == "b"


def test_a_loss_exactly_at_the_budget_qualifies_despite_float_rounding():
    dense = sum([ErrorCounts(6, 0, 0, 100)], ErrorCounts()).wer
    config = sum([ErrorCounts(7, 0, 0, 100)], ErrorCounts()).wer
    assert config - dense > 0.01  # 0.07 - 0.06 = 0.010000000000000009
    assert pick([_row(DENSE, dense, 1.0, dense), _row("a", config, 1.4, dense)], budget=0.01).row.key == "a"


def test_speed_ties_prefer_lower_wer_then_fewer_tokens_then_grid_order():
    base = [_row(DENSE, 0.10, 1.0, order=0)]
    rows = base + [_row("worse", 0.106, 1.60, order=1), _row("better", 0.104, 1.601, order=2)]
    assert pick(rows).row.key == "better"
    rows = base + [_row("more", 0.104, 1.6, tokens_kept=900, order=1),
                   _row("fewer", 0.104, 1.6, tokens_kept=600, order=2)]
    assert pick(rows).row.key == "fewer"
    rows = base + [_row("first", 0.104, 1.6, tokens_kept=600, order=1),
                   _row("second", 0.104, 1.6, tokens_kept=600, order=2)]
    assert pick(rows).row.key == "first"


def test_no_config_within_the_budget_keeps_dense_and_says_why():
    rows = [_row(DENSE, 0.10, 1.0), _row("a", 0.13, 1.5), _row("b", 0.12, 1.2)]
    p = pick(rows, budget=0.01)
    assert p.is_dense and p.qualifying == 0 and p.significant
    assert "no configuration is within the budget" in p.message and "closest is b" in p.message


def test_configs_within_the_budget_but_slower_than_dense_keep_dense():
    p = pick([_row(DENSE, 0.10, 1.0), _row("slow", 0.10, 0.9)], budget=0.01)
    assert p.is_dense and p.qualifying == 1 and "faster than dense" in p.message


def test_a_pick_whose_ci_reaches_past_the_budget_is_flagged():
    rows = [_row(DENSE, 0.10, 1.0), _row("lucky", 0.105, 1.8, ci_low=-0.01, ci_high=0.03)]
    p = pick(rows, budget=0.01)
    assert p.row.key == "lucky" and not p.significant
    assert "not significant at 95%" in p.message
    assert pick([_row(DENSE, 0.10, 1.0), _row("sure", 0.105, 1.8, ci_low=0.0, ci_high=0.009)]).significant


def test_pick_needs_dense_and_a_non_negative_budget():
    with pytest.raises(ValueError, match="dense"):
        pick([_row("a", 0.1, 1.2)])
    with pytest.raises(ValueError, match="budget"):
        pick([_row(DENSE, 0.1, 1.0)], budget=-0.1)


# ---------------------------------------------------------------------------------------------
# The grid

def test_default_grid_is_dense_plus_every_layer_times_nine_sparsities():
    grid = build_grid(GridSpec(), n_layers=4)
    assert len(grid) == 1 + 4 * 9
    assert grid[0].key == DENSE and grid[0].eas is None
    assert grid[1].key == "0:0.1" and grid[-1].key == "3:0.9"
    assert [c.order for c in grid] == list(range(len(grid)))


def test_grid_variants_adaptive_padding_reduce_scores_and_extras():
    spec = GridSpec(layers=(1,), sparsities=(0.5,), scores=("attention", "keynorm"), reduce="both",
                    adaptive=(0.9,), pad=(16,), extra=("1:0.3,2:0.5", "1:0.5", "dense"))
    keys = [c.key for c in build_grid(spec, n_layers=4)]
    assert keys[:5] == [DENSE, "1:0.5", "1:0 adaptive=0.9",
                        "1:0.5 drop", "1:0 drop adaptive=0.9"]
    assert "1:0.5 score=keynorm" in keys and "1:0 score=keynorm drop adaptive=0.9" in keys
    assert "-1:0 pad=16" in keys
    assert "1:0.5 score=keynorm drop pad=16" in keys and "1:0 adaptive=0.9 pad=16" in keys
    assert keys[-1] == "1:0.3,2:0.5"  # '1:0.5' and 'dense' were already there
    assert len(keys) == len(set(keys)) == 1 + 8 + 1 + 8 + 1


@pytest.mark.parametrize("spec, message", [
    (GridSpec(layers=(4,)), "layer 4 is out of range"),
    (GridSpec(scores=("nope",)), "unknown EAS score"),
    (GridSpec(layers=(), adaptive=()), "grid is empty"),
    (GridSpec(extra=("5:0.5",)), "out of range"),
    (GridSpec(extra=("1:x",)), "bad EAS spec"),
])
def test_grid_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        build_grid(spec, n_layers=4)


# ---------------------------------------------------------------------------------------------
# Resuming (a fake evaluator: no model)

MODEL = ModelInfo(name="fake", fingerprint="f" * 16, device="cpu", dtype="float32", n_layers=4, hardware="test")
UTTS = [Utterance(f"u{i}", f"/nowhere/u{i}.wav", "one two three four five six seven eight nine ten")
        for i in range(6)]


class FakeEvaluator:
    """Errors grow with sparsity, time shrinks with it; records every timed pass by config key,
    and raises KeyboardInterrupt once `interrupt_after` configs have been fully measured."""

    def __init__(self, interrupt_after=None, repeats=1):
        self.passes, self.interrupt_after, self.repeats = [], interrupt_after, repeats

    def __call__(self, whisper, utterances, options, language="en", progress=None):
        eas = options.eas
        key = DENSE if eas is None else eas.describe()
        warm_up = len(utterances) == 1
        done = len(self.passes) // self.repeats
        if warm_up and self.interrupt_after is not None and done >= self.interrupt_after:
            raise KeyboardInterrupt
        if not warm_up:
            self.passes.append(key)
        s = eas.stages[0].sparsity if eas is not None else 0.0
        layer = eas.stages[0].layer if eas is not None else 0
        out = []
        for i, u in enumerate(utterances):
            wrong = int(s * 10 * (0.3 + 0.2 * layer) + (i % 2)) // 2
            out.append(UtteranceResult(u.id, u.text, "x", ErrorCounts(wrong, 0, 0, 10), ErrorCounts(0, 0, 0, 50),
                                       3.0, 1.0 - 0.6 * s + 0.05 * layer, 0.5 - 0.4 * s, 0.5, 12,
                                       [int(1500 * (1 - s))]))
            if progress:
                progress()
        return EvalResult(out)


def _settings(repeats=1):
    return Settings(dataset="synthetic.jsonl", budget=0.01, repeats=repeats)


def _run(tmp_path, evaluator, candidates, repeats=1, logs=None):
    return run_search(object(), MODEL, UTTS, candidates, tmp_path / "out", _settings(repeats),
                      evaluate_fn=evaluator, log=(logs.append if logs is not None else lambda s: None))


def test_interrupted_search_resumes_without_measuring_any_config_twice(tmp_path):
    candidates = build_grid(GridSpec(layers=(0, 1), sparsities=(0.3, 0.6, 0.9)), n_layers=4)
    first = FakeEvaluator(interrupt_after=3, repeats=2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, first, candidates, repeats=2)
    done_first = set(first.passes)
    assert len(done_first) == 3 and first.passes.count(DENSE) == 2  # two timed passes each

    second, logs = FakeEvaluator(repeats=2), []
    outcome = _run(tmp_path, second, candidates, repeats=2, logs=logs)
    # nothing measured twice: dense again only for its end-of-search run (DENSE_END, same config)
    assert not (done_first - {DENSE}) & set(second.passes)
    assert second.passes.count(DENSE) == 2 and second.passes[-2:] == [DENSE, DENSE]
    assert sorted(done_first | set(second.passes)) == sorted(c.key for c in candidates)
    assert all(second.passes.count(k) == 2 for k in set(second.passes))  # each once, 2 timed passes
    assert logs[0].startswith(f"resuming: 3 of {len(candidates) + 1} configs cached")

    third = FakeEvaluator()
    again = _run(tmp_path, third, candidates, repeats=2)
    assert third.passes == [] and again.pick == outcome.pick

    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["type"] == "header"
    assert len(lines) == 1 + len(candidates) + 1
    row = json.loads(lines[1])
    assert row["key"] == DENSE and len(row["counts"]) == len(UTTS) and len(row["seconds_runs"]) == 2


def test_a_line_torn_by_a_kill_is_dropped_and_measured_again(tmp_path):
    candidates = build_grid(GridSpec(layers=(0,), sparsities=(0.5,)), n_layers=4)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, FakeEvaluator(interrupt_after=2), candidates)
    path = tmp_path / "out" / "results.jsonl"
    text = path.read_text()
    path.write_text(text[: len(text) - 40])  # the second config's line is cut mid-write
    again = FakeEvaluator()
    _run(tmp_path, again, candidates)
    assert again.passes == ["0:0.5", DENSE]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_a_cache_of_other_settings_is_refused(tmp_path):
    candidates = build_grid(GridSpec(layers=(0,), sparsities=(0.5,)), n_layers=4)
    _run(tmp_path, FakeEvaluator(), candidates)
    other = Settings(dataset="synthetic.jsonl", repeats=3)
    with pytest.raises(SearchCacheError, match="differs in: repeats"):
        run_search(object(), MODEL, UTTS, candidates, tmp_path / "out", other, evaluate_fn=FakeEvaluator())
    with pytest.raises(SearchCacheError, match="differs in: fingerprint"):
        run_search(object(), ModelInfo("fake", "0" * 16, "cpu", "float32", 4), UTTS, candidates,
                   tmp_path / "out", _settings(), evaluate_fn=FakeEvaluator())


def test_two_searches_cannot_share_an_output_dir(tmp_path):
    candidates = build_grid(GridSpec(layers=(0,), sparsities=(0.5,)), n_layers=4)
    key = search.cache_key(MODEL, "synthetic.jsonl", UTTS, None, EVAL_OPTIONS, 1)
    with Cache(tmp_path / "out" / "results.jsonl", key):
        with pytest.raises(SearchCacheError, match="in use by another running search"):
            _run(tmp_path, FakeEvaluator(), candidates)
    _run(tmp_path, FakeEvaluator(), candidates)  # the lock went with the first one


def test_default_output_dir_resumes_the_newest_unfinished_search_of_the_same_settings(tmp_path):
    key = {"fingerprint": "abc"}
    old = tmp_path / "search-tiny.en-20240101-000000"
    Cache(old / "results.jsonl", key).close()
    assert search.default_output_dir("tiny.en", key, tmp_path) == (old, True)
    assert search.default_output_dir("tiny.en", {"fingerprint": "other"}, tmp_path)[1] is False
    (old / "results.json").write_text("{}")  # finished
    new, resumed = search.default_output_dir("tiny.en", key, tmp_path)
    assert not resumed and new != old and new.name.startswith("search-tiny.en-")


def test_outputs_of_a_synthetic_search(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_EAS_HOME", str(tmp_path / "home"))
    candidates = build_grid(GridSpec(layers=(0, 1, 2, 3), adaptive=(0.9,)), n_layers=4)
    outcome = _run(tmp_path, FakeEvaluator(), candidates)
    written = write_outputs(outcome, tmp_path / "out")
    names = {p.name for p in written}
    assert {"results.jsonl", "results.csv", "results.json", "table.md", "pareto.png", "heatmap_wer.png",
            "heatmap_speedup.png", "profile.json"} <= names
    for png in ("pareto.png", "heatmap_wer.png", "heatmap_speedup.png"):
        assert (tmp_path / "out" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["pick"]["key"] == outcome.pick.row.key
    assert summary["front"] == [r.key for r in outcome.front]
    table = (tmp_path / "out" / "table.md").read_text()
    assert f"**`{outcome.pick.row.key}`**" in table and "✓" in table
    csv_lines = (tmp_path / "out" / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(candidates)

    # the fake evaluator's errors grow with layer and sparsity: 0:0.3 is the fastest with no loss
    assert outcome.pick.row.key == "0:0.3" and not outcome.pick.is_dense
    profile = load_profile(tmp_path / "out" / "profile.json")
    assert profile.eas.describe() == "0:0.3"
    assert (profile.model, profile.fingerprint, profile.device, profile.dtype) == ("fake", MODEL.fingerprint, "cpu",
                                                                                  "float32")
    assert profile.metrics["dense_wer"] == pytest.approx(outcome.baseline.wer)
    assert profile.metrics["utterances"] == len(UTTS) and profile.metrics["significant"] is True


def test_a_search_writes_its_profile_to_its_output_folder_only(tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_EAS_HOME", str(tmp_path / "home"))
    candidates = build_grid(GridSpec(layers=(0,), sparsities=(0.3,)), n_layers=4)
    written = write_outputs(_run(tmp_path, FakeEvaluator(), candidates), tmp_path / "out", plots=False)
    assert tmp_path / "out" / "profile.json" in written
    assert all(p.parent == tmp_path / "out" for p in written)
    assert not (tmp_path / "home").exists()
    assert find_profile("fake", MODEL.fingerprint, "cpu") is None  # --eas auto is unchanged


def test_a_search_that_keeps_dense_writes_a_profile_that_runs_dense(tmp_path):
    candidates = build_grid(GridSpec(layers=(3,), sparsities=(0.9,)), n_layers=4)  # far past the budget
    outcome = _run(tmp_path, FakeEvaluator(), candidates)
    assert outcome.pick.is_dense
    profile = search.make_profile(outcome)
    assert profile.eas.describe() == "0:0" and profile.eas.is_dense and profile.metrics["dense"] is True


# ---------------------------------------------------------------------------------------------
# The real thing, and the command line

def test_search_with_tiny_en_on_jfk(tiny, jfk, tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_EAS_HOME", str(tmp_path / "home"))
    text = ("And so, my fellow Americans, ask not what your country can do for you, "
            "ask what you can do for your country.")
    utts = [Utterance("jfk", str(jfk), text), Utterance("jfk-cut", str(jfk), text, 0.0, 11.0)]
    model = ModelInfo.of(tiny)
    candidates = build_grid(GridSpec(layers=(1,), sparsities=(0.5,)), model.n_layers)
    outcome = run_search(tiny, model, utts, candidates, tmp_path / "out", Settings(dataset="jfk.jsonl"),
                         log=lambda s: None)
    assert [r.key for r in outcome.rows] == [DENSE, "1:0.5"]
    dense, eas = outcome.rows
    assert dense.wer == 0.0 and dense.tokens_kept == 1500 and eas.tokens_kept == 750
    # the rows are what was measured: the WER of the transcripts in the cache, and the speedups the
    # ratio of dense's time (the median of its two runs) to the configuration's
    cache = {row["key"]: row for row in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines()[1:])}
    hypotheses = cache["1:0.5"]["hypotheses"]
    assert eas.wer == pytest.approx(corpus_wer([word_errors(u.text, h) for u, h in zip(utts, hypotheses)]))
    assert eas.wer <= 0.05
    dense_seconds = [sum(cache[k]["seconds_runs"]) for k in (DENSE, search.DENSE_END)]
    assert outcome.baseline.seconds == pytest.approx(sum(dense_seconds) / 2)
    assert eas.speedup == pytest.approx(outcome.baseline.seconds / cache["1:0.5"]["seconds_runs"][0])
    assert eas.encoder_speedup == pytest.approx(outcome.baseline.encode_seconds / cache["1:0.5"]["encode_runs"][0])
    written = write_outputs(outcome, tmp_path / "out")
    assert (tmp_path / "out" / "pareto.png").is_file() and not (tmp_path / "home").exists()
    assert len(written) == 8


def _manifest(tmp_path, jfk):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"audio": str(jfk), "text": "ask not"}) + "\n")
    return path


@pytest.mark.parametrize("argv, message", [
    (["search", "/no/such.jsonl"], "no such file"),
    (["search", "{m}", "--scores", "attention,bogus"], "unknown score 'bogus'"),
    (["search", "{m}", "--sparsities", "0.5,1.5"], "not in [0, 1)"),
    (["search", "{m}", "--layers", "one"], "--layers takes a comma-separated list of ints"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path, jfk, capsys):
    from whisper_eas.apps.cli import main

    argv = [a.replace("{m}", str(_manifest(tmp_path, jfk))) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def _measurement(key, seconds, errors=0, eas=None):
    counts = tuple(ErrorCounts(errors, 0, 0, 10) for _ in range(3))
    return search.Measurement(key=key, eas=eas, family="dense" if eas is None else "grid", ids=("a", "b", "c"),
                              counts=counts, hypotheses=("",) * 3, seconds_runs=(seconds,),
                              encode_runs=(seconds / 2,), audio_seconds=9.0, decoder_steps=30, tokens_kept=1500)


def test_dense_drift_warns_and_a_speedup_inside_the_noise_is_noted():
    candidates = build_grid(GridSpec(layers=(1,), sparsities=(0.5,)), n_layers=4)
    key = candidates[1].key
    busy = {DENSE: _measurement(DENSE, 1.0), search.DENSE_END: _measurement(DENSE, 1.3),
            key: _measurement(key, 1.05, eas=key)}
    outcome = search.summarize(MODEL, _settings(), 3, candidates, busy)
    assert outcome.baseline.seconds == pytest.approx(1.15) and "30% apart" in outcome.baseline.warning
    assert outcome.pick.row.key == key and "within the timing noise" in outcome.pick.message
    calm = {**busy, search.DENSE_END: _measurement(DENSE, 1.02), key: _measurement(key, 0.5, eas=key)}
    outcome = search.summarize(MODEL, _settings(), 3, candidates, calm)
    assert outcome.baseline.warning is None and "noise" not in outcome.pick.message


def test_a_confident_pick_skips_a_configuration_whose_interval_reaches_past_the_budget():
    from whisper_eas.evaluation.search.select import pick

    # the numbers of the long-form search (docs/search/longform-tiny.en): few recordings, wide intervals
    dense = _row(DENSE, 0.0582, 1.0, dense_wer=0.0582)
    lucky = _row("0:0.5", 0.0657, 1.50, dense_wer=0.0582, ci_low=-0.0036, ci_high=0.0175)
    sure = _row("0:0.3", 0.0536, 1.24, dense_wer=0.0582, ci_low=-0.0113, ci_high=0.0012)
    assert pick([dense, lucky, sure], budget=0.01).row is lucky  # the fastest within on average
    chosen = pick([dense, lucky, sure], budget=0.01, confident=True)
    assert chosen.row is sure and chosen.significant
