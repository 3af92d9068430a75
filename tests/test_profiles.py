"""EAS profiles are explicit: a search leaves `--eas auto` alone, `profile install` changes it
and says so, transcribe names the profile it ran, and a broken profile is skipped with one
warning - never used silently, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisper_eas.io import profiles
from whisper_eas.io.profiles import SHIPPED_DIR, find_profile, install_profile, load_profile, user_profile_dir

SHIPPED_TINY = SHIPPED_DIR / "tiny.en-cpu-float32.json"
# what `--eas auto` runs with only the shipped profile: its short-clip and its speech configuration
SHIPPED_POLICY = load_profile(SHIPPED_TINY).policy.describe()
SHIPPED_SPEECH = load_profile(SHIPPED_TINY).eas_speech.describe()


@pytest.fixture(autouse=True)
def fresh_warnings():
    profiles._warned.clear()  # one warning per file and process: each test starts afresh
    yield
    profiles._warned.clear()


def write_profile(path: Path, tiny, eas="1:0.5", utterances=80, significant=True, fingerprint=None, metrics=None,
                  **extra) -> Path:
    """A profile as a search writes it (its metrics record the search), unless `metrics` says otherwise."""
    if metrics is None:
        metrics = {"wer": 0.06, "dense_wer": 0.055, "allowed": 0.01, "utterances": utterances,
                   "significant": significant}
    data = {"format": profiles.FORMAT, "model": "tiny.en", "fingerprint": fingerprint or tiny.loaded.fingerprint,
            "device": "cpu", "dtype": "float32", "eas": eas, "metrics": metrics, **extra}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def settings(cli, *args):
    code, out, err = cli("transcribe", *args, "-f", "json")
    assert code == 0, err
    return json.loads(out)["settings"], err


# -- install ----------------------------------------------------------------------------------

def test_transcribe_names_the_shipped_profile_it_runs(cli, jfk):
    got, err = settings(cli, jfk)
    assert got["profile"] == str(SHIPPED_TINY) and got["eas"] == SHIPPED_POLICY and err == ""
    got, err = settings(cli, jfk, "--eas", "off")
    assert got["profile"] is None and got["eas"] is None


def test_verbose_says_which_profile_runs_in_one_line(cli, jfk):
    code, out, err = cli("transcribe", jfk, "--verbose")
    assert code == 0 and err.splitlines() == [f"whisper-eas: EAS profile {SHIPPED_TINY}: {SHIPPED_POLICY}"]


def test_install_makes_auto_run_the_profile_and_says_what_it_ran_before(cli, jfk, tiny, tmp_path):
    made = write_profile(tmp_path / "search" / "profile.json", tiny, eas="1:0.5")
    code, out, err = cli("profile", "install", made)
    assert code == 0, err
    installed = user_profile_dir() / f"tiny.en-cpu-float32-{tiny.loaded.fingerprint[:8]}.json"
    assert out.splitlines() == [f"installed {installed}: `--eas auto` now runs 1:0.5 | {SHIPPED_SPEECH} for tiny.en on cpu float32 "
                                f"(before: {SHIPPED_POLICY} from {SHIPPED_TINY})"]
    got, _ = settings(cli, jfk)
    assert got["eas"] == f"1:0.5 | {SHIPPED_SPEECH}" and got["profile"] == str(installed)

    code, out, err = cli("profile", "remove", installed.stem)
    assert code == 0, err
    assert out.splitlines() == [f"removed {installed}: `--eas auto` now runs {SHIPPED_POLICY} for tiny.en on cpu float32 "
                                f"(from {SHIPPED_TINY})"]
    assert settings(cli, jfk)[0]["eas"] == SHIPPED_POLICY


@pytest.mark.parametrize("metrics, reason", [(dict(utterances=12), "a search on 12 utterances, fewer than 50"),
                                             (dict(significant=False), "not significantly within the budget")])
def test_install_is_refused_for_a_small_or_not_significant_search_unless_forced(cli, tiny, tmp_path, metrics, reason):
    made = write_profile(tmp_path / "profile.json", tiny, **metrics)
    code, out, err = cli("profile", "install", made)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and reason in err and "--force" in err
    assert not user_profile_dir().exists()
    code, out, err = cli("profile", "install", made, "--force")
    assert code == 0 and out.startswith("installed ")


def test_a_small_search_leaves_eas_auto_unchanged_and_install_changes_it(cli, jfk, tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"audio": str(jfk), "text": "ask not what your country can do for you"}) + "\n")
    out_dir = tmp_path / "search"
    code, out, err = cli("search", manifest, "--layers", "1", "--sparsities", "0.5", "--no-plots", "-q", "-o", out_dir)
    assert code == 0, err
    assert (out_dir / "profile.json").is_file() and not user_profile_dir().exists()
    assert out.splitlines()[-1] == ("not installed: `--eas auto` is unchanged; to run this pick by default: "
                                    f"whisper-eas profile install {out_dir / 'profile.json'}")
    assert settings(cli, jfk)[0]["profile"] == str(SHIPPED_TINY)

    code, out, err = cli("search", manifest, "--layers", "1", "--sparsities", "0.5", "--no-plots", "-q",
                         "-o", out_dir, "--install")  # resumes from the cache, then refuses: 1 utterance
    assert code == 2 and "a search on 1 utterances, fewer than 50" in err and len(err.splitlines()) == 1
    code, out, err = cli("search", manifest, "--layers", "1", "--sparsities", "0.5", "--no-plots", "-q",
                         "-o", out_dir, "--install", "--force")
    assert code == 0, err
    assert out.splitlines()[-1].startswith("installed ") and f"(before: {SHIPPED_POLICY} from" in out
    assert settings(cli, jfk)[0]["profile"].startswith(str(user_profile_dir()))


# -- validation -------------------------------------------------------------------------------

def test_a_broken_installed_profile_is_skipped_with_one_warning_naming_it(cli, jfk, tiny):
    bad = user_profile_dir() / "broken.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{ not json")
    got, err = settings(cli, jfk)
    assert got["profile"] == str(SHIPPED_TINY)  # the shipped profile runs instead
    assert err.splitlines() == [f"whisper-eas: warning: {bad}: skipped: not a readable profile (JSONDecodeError)"]
    _, err = settings(cli, jfk)
    assert err == ""  # once per file


@pytest.mark.parametrize("layer", [5, 9])
def test_a_profile_for_these_weights_with_blocks_the_model_lacks_is_skipped_with_a_warning(cli, jfk, tiny, layer):
    bad = write_profile(user_profile_dir() / "deep.json", tiny, eas=f"{layer}:0.5")  # tiny.en has blocks 0..3
    got, err = settings(cli, jfk)
    assert got["eas"] == SHIPPED_POLICY
    assert err.splitlines() == [f"whisper-eas: warning: {bad}: skipped: EAS layer {layer} is out of range: "
                                "this encoder has blocks 0..3"]
    code, out, err = cli("transcribe", jfk)  # every plain transcribe still works, warned once
    assert code == 0 and err == "" and "country" in out


HAND_MADE = "0:0.99 drop score=random"  # no search would pick it: JFK comes out as " who-"


@pytest.mark.parametrize("metrics", [None, {}, {"utterances": 80, "significant": True}, {"wer": "low"}],
                         ids=["no metrics", "empty metrics", "no WER", "WER not a number"])
def test_a_hand_placed_profile_that_records_no_search_is_skipped_with_one_warning(cli, jfk, tiny, metrics):
    bad = write_profile(user_profile_dir() / "hand-made.json", tiny, eas=HAND_MADE, metrics=metrics or {})
    if metrics is None:
        data = json.loads(bad.read_text())
        del data["metrics"]
        bad.write_text(json.dumps(data))
    got, err = settings(cli, jfk)
    assert got["eas"] == SHIPPED_POLICY and got["profile"] == str(SHIPPED_TINY)  # never used silently
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"whisper-eas: warning: {bad}: skipped: it records no search")
    assert f"--profile {bad}" in lines[0]


def test_a_hand_placed_profile_runs_when_named_and_transcribe_names_it(cli, jfk, tiny, tmp_path):
    mine = write_profile(tmp_path / "mine.json", tiny, eas=HAND_MADE, metrics={})
    fast = ["--temperature-increment-on-fallback", "none"]  # its garbage would be decoded again at 5 temperatures
    got, err = settings(cli, jfk, "--profile", mine, *fast)
    assert got["profile"] == str(mine) and got["eas"] == "0:0.99 score=random drop" and err == ""
    code, out, err = cli("transcribe", jfk, "--profile", mine, "--verbose", *fast)
    assert code == 0 and err.splitlines() == [f"whisper-eas: EAS profile {mine}: 0:0.99 score=random drop"]


def test_a_profile_whose_wer_is_past_its_own_budget_is_skipped(cli, jfk, tiny):
    bad = write_profile(user_profile_dir() / "lossy.json", tiny, eas=HAND_MADE,
                        metrics={"wer": 0.9, "dense_wer": 0.05, "allowed": 0.01, "utterances": 80, "significant": True})
    got, err = settings(cli, jfk)
    assert got["eas"] == SHIPPED_POLICY
    assert err.splitlines() == [f"whisper-eas: warning: {bad}: skipped: its WER (90.00%) is past what its search "
                                f"allowed (dense 5.00% + 1.00%); run it with --profile {bad} if you mean to"]


@pytest.mark.parametrize("claimed", ["large-v3", "base", "Systran/faster-whisper-small"])
def test_a_profile_naming_another_model_is_not_used_even_if_the_fingerprint_matches(cli, jfk, tiny, tmp_path,
                                                                                   claimed):
    bad = write_profile(user_profile_dir() / "claims.json", tiny, eas=HAND_MADE, model=claimed)
    got, err = settings(cli, jfk)
    assert got["eas"] == SHIPPED_POLICY
    assert err.splitlines() == [f"whisper-eas: warning: {bad}: skipped: made for {claimed}, not for tiny.en"]
    code, out, err = cli("transcribe", jfk, "--profile", bad)
    assert code == 2 and err.splitlines() == [f"whisper-eas: error: {bad}: made for {claimed}, not for tiny.en"]


def test_a_profile_naming_the_model_by_an_alias_or_a_path_is_used(cli, jfk, tiny):
    write_profile(user_profile_dir() / "alias.json", tiny, eas="1:0.5", model="Systran/faster-whisper-tiny.en")
    assert settings(cli, jfk)[0]["eas"] == "1:0.5"
    write_profile(user_profile_dir() / "alias.json", tiny, eas="2:0.5", model="/models/my-tiny-en-ct2")
    assert settings(cli, jfk)[0]["eas"] == "2:0.5"


def test_a_profile_that_records_no_search_is_not_installed_even_with_force(cli, tiny, tmp_path):
    mine = write_profile(tmp_path / "mine.json", tiny, eas=HAND_MADE, metrics={})
    code, out, err = cli("profile", "install", mine, "--force")
    assert code == 2 and out == "" and not user_profile_dir().exists()
    assert err.splitlines() == [f"whisper-eas: error: {mine}: not installed: it records no search (its metrics lack "
                                f"'wer', 'dense_wer', 'utterances'); `--eas auto` runs only a search's pick (run this "
                                f"one with --profile {mine})"]


def test_the_python_api_skips_an_untrustworthy_profile_too(tiny, tmp_path, monkeypatch, caplog):
    import logging

    from whisper_eas import WhisperModel

    monkeypatch.setenv("WHISPER_EAS_HOME", str(tmp_path / "home"))
    bad = write_profile(user_profile_dir() / "hand-made.json", tiny, eas="9:0.5", metrics={})
    logger = logging.getLogger("whisper_eas")  # caplog's handler on it alone: the command line may have
    monkeypatch.setattr(logger, "propagate", False)  # stopped its propagation to the root logger, or not
    logger.addHandler(caplog.handler)
    try:
        model = WhisperModel("tiny.en", loaded=tiny.loaded)  # eas="auto"
    finally:
        logger.removeHandler(caplog.handler)
    assert model.profile.path == SHIPPED_TINY and model.eas.describe() == SHIPPED_POLICY
    assert [r.getMessage() for r in caplog.records] == [f"{bad}: skipped: EAS layer 9 is out of range: "
                                                        "this encoder has blocks 0..3"]


def test_profiles_for_other_models_are_passed_over_silently(cli, jfk, tiny):
    write_profile(user_profile_dir() / "other.json", tiny, fingerprint="0123456789abcdef")
    got, err = settings(cli, jfk)
    assert got["eas"] == SHIPPED_POLICY and err == ""


def test_an_explicit_profile_for_other_weights_is_refused(cli, jfk, tiny, tmp_path):
    other = write_profile(tmp_path / "other.json", tiny, fingerprint="0123456789abcdef")
    code, out, err = cli("transcribe", jfk, "--profile", other)
    assert code == 2 and err.splitlines() == [
        f"whisper-eas: error: {other}: made for tiny.en (weights 0123456789abcdef), not for tiny.en "
        f"(weights {tiny.loaded.fingerprint})"]


@pytest.mark.parametrize("text, message", [
    ("{}", "not a whisper-eas profile"),
    (json.dumps({"format": profiles.FORMAT, "model": "m"}), "lacks the field"),
    (json.dumps({"format": profiles.FORMAT, "model": "m", "fingerprint": "f", "device": "cpu", "eas": "1:x"}),
     "does not parse"),
])
def test_a_bad_profile_file_is_one_profile_error(tmp_path, text, message):
    from whisper_eas.errors import ProfileError

    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message) as e:
        load_profile(path)
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


# -- list, show, remove -----------------------------------------------------------------------

def test_list_marks_what_auto_runs_and_show_prints_the_file(cli, tiny, tmp_path):
    installed, before = install_profile(write_profile(tmp_path / "p.json", tiny, eas="2:0.3"))
    assert before.path == SHIPPED_TINY
    code, out, err = cli("profile", "list")
    assert code == 0, err
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in out.splitlines()[1:-1]}
    assert rows[installed.path.stem].startswith("*") and "2:0.3" in rows[installed.path.stem] and "installed" in rows[installed.path.stem]
    assert not rows["tiny.en-cpu-float32"].startswith("*")  # the installed one wins over the shipped one
    assert rows["base-cpu-float32"].startswith("*")
    code, out, err = cli("profile", "show", installed.path.stem)
    assert code == 0 and json.loads(out)["eas"] == "2:0.3" and json.loads(out)["installed"] is True


def test_a_shipped_profile_cannot_be_removed(cli):
    code, out, err = cli("profile", "remove", "tiny.en-cpu-float32")
    assert code == 2 and "not an installed profile" in err


def test_find_profile_prefers_the_same_compute_type_then_any(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WHISPER_EAS_HOME", str(tmp_path / "home"))
    install_profile(write_profile(tmp_path / "a.json", tiny, eas="1:0.5", dtype="int8"))
    fp = tiny.loaded.fingerprint
    assert find_profile("tiny.en", fp, "cpu", "int8").eas.describe() == "1:0.5"
    assert find_profile("tiny.en", fp, "cpu", "float32").path == SHIPPED_TINY
    assert find_profile("tiny.en", fp, "cuda", "float16") is None


# -- two roles: short clips and windows full of speech -----------------------------------------

def test_a_long_recording_search_installs_its_pick_beside_the_short_clip_configuration(cli, tiny, tmp_path):
    made = tmp_path / "search" / "profile.json"
    made.parent.mkdir(parents=True)
    made.write_text(json.dumps({
        "format": profiles.FORMAT, "model": "tiny.en", "fingerprint": tiny.loaded.fingerprint, "device": "cpu",
        "dtype": "float32", "eas": None, "metrics": {}, "eas_speech": "0:0.5 score=adjacent pad=32",
        # six recordings are few files but fifteen minutes of speech: enough to install
        "metrics_speech": {"utterances": 6, "audio_seconds": 925.0, "significant": True,
                           "wer": 0.066, "dense_wer": 0.066, "allowed": 0.01}}))
    code, out, err = cli("profile", "install", made)
    assert code == 0, err
    assert "now runs -1:0 pad=32 | 0:0.5 score=adjacent pad=32 for tiny.en on cpu float32" in out
    installed = find_profile("tiny.en", tiny.loaded.fingerprint, "cpu", "float32")
    assert installed.eas.describe() == "-1:0 pad=32"  # kept from the shipped profile
    assert installed.metrics == load_profile(SHIPPED_TINY).metrics
    assert installed.policy.describe() == "-1:0 pad=32 | 0:0.5 score=adjacent pad=32"


def test_a_speech_search_on_a_few_short_files_is_still_refused(cli, tiny, tmp_path):
    made = tmp_path / "profile.json"
    made.write_text(json.dumps({
        "format": profiles.FORMAT, "model": "tiny.en", "fingerprint": tiny.loaded.fingerprint, "device": "cpu",
        "dtype": "float32", "eas": None, "eas_speech": "0:0.5 score=adjacent",
        "metrics_speech": {"utterances": 6, "audio_seconds": 120.0, "significant": True,
                           "wer": 0.066, "dense_wer": 0.066, "allowed": 0.01}}))
    code, out, err = cli("profile", "install", made)
    assert code == 2 and "fewer than 50" in err and "minutes of audio" in err
