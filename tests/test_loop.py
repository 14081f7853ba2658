"""Training loop on a tiny synthetic corpus: loss goes down, run folder contents, exact resume, restart."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_MODEL, make_manifest, train_cfg
from safetensors.torch import load_file

from digit_denoise.errors import UserError
from digit_denoise.training.config import PRESETS
from digit_denoise.training.distributed import compile_model
from digit_denoise.training.inputs import SeedData
from digit_denoise.training.loop import train
from digit_denoise.training.runlog import read_history


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def manifest(tmp_path) -> Path:
    return make_manifest(tmp_path / "data")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / "last" / "model.safetensors"))


def test_tiny_run_learns_and_writes_run_folder(tmp_path, manifest):
    run = tmp_path / "run"
    s = train(train_cfg(manifest, run))
    assert s["steps"] == 16
    hist = read_history(run)
    assert [r["step"] for r in hist] == [4, 8, 12, 16]
    assert min(r["val_loss"] for r in hist[1:]) < hist[0]["val_loss"]  # one run against itself; the best later validation, not the last (robust to kernel-level drift)
    assert s["best_val_loss"] == pytest.approx(min(r["val_loss"] for r in hist))

    cfg = json.loads((run / "config.json").read_text())
    for k, v in PRESETS["seed"].items():
        if k not in ("lr", "batch_size", "val_every"):
            assert cfg[k] == v, k
    assert cfg["lr"] == 1e-2 and cfg["batch_size"] == 8 and cfg["preset"] == "seed"
    assert cfg["model_config"] == {"channels": [4, 8, 16]}

    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [4, 8, 12, 16]
    assert float(rows[-1]["val_loss"]) == pytest.approx(hist[-1]["val_loss"])
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for which in ("last", "best"):
        assert (run / "checkpoints" / which / "model.safetensors").is_file()
        assert json.loads((run / "checkpoints" / which / "model.json").read_text())["model"] == "seed"
    assert (run / "checkpoints" / "last" / "state.pt").is_file()
    assert not (run / "checkpoints" / "best" / "state.pt").exists()
    best_meta = json.loads((run / "checkpoints" / "best" / "model.json").read_text())
    assert best_meta["val_loss"] == pytest.approx(s["best_val_loss"])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 16 and summary["best_val_loss"] == pytest.approx(s["best_val_loss"])
    leftovers = [p.name for p in (run / "checkpoints").iterdir()] + [p.name for p in run.iterdir() if
                                                                       p.name.startswith(".")]
    assert sorted(leftovers) == ["best", "last"]


@pytest.mark.numerics
def test_resume_equals_straight_run(tmp_path, manifest):
    """Bit-exact on purpose: both arms run in this process with the same thread count, so the same
    kernels compute every step (a resume must not change a single bit)."""
    a, b = tmp_path / "a", tmp_path / "b"
    train(train_cfg(manifest, a, max_steps=4, val_every=3))
    assert [r["step"] for r in read_history(a)] == [3, 4]
    s = train(train_cfg(manifest, a, max_steps=8, val_every=3))
    assert s["steps"] == 8
    steps = [r["step"] for r in read_history(a)]
    assert steps == sorted(set(steps)) and steps[0] == 3 and steps[-1] == 8 and 6 in steps

    train(train_cfg(manifest, b, max_steps=8, val_every=3))
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    # rerunning a finished run does nothing more
    w_before = _weights(a)
    assert train(train_cfg(manifest, a, max_steps=8, val_every=3))["steps"] == 8
    assert all(torch.equal(w_before[k], v) for k, v in _weights(a).items())

    # other settings on an existing run: refuse and name --restart
    with pytest.raises(UserError) as e:
        train(train_cfg(manifest, a, max_steps=8, val_every=3, lr=5e-3))
    assert "--restart" in str(e.value) and "\n" not in str(e.value)

    # restart starts over (history begins again)
    s = train(train_cfg(manifest, a, max_steps=2, val_every=3, lr=5e-3), restart=True)
    assert s["steps"] == 2
    assert [r["step"] for r in read_history(a)] == [2]
    assert json.loads((a / "config.json").read_text())["lr"] == 5e-3


def test_restart_refuses_folder_that_is_not_a_run(tmp_path, manifest):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "thesis.txt").write_text("do not delete")
    for restart in (False, True):
        with pytest.raises(UserError):
            train(train_cfg(manifest, other, max_steps=1), restart=restart)
    assert (other / "thesis.txt").read_text() == "do not delete"


def test_manifest_without_val_or_test_split(tmp_path):
    m = make_manifest(tmp_path / "noval", val_fraction=0.0)
    with pytest.raises(UserError) as e:
        train(train_cfg(m, tmp_path / "run", max_steps=1))
    assert "val" in str(e.value) and "\n" not in str(e.value)
    # no test split: training does not need one
    m2 = make_manifest(tmp_path / "notest", test_speakers="0")
    assert train(train_cfg(m2, tmp_path / "run2", max_steps=1))["steps"] == 1


def test_fresh_noise_with_augmentation_changes_the_voice_every_epoch(tmp_path, manifest):
    cfg = train_cfg(manifest, tmp_path / "run", fresh_noise=True, limit=8, max_steps=3, batch_size=4, eq_db=10.0)
    data = SeedData(cfg, torch.device("cpu"))
    e0, e1, e2 = (np.asarray(data.train_pairs(e)) for e in (0, 1, 2))
    assert not np.allclose(e0[:, 0], e1[:, 0]) and not np.allclose(e1[:, 0], e2[:, 0])  # clean images too
    assert np.array_equal(np.asarray(data.train_pairs(1)), e1)  # a pure function of the epoch
    assert np.array_equal(np.asarray(data.val), np.asarray(SeedData(cfg, torch.device("cpu")).val))


def test_fresh_noise(tmp_path, manifest):
    cfg = train_cfg(manifest, tmp_path / "run", fresh_noise=True, augment=False, limit=8, max_steps=3,
                    batch_size=4)
    data = SeedData(cfg, torch.device("cpu"))
    e0, e1, e2 = (np.asarray(data.train_pairs(e)) for e in (0, 1, 2))
    assert np.array_equal(e0[:, 0], e1[:, 0])  # clean images are the same
    assert not np.allclose(e0[:, 1], e1[:, 1])  # noisy ones differ between epochs
    assert not np.allclose(e1[:, 1], e2[:, 1])
    assert np.array_equal(np.asarray(data.train_pairs(1)), e1)  # a pure function of the epoch
    val0 = np.asarray(data.val).copy()
    # evaluation noise stays fixed: a fresh SeedData gives the same val images
    assert np.array_equal(np.asarray(SeedData(cfg, torch.device("cpu")).val), val0)
    s = train(cfg)  # 2 steps/epoch: crosses into epoch 1
    assert s["steps"] == 3
    assert json.loads((tmp_path / "run" / "config.json").read_text())["fresh_noise"] is True


def test_bad_options_are_user_errors(tmp_path, manifest):
    for kw in (dict(val_every=0), dict(batch_size=0), dict(epochs=0), dict(lr=0.0), dict(seed=-1)):
        with pytest.raises(UserError) as e:
            train(train_cfg(manifest, tmp_path / "run", **kw))
        assert "\n" not in str(e.value)
    assert not (tmp_path / "run").exists()


def test_feature_cache_follows_file_changes(tmp_path, manifest):
    import soundfile as sf

    from digit_denoise.data.manifest import load_manifest, select
    from digit_denoise.data.pairs import _CACHE, BabblePool
    from digit_denoise.seed.cache import cache_dir, cached_seed_images
    from digit_denoise.seed.features import SeedFeatureConfig

    rows = select(load_manifest(manifest), "val", 3)
    feat, pool = SeedFeatureConfig(), BabblePool(rows)
    a = np.asarray(cached_seed_images(rows, feat, pool=pool)).copy()
    assert np.array_equal(np.asarray(cached_seed_images(rows, feat, pool=pool)), a)  # cache hit
    # a damaged cache file is recomputed, not a crash
    for p in (cache_dir() / "features").glob("*.npy"):
        p.write_bytes(b"garbage")
    assert np.array_equal(np.asarray(cached_seed_images(rows, feat, pool=pool)), a)
    # the corpus rewritten in place: new images, not the stale cache
    x, sr = sf.read(rows[0].clean_path, dtype="float32")
    sf.write(rows[0].clean_path, np.roll(x, 500) * 0.5, sr, subtype="PCM_16")
    _CACHE._items.clear()
    b = np.asarray(cached_seed_images(rows, feat, pool=pool))
    assert not np.allclose(a[0], b[0]) and np.array_equal(a[1:], b[1:])


def _one_step_outputs_and_grads(model, noisy, clean, channels_last=False, dtype=None, compiled=False):
    """(output, {name: gradient}) of one forward/backward of ``model`` in train mode (BatchNorm on the batch)."""
    net = model.to(memory_format=torch.channels_last) if channels_last else model
    x = noisy.contiguous(memory_format=torch.channels_last) if channels_last else noisy
    run = compile_model(net) if compiled else net
    with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
        y = run(x)
    torch.nn.functional.mse_loss(y.float(), clean).backward()
    return y.float().detach(), {k: p.grad.detach().clone() for k, p in model.named_parameters()}


def _seed_pair(manifest):
    """A tiny seed U-Net, a second copy with the same weights, and one real (noisy, clean) batch."""
    import copy

    from digit_denoise.models import build_model

    cfg = train_cfg(manifest, Path("unused"))
    data = SeedData(cfg, torch.device("cpu"))
    noisy, clean = data.train_batch(np.arange(8), 0, 0)
    torch.manual_seed(0)
    a = build_model("seed", dict(TINY_MODEL)).train()
    return a, copy.deepcopy(a), noisy, clean


def _close(a: torch.Tensor, b: torch.Tensor, rel: float) -> bool:
    return float((a - b).norm()) <= rel * float(b.norm()) + 1e-12


# The conv biases right before a BatchNorm have a gradient that is pure float rounding (BatchNorm
# subtracts the batch mean: ~1e-7 here against ~1e-2…1 for real gradients); they get an absolute
# bound, every other gradient a relative one. Measured on AVX-512: outputs 2e-5 relative (1e-4 max on
# values up to 1.7, BatchNorm over 8 images amplifies), gradients ≤ 1.1e-3 relative.
def _check_same_step(y1, g1, y0, g0) -> None:
    assert _close(y1, y0, 1e-4) and float((y1 - y0).abs().max()) < 1e-3
    for k in g0:
        if k.endswith(".bias") and float(g0[k].norm()) < 1e-5:
            assert float(g1[k].abs().max()) < 1e-5, k
        else:
            assert _close(g1[k], g0[k], 1e-2), k


@pytest.mark.numerics
def test_channels_last_and_bf16_compute_what_fp32_computes(manifest):
    """Speed options change memory layout / arithmetic, not the model: one forward/backward agrees.

    One step, not a training trajectory: Adam turns the rounding-noise gradients of the pre-BatchNorm
    biases into full-size steps, so multi-step runs drift apart by CPU instruction set (AVX2 vs AVX-512
    kernels) and could never promise more than "roughly similar".
    """
    plain, cl, noisy, clean = _seed_pair(manifest)
    y0, g0 = _one_step_outputs_and_grads(plain, noisy, clean)
    y1, g1 = _one_step_outputs_and_grads(cl, noisy, clean, channels_last=True)
    _check_same_step(y1, g1, y0, g0)
    _, bf, _, _ = _seed_pair(manifest)
    y2, g2 = _one_step_outputs_and_grads(bf, noisy, clean, dtype=torch.bfloat16)
    assert _close(y2, y0, 3e-2)  # bf16 keeps ~3 significant digits
    for k in g0:
        if float(g0[k].norm()) > 1e-5:
            cos = torch.nn.functional.cosine_similarity(g2[k].flatten(), g0[k].flatten(), dim=0)
            assert float(cos) > 0.95, k  # measured ≥ 0.989


def test_channels_last_and_bf16_runs_record_their_options(tmp_path, manifest):
    for name, kw in {"cl": dict(channels_last=True), "bf16": dict(precision="bf16")}.items():
        s = train(train_cfg(manifest, tmp_path / name, max_steps=2, val_every=2, **kw))
        assert s["steps"] == 2 and np.isfinite(s["best_val_loss"])
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        assert cfg["precision"] == kw.get("precision", "auto") and cfg["channels_last"] == ("channels_last" in kw)


@pytest.mark.numerics
def test_compile_computes_what_eager_computes(tmp_path, manifest):
    """torch.compile generates its own vectorised kernels: one forward/backward agrees with eager mode;
    a short compiled training run works end to end (not compared step by step, see above)."""
    pytest.importorskip("torch._dynamo")
    plain, comp, noisy, clean = _seed_pair(manifest)
    y0, g0 = _one_step_outputs_and_grads(plain, noisy, clean)
    y1, g1 = _one_step_outputs_and_grads(comp, noisy, clean, compiled=True)
    _check_same_step(y1, g1, y0, g0)
    s = train(train_cfg(manifest, tmp_path / "c", max_steps=2, val_every=2, compile=True))
    assert s["steps"] == 2 and np.isfinite(s["best_val_loss"])


def test_bad_precision_and_merged_manifests_for_seed_models(tmp_path, manifest):
    with pytest.raises(UserError, match="--precision"):
        train(train_cfg(manifest, tmp_path / "r", precision="fp8"))
    words = tmp_path / "words.csv"  # a corpus of words that are not digits: nothing for a seed model
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(words, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, "digit": "-1", "clean_path": str((Path(manifest).parent / r["clean_path"]).resolve())}
                    for r in rows)
    with pytest.raises(UserError, match="no clip of a spoken digit"):
        train(train_cfg(str(words), tmp_path / "r2"))
    s = train(train_cfg(f"{manifest},{words}", tmp_path / "r4", max_steps=2, val_every=2))  # the digits of both
    assert s["steps"] == 2
    with pytest.raises(UserError, match="nope.csv: manifest not found"):
        train(train_cfg(f"{manifest},{tmp_path / 'nope.csv'}", tmp_path / "r3"))


def test_model_config_overrides_merge_with_the_preset():
    from digit_denoise.training.config import resolve_config

    cfg = resolve_config("fast", model_config={"mask": "complex"})
    assert cfg.model_config == {**PRESETS["fast"]["model_config"], "mask": "complex"}
    assert resolve_config("fast", model="seed", model_config={"channels": [4, 8, 16]}).model_config == {
        "channels": [4, 8, 16]}  # another model family: nothing of the preset's config is kept


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_resolves_and_builds(preset):
    from digit_denoise.models import build_model, count_parameters, model_config
    from digit_denoise.training.config import resolve_config

    cfg = resolve_config(preset)
    m = build_model(cfg.model, model_config(cfg.model, cfg.model_config).__dict__)
    assert count_parameters(m) == 33 if preset == "seed-buggy" else count_parameters(m) > 400_000
    if preset == "best":  # bigger than fast, but still a CPU-runnable size
        assert 4_000_000 < count_parameters(m) < 6_000_000 and cfg.loss == "sisdr+mrstft"


@pytest.mark.numerics
def test_ema_and_planned_steps_survive_a_resume(tmp_path, monkeypatch):
    """`--steps` fixes the schedule across resumes; the EMA is validated, saved as best and resumed exactly
    (bit-exact: both arms run in this process on the same kernels and threads)."""
    from safetensors.torch import load_file

    from digit_denoise.training.config import learning_rate

    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    kw = dict(preset="speech", model_config={"channels": 8, "dilations": [1, 2], "norm": "frame"}, batch_size=8,
              val_every=6, lr=3e-3, segment=0.5, noise="white,pink", snr="0:5", steps=30, ema=0.9, eq_db=6.0)
    a, b = tmp_path / "a", tmp_path / "b"
    train(train_cfg(manifest_path(tmp_path), a, max_steps=12, **kw))
    hist = read_history(a)
    cfg = train_cfg(manifest_path(tmp_path), a, **kw)
    assert hist[-1]["lr"] == pytest.approx(learning_rate(cfg, 11, 30))  # the 30-step plan, not the 12 run
    assert learning_rate(cfg, 11, 30) > 1.5 * learning_rate(cfg, 29, 30)
    last = load_file(str(a / "checkpoints" / "last" / "model.safetensors"))
    best = load_file(str(a / "checkpoints" / "best" / "model.safetensors"))
    assert any(not torch.equal(last[k], best[k]) for k in last)  # best holds the average, not the raw weights
    train(train_cfg(manifest_path(tmp_path), b, max_steps=5, save_every=5, **kw))
    train(train_cfg(manifest_path(tmp_path), b, max_steps=12, **kw))
    for sub in ("last", "best"):
        wa = load_file(str(a / "checkpoints" / sub / "model.safetensors"))
        wb = load_file(str(b / "checkpoints" / sub / "model.safetensors"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), sub
    with pytest.raises(UserError, match="--ema"):
        train(train_cfg(manifest_path(tmp_path), tmp_path / "c", **{**kw, "ema": 1.0}))


def test_no_harm_penalty_is_trained_validated_and_refused_where_it_cannot_apply(tmp_path, monkeypatch):
    """--no-harm adds the penalty to the training and the validation loss (a higher val loss on the same
    weights at step 0's validation) and is refused for seed models and for negative weights."""
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    man = manifest_path(tmp_path)
    kw = dict(preset="fast", model_config=dict(TINY_WAVE), batch_size=8, val_every=1, lr=1e-9, segment=0.5,
              noise="white", snr="-5:-5", max_steps=1)
    train(train_cfg(man, tmp_path / "off", **kw))
    train(train_cfg(man, tmp_path / "on", no_harm=3.0, **kw))
    off, on = read_history(tmp_path / "off")[0]["val_loss"], read_history(tmp_path / "on")[0]["val_loss"]
    assert on > off  # an untrained mask loses SI-SDR against the input on some clips: the penalty is counted
    assert json.loads((tmp_path / "on" / "config.json").read_text())["no_harm"] == 3.0
    with pytest.raises(UserError, match="--no-harm"):
        train(train_cfg(man, tmp_path / "neg", no_harm=-1.0, **kw))
    with pytest.raises(UserError, match="--no-harm"):
        train(train_cfg(man, tmp_path / "seed", preset="seed", no_harm=1.0, max_steps=1))


def test_no_regress_measures_against_the_init_weights_even_after_a_resume(tmp_path, monkeypatch):
    """--no-regress: the frozen --init model is the teacher. Its penalty is zero (and so is its gradient)
    while the weights equal the teacher's, so two runs, with and without it, take the same first step;
    at validation the guarded run adds what its clips lost against the teacher. A resumed run keeps the
    --init weights as its teacher, not the checkpoint it resumes from."""
    from digit_denoise.training.distributed import Dist
    from digit_denoise.training.loop import Loop

    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    man = manifest_path(tmp_path)
    kw = dict(preset="fast", model_config=dict(TINY_WAVE), batch_size=8, val_every=1, segment=0.5,
              noise="white", snr="-5:0")
    train(train_cfg(man, tmp_path / "base", max_steps=2, lr=3e-3, **kw))
    base = str(tmp_path / "base")
    with pytest.raises(UserError, match="--no-regress .*needs --init or --teacher"):
        train(train_cfg(man, tmp_path / "x", max_steps=1, lr=5e-2, no_regress=1.0, **kw))
    train(train_cfg(man, tmp_path / "off", max_steps=1, lr=5e-2, init=base, **kw))
    train(train_cfg(man, tmp_path / "on", max_steps=1, lr=5e-2, init=base, no_regress=1.0, **kw))
    off, on = read_history(tmp_path / "off")[0]["val_loss"], read_history(tmp_path / "on")[0]["val_loss"]
    assert on > off  # a big first step makes some validation clips worse than the teacher
    from digit_denoise.checkpoint import load_model
    from digit_denoise.losses import harm, neg_si_sdr

    loop = Loop(train_cfg(man, tmp_path / "on", max_steps=2, lr=5e-2, init=base, no_regress=1.0, **kw), False,
                Dist(torch.device("cpu")))
    assert loop.step == 1  # resumed from its step-1 checkpoint
    init_model, _ = load_model(base)
    clean = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    noisy = clean + torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        est, teacher_out = loop.model(noisy), init_model.eval()(noisy)
        assert not torch.allclose(est, teacher_out)  # the resumed weights moved away from the teacher's
        expected = neg_si_sdr(est, clean) + harm(est, clean, teacher_out)
        assert float(loop.loss(est, clean, noisy)) == pytest.approx(float(expected), rel=1e-5)
    # --teacher: another model than the starting weights (e.g. the default a new model has to beat)
    train(train_cfg(man, tmp_path / "other", max_steps=2, lr=3e-3, seed=5, **kw))
    loop = Loop(train_cfg(man, tmp_path / "t", max_steps=1, lr=5e-2, init=base, no_regress=1.0,
                          teacher=str(tmp_path / "other"), **kw), False, Dist(torch.device("cpu")))
    other, _ = load_model(tmp_path / "other")
    with torch.no_grad():
        est, teacher_out = loop.model(noisy), other.eval()(noisy)
        expected = neg_si_sdr(est, clean) + harm(est, clean, teacher_out)
        assert float(loop.loss(est, clean, noisy)) == pytest.approx(float(expected), rel=1e-5)


def manifest_path(tmp_path):
    path = tmp_path / "data" / "manifest.csv"
    return path if path.exists() else make_manifest(tmp_path / "data")


TINY_WAVE = {"channels": 8, "dilations": [1, 2]}


@pytest.mark.numerics
def test_wave_training_learns_and_resumes_exactly(tmp_path, monkeypatch):
    """Bit-exact on purpose: both arms run in this process with the same thread count, so the same
    kernels compute every step (a resume must not change a single bit)."""
    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    manifest = make_manifest(tmp_path / "data")
    kw = dict(preset="fast", model_config=dict(TINY_WAVE), batch_size=8, val_every=6, lr=3e-3, segment=0.5,
              noise="white,pink", snr="0:5")
    a, b = tmp_path / "a", tmp_path / "b"
    s = train(train_cfg(manifest, a, max_steps=12, **kw))
    hist = read_history(a)
    assert s["steps"] == 12 and [r["step"] for r in hist] == [6, 12]
    assert min(r["val_loss"] for r in hist[1:]) < hist[0]["val_loss"] < 0  # -SI-SDR in dB: noisy input is > 0 dB
    meta = json.loads((a / "checkpoints" / "best" / "model.json").read_text())
    assert meta["model"] == "masknet" and meta["features"] == {"kind": "wave"} and meta["sample_rate"] == 16000
    # stop at 5 (a mid-run resume point), resume to 12: the same weights as the straight run
    train(train_cfg(manifest, b, max_steps=5, save_every=5, **kw))
    train(train_cfg(manifest, b, max_steps=12, **kw))
    from safetensors.torch import load_file

    wa = load_file(str(a / "checkpoints" / "last" / "model.safetensors"))
    wb = load_file(str(b / "checkpoints" / "last" / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_waveform_training_merges_manifests(tmp_path, monkeypatch):
    """`--manifest a.csv,b.csv`: train/val rows of both; evaluate uses the first manifest."""
    from digit_denoise.data.manifest import load_manifest, select
    from digit_denoise.evaluate import _run_manifest
    from digit_denoise.training.inputs import make_wave_data

    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    m1, m2 = make_manifest(tmp_path / "d1"), make_manifest(tmp_path / "d2", test_speakers="2")
    cfg = train_cfg(f"{m1},{m2}", tmp_path / "run", preset="fast", model_config=dict(TINY_WAVE), batch_size=8,
                    max_steps=2, val_every=2, segment=0.5)
    data = make_wave_data(cfg, 16000)
    n1, n2 = (len(select(load_manifest(m), "train")) for m in (m1, m2))
    assert len(data.train) == n1 + n2 > max(n1, n2)
    train(cfg)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["manifest"]
    assert saved == [str(m1.resolve()), str(m2.resolve())]
    assert Path(_run_manifest(tmp_path / "run", None)) == m1.resolve()


def test_init_fine_tunes_from_a_model_file(tmp_path, monkeypatch):
    """--init: step 0 starts from a model file (GTCRN's published weights into its non-causal variant too)."""
    from digit_denoise.checkpoint import load_model

    monkeypatch.setenv("DIGIT_DENOISE_CACHE", str(tmp_path / "cache"))
    man = make_manifest(tmp_path / "data")
    kw = dict(preset="fast", model="gtcrn", model_config={"causal": False}, batch_size=4, val_every=2, lr=1e-4,
              segment=0.5, noise="white", snr="0:5")
    run = tmp_path / "ft"
    train(train_cfg(man, run, max_steps=2, init="gtcrn", **kw))
    published, _ = load_model("gtcrn")
    tuned, _ = load_model(run / "checkpoints" / "last")
    p, t = published.state_dict(), tuned.state_dict()
    assert torch.allclose(t["encoder.en_convs.0.conv.weight"], p["encoder.en_convs.0.conv.weight"], atol=1e-3)
    assert "dpgrnn1.inter_rnn.rnn1.weight_ih_l0_reverse" in t  # the non-causal variant
    with pytest.raises(UserError, match="holds a 'gtcrn' model"):
        train(train_cfg(man, tmp_path / "x", max_steps=1, init="gtcrn", preset="fast", batch_size=4, segment=0.5,
                        model_config=dict(TINY_WAVE)))
