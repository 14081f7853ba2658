"""The generated model card: model facts from its JSON, data sources with licences, the test table."""

from __future__ import annotations

import json

import pytest
from test_targets import _summary

from digit_denoise.checkpoint import model_meta, save_checkpoint
from digit_denoise.errors import UserError
from digit_denoise.models import build_model
from tools.card import build, main


def test_card_names_sources_and_numbers(tmp_path):
    m = build_model("masknet", {"channels": 8, "dilations": [1, 2]})
    training = {"preset": "speech", "loss": "spec+sisdr", "batch_size": 32, "segment": 1.0, "steps": 30000,
                "lr": 1e-3, "ema": 0.999, "elapsed_s": 7200.0, "samples_per_s": 25.0, "snr": "-12:10",
                "manifest": "/x/speech16k.csv,/x/fsdd.csv", "noise": "white,babble,/s/noise16k:seen",
                "init": "/runs/stage4", "no_harm": 0.5, "no_regress": 3.0}
    save_checkpoint(tmp_path / "ck", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000,
                                                   {"training": training, "step": 5000}))
    rep = tmp_path / "rep"
    rep.mkdir()
    s = _summary({"noisy": {"si_sdr": -8.0, "pesq": 1.1, "stoi": 0.6}, "gtcrn": {"si_sdr": 3.0},
                  "mine": {"si_sdr": 6.25, "pesq": 1.5, "stoi": 0.75}})
    s["rtf"] = {"mine": 0.0123}
    (rep / "summary.json").write_text(json.dumps(s))
    text = build(str(tmp_path / "ck"), "mine", [rep])
    assert "Speech Commands v0.02" in text and "CC BY-SA 4.0" in text and "noise16k" in text
    assert "5000 steps" in text and "2.0 h of training" in text and "0.0123" in text
    assert "fine-tuned from `stage4`, no-harm guard × 0.5, no-regress guard × 3.0 against its starting" in text
    assert "| all | white@-8dB | -8.00 / 1.10 / 0.600 | gtcrn: 3.00 / — / — | 6.25 / 1.50 / 0.750 |" in text
    assert "| b | pink@-8dB |" in text
    with pytest.raises(UserError, match="no report"):
        build(str(tmp_path / "ck"), "other", [rep])
    out = tmp_path / "card.md"
    assert main(["--model", str(tmp_path / "ck"), "--method", "mine", "--reports", str(rep), "-o", str(out)]) == 0
    assert out.read_text() == text
    assert "Attenuation limit" not in text  # none in the model file: none on the card
    kept = tmp_path / "docs" / "reports"  # the slim copy kept in the repo gives the same card
    from tools.results import keep
    assert build(str(tmp_path / "ck"), "mine", [keep(rep, kept)]) == text
    seed_eval = tmp_path / "seed-eval.json"  # an `evaluate` summary among them (docs/reports/*.json) is passed over
    seed_eval.write_text(json.dumps({"methods": {"model": {"mse": 0.01}}, "per_digit": {}}))
    assert build(str(tmp_path / "ck"), "mine", [seed_eval, rep]) == text


def test_card_of_an_utterance_norm_model_guarded_against_a_teacher(tmp_path):
    """Per-utterance norm: long files are not exactly whole-file processing, and the card says how close;
    the synthetic voices of several `data synth` manifests are one credited source; the guard names its
    teacher; its attenuation limit is stated."""
    m = build_model("masknet", {"channels": 8, "dilations": [1, 2], "norm": "utterance"})
    training = {"preset": "fast", "loss": "sisdr", "batch_size": 32, "segment": 1.0, "steps": 100, "lr": 1e-4,
                "manifest": "/x/fsdd.csv,/x/synth1.csv,/x/synth2.csv", "noise": "white", "snr": "-12:8",
                "init": "/runs/l240", "no_regress": 10.0, "teacher": "default"}
    save_checkpoint(tmp_path / "ck", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000,
                                                   {"training": training, "step": 100, "atten_lim_db": 25.0}))
    rep = tmp_path / "rep"
    rep.mkdir()
    s = _summary({"noisy": {"si_sdr": -8.0}, "mine": {"si_sdr": 6.0}})
    s["rtf"] = {"mine": 0.008}
    (rep / "summary.json").write_text(json.dumps(s))
    text = build(str(tmp_path / "ck"), "mine", [rep])
    assert "no-regress guard × 10.0 against `default`" in text
    assert text.count("espeak-ng") == 1 and "no attribution on record" not in text
    assert "each window normalised on its own: within 0.1 dB of whole-file processing" in text
    assert "which equals whole-file processing" not in text
    assert "Attenuation limit 25 dB: the output is (1 − g)·model + g·input with g = 0.056" in text


def test_card_of_a_fine_tuned_published_model_carries_its_mit_notice(tmp_path):
    m = build_model("gtcrn", {"causal": False})
    training = {"preset": "speech", "loss": "spec+sisdr", "init": "gtcrn", "manifest": "/x/speech16k.csv"}
    save_checkpoint(tmp_path / "ck", m, model_meta("gtcrn", m.config.to_dict(), {"kind": "wave"}, 16000,
                                                   {"training": training, "step": 2000}))
    rep = tmp_path / "rep"
    rep.mkdir()
    (rep / "summary.json").write_text(json.dumps({**_summary({"noisy": {"si_sdr": -8.0}, "ft": {"si_sdr": 6.0}}),
                                                  "rtf": {"ft": 0.03}}))
    text = build(str(tmp_path / "ck"), "ft", [rep])
    assert "## Licence of derived weights" in text and "MIT, Copyright (c) Rong Xiaobin, `LICENSE-gtcrn`" in text
    save_checkpoint(tmp_path / "ck2", m, model_meta("gtcrn", m.config.to_dict(), {"kind": "wave"}, 16000,
                                                    {"training": {**training, "init": ""}, "step": 2000}))
    assert "Licence of derived weights" not in build(str(tmp_path / "ck2"), "ft", [rep])


def test_card_names_the_training_noise_it_had():
    from tools.card import _noise_words

    assert _noise_words("white,pink,texture,babble,../shared/data/noise16k:seen") == (
        "coloured noise, synthetic noise textures, babble and real noise recordings (the `:seen` files)")
    assert _noise_words("white,colored,babble") == "coloured noise and babble"
    assert _noise_words("babble") == "babble" and _noise_words("") == "unknown noise"


def test_card_of_a_personalised_model_has_its_voice_section(tmp_path):
    m = build_model("masknet", {"channels": 8, "dilations": [1, 2], "voice": 256})
    save_checkpoint(tmp_path / "ck", m, model_meta("masknet", m.config.to_dict(), {"kind": "wave"}, 16000,
                                                   {"training": {"preset": "fast"}, "step": 10}))
    rep = tmp_path / "rep"
    rep.mkdir()
    s = _summary({"noisy": {"si_sdr": -8.0}, "default": {"si_sdr": -8.1}, "voice": {"si_sdr": -2.0},
                  "voice@other": {"si_sdr": -15.0}})
    s["rtf"], s["enroll"] = {"voice": 0.006}, {"clips_per_profile": 3}
    (rep / "summary.json").write_text(json.dumps(s))
    text = build(str(tmp_path / "ck"), "voice", [rep], title="the personalised model `voice`")
    assert text.startswith("# Model card: the personalised model `voice`") and "## Voice profiles" in text
    assert "| white@-8dB | -8.00 | -8.10 | -2.00 | -15.00 |" in text and "3 other clips of its speaker" in text
    assert "own > blind (of 4) |" in text and "| b | -8.00 | -8.10 | -2.00 | -15.00 | 4 |" in text  # per corpus
