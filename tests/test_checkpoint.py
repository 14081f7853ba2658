"""Checkpoints: safetensors + JSON round trip, atomic folders, recovery, one-line load errors, safe state."""

from __future__ import annotations

import json
import os
import random
import shutil

import numpy as np
import pytest
import torch

from digit_denoise import checkpoint as ck
from digit_denoise.errors import UserError
from digit_denoise.models import build_model

SMALL = {"channels": [4, 8, 16]}


def _meta(name: str, config: dict) -> dict:
    return ck.model_meta(name, config, {"kind": "seed"}, 48000)


def _assert_one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("name", ["seed", "seed-buggy"])
def test_round_trip_identical_outputs(tmp_path, name):
    torch.manual_seed(1)
    model = build_model(name, SMALL)
    if name == "seed":  # make BatchNorm buffers non-trivial so they must be saved too
        model.train()
        with torch.no_grad():
            model(torch.rand(4, 1, 16, 16))
    model.eval()
    folder = ck.save_checkpoint(tmp_path / "ckpt", model, _meta(name, SMALL))
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.safetensors"]
    loaded, meta = ck.load_model(folder)
    assert meta["model"] == name and meta["format_version"] == ck.FORMAT_VERSION
    assert not loaded.training
    x = torch.rand(3, 1, 32, 24)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # also through the .safetensors path (json beside it is model.json)
    loaded2, _ = ck.load_model(folder / "model.safetensors")
    with torch.no_grad():
        assert torch.equal(model(x), loaded2(x))


def test_save_with_state_and_no_temp_left(tmp_path):
    model = build_model("seed", SMALL)
    state = {"step": 3, "rng": ck.rng_state(), "optimizer": torch.optim.Adam(model.parameters()).state_dict()}
    for _ in range(2):  # second save replaces the first
        ck.save_checkpoint(tmp_path / "last", model, _meta("seed", SMALL), state)
    assert sorted(p.name for p in (tmp_path / "last").iterdir()) == ["model.json", "model.safetensors", "state.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no .tmp / .old folders
    assert ck.load_state(tmp_path / "last")["step"] == 3


def test_recover_restores_old_copy(tmp_path):
    model = build_model("seed", SMALL)
    ck.save_checkpoint(tmp_path / "last", model, _meta("seed", SMALL))
    os.replace(tmp_path / "last", tmp_path / ".last.old")  # crash between the two renames
    ck.recover(tmp_path / "last")
    assert (tmp_path / "last" / "model.safetensors").is_file()
    assert not (tmp_path / ".last.old").exists()
    # load_model of a run folder recovers on its own
    run = tmp_path / "run"
    ck.save_checkpoint(run / "checkpoints" / "last", model, _meta("seed", SMALL))
    os.replace(run / "checkpoints" / "last", run / "checkpoints" / ".last.old")
    loaded, _ = ck.load_model(run)
    assert isinstance(loaded, torch.nn.Module)


def _saved(tmp_path):
    model = build_model("seed", None)
    return ck.save_checkpoint(tmp_path / "ck", model, _meta("seed", {}))


def test_load_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError) as e:
        ck.load_model(tmp_path / "missing")
    assert "not found" in _assert_one_line(e)

    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as e:
        ck.load_model(tmp_path / "empty")
    assert "model.safetensors" in _assert_one_line(e)

    folder = _saved(tmp_path)
    good_json = (folder / "model.json").read_text()

    corrupt = tmp_path / "corrupt"
    shutil.copytree(folder, corrupt)
    (corrupt / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(UserError) as e:
        ck.load_model(corrupt)
    assert "corrupt" in _assert_one_line(e)

    (folder / "model.json").write_text(json.dumps({"format": "something-else", "format_version": 1}))
    with pytest.raises(UserError) as e:
        ck.load_model(folder)
    assert "not a digit-denoise model" in _assert_one_line(e)

    (folder / "model.json").write_text("{not json")
    with pytest.raises(UserError) as e:
        ck.load_model(folder)
    assert "JSON" in _assert_one_line(e)

    meta = json.loads(good_json)
    (folder / "model.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(UserError) as e:
        ck.load_model(folder)
    assert "upgrade" in _assert_one_line(e)

    for bad in ("1", None, 0):
        (folder / "model.json").write_text(json.dumps({**meta, "format_version": bad}))
        with pytest.raises(UserError) as e:
            ck.load_model(folder)
        assert "format_version" in _assert_one_line(e)

    (folder / "model.json").write_text(json.dumps({**meta, "model": "transformer-xl"}))
    with pytest.raises(UserError) as e:
        ck.load_model(folder)
    assert "transformer-xl" in _assert_one_line(e)

    (folder / "model.json").write_text(json.dumps({**meta, "config": {"channels": [16, 32, 64]}}))
    with pytest.raises(UserError) as e:
        ck.load_model(folder)
    assert "do not match" in _assert_one_line(e)

    (folder / "model.json").write_text(json.dumps({**meta, "config": {"channels": [1, 2]}}))
    with pytest.raises(UserError) as e:
        ck.load_model(folder)
    _assert_one_line(e)

    (folder / "model.json").unlink()
    with pytest.raises(UserError) as e:
        ck.load_model(folder)
    assert "missing" in _assert_one_line(e)


def test_state_loaded_weights_only(tmp_path, monkeypatch):
    calls = []
    real = torch.load

    def spy(*a, **kw):
        calls.append(kw.get("weights_only"))
        return real(*a, **kw)

    monkeypatch.setattr(torch, "load", spy)
    model = build_model("seed", SMALL)
    ck.save_checkpoint(tmp_path / "last", model, _meta("seed", SMALL), {"step": 1, "rng": ck.rng_state()})
    ck.load_state(tmp_path / "last")
    assert calls == [True]


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_pickled_object_in_state_is_rejected(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "last").mkdir()
    torch.save({"step": 1, "evil": _Evil()}, tmp_path / "last" / "state.pt")
    with pytest.raises(UserError) as e:
        ck.load_state(tmp_path / "last")
    assert "--restart" in _assert_one_line(e)
    assert not (tmp_path / "pwned.txt").exists()
    with pytest.raises(UserError):
        ck.load_state(tmp_path / "nowhere")


def test_rng_state_round_trip(tmp_path):
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    torch.rand(3)
    state = ck.rng_state()
    torch.save({"rng": state}, tmp_path / "state.pt")
    expect = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    torch.rand(10), np.random.rand(10), random.random()  # move on
    ck.set_rng_state(torch.load(tmp_path / "state.pt", weights_only=True)["rng"])
    got = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(expect[0], got[0])
    assert np.array_equal(expect[1], got[1])
    assert expect[2] == got[2]


# ------------------------------------------------------------------------------ hostile model files
HOSTILE = {  # edits of a copy of the shipped default's JSON, and a piece of the one-line error each must give
    "channels-4000": (lambda m: m["config"].update(channels=4000), "the config makes [4000"),
    "channels-20000": (lambda m: m["config"].update(channels=20000), "channels 20000: outside"),
    "n_fft-32768": (lambda m: m["config"].update(n_fft=32768), "n_fft 32768: outside"),
    "dilations-200000": (lambda m: m["config"].update(dilations=[1] * 200000), "blocks 200000: outside"),
    "sample_rate-1e9": (lambda m: m.update(sample_rate=10 ** 9), "invalid sample_rate 1000000000"),
    "config-sample_rate-1e9": (lambda m: m["config"].update(sample_rate=10 ** 9), "sample_rate 1000000000: outside"),
    "atten_lim_db-text": (lambda m: m.update(atten_lim_db="loud"), "invalid atten_lim_db loud"),
    "atten_lim_db-negative": (lambda m: m.update(atten_lim_db=-6), "invalid atten_lim_db -6"),
    "atten_lim_db-huge": (lambda m: m.update(atten_lim_db=10 ** 400), "invalid atten_lim_db 10000000000"),
    "atten_lim_db-bool": (lambda m: m.update(atten_lim_db=True), "invalid atten_lim_db True"),
}


@pytest.mark.parametrize("case", [*HOSTILE, "nested-100000"])
def test_a_hostile_model_json_fails_fast_and_small(tmp_path, case):
    """Each is refused with one line in well under a second, with a few MB beyond the process's own (a
    subprocess reads its peak RSS): the weights' shapes are read from the safetensors header and compared
    with the model built on the meta device before anything is allocated."""
    import shutil
    import subprocess
    import sys

    from digit_denoise.pretrained import REGISTRY

    src = REGISTRY["default"]
    shutil.copy(src.weights, tmp_path / "m.safetensors")
    meta = json.loads(src.config.read_text())
    if case == "nested-100000":
        text, words = '{"format": "digit-denoise-model", "x": ' + "[" * 100000 + "]" * 100000 + "}", "nested more than"
    else:
        edit, words = HOSTILE[case]
        edit(meta)
        text = json.dumps(meta)
    (tmp_path / "m.json").write_text(text)
    script = (
        "import json, time, torch\n"
        "from digit_denoise.checkpoint import load_model\n"
        "from digit_denoise.errors import UserError\n"
        "def hwm():\n"
        "    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024\n"
        "base, t = hwm(), time.perf_counter()\n"
        f"try:\n    load_model({str(tmp_path / 'm.safetensors')!r}); msg = 'loaded'\n"
        "except UserError as e:\n    msg = str(e)\n"
        "print(json.dumps({'s': time.perf_counter() - t, 'grew_mb': hwm() - base, 'peak_mb': hwm(), 'msg': msg}))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert words in r["msg"] and "\n" not in r["msg"], r
    assert r["s"] < 1.0 and r["grew_mb"] < 100 and r["peak_mb"] < 500, r
