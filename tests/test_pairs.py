"""data.py: make_pair determinism, epochs, resampling, given noisy files, babble pool, mixing to disk."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from digit_denoise.audio import load_audio
from digit_denoise.data.manifest import build_manifest, load_manifest, write_manifest
from digit_denoise.data.noise import NoiseConfig, clip_rng, measured_snr
from digit_denoise.data.pairs import AudioCache, BabblePool, make_pair, mix_to_disk
from digit_denoise.errors import UserError

SR = 16000
SPEAKERS = ("01", "02", "03", "04", "05", "06")


def wav(path: Path, seed: int = 0, sr: int = SR, dur: float = 0.3, noise: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * dur)) / sr
    f0 = 100 + 13 * (seed % 20)
    x = 0.2 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 5))
    if noise:
        x = x + 0.05 * np.random.default_rng(seed).standard_normal(x.size)
    sf.write(path, x.astype(np.float32), sr, subtype="FLOAT")
    return path


def make_corpus(root: Path, noisy: bool = False, speakers=SPEAKERS, digits=(0, 1), takes=3) -> Path:
    for s in speakers:
        for d in digits:
            for t in range(takes):
                wav(root / s / f"{d}_{s}_{t}.wav", seed=int(s) * 3 + d)
                if noisy:
                    wav(root / s / f"{d}_{s}_{t}_noisy.wav", seed=int(s) * 3 + d, noise=True)
    (root / "audioMNIST_meta.txt").write_text("{}")
    return root


def manifest(tmp: Path, corpus: Path, **kw) -> Path:
    out = tmp / "m.csv"
    rows, _ = build_manifest(corpus, out, **kw)
    write_manifest(rows, out, overwrite=True)
    return out


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    corpus = make_corpus(tmp / "corpus")
    m = manifest(tmp, corpus, test_speakers="2", seed=5,
                 noise=NoiseConfig.parse("white,pink,brown,babble", "-8,0,5"))
    return load_manifest(m)


def test_make_pair_deterministic_across_calls_and_caches(rows):
    pool = BabblePool(rows)
    for r in rows[:12]:
        c1, n1, sr1 = make_pair(r, pool=pool)
        c2, n2, sr2 = make_pair(r, pool=pool, cache=AudioCache())
        assert sr1 == sr2 == SR
        assert c1.dtype == n1.dtype == np.float32 and c1.ndim == n1.ndim == 1 and c1.shape == n1.shape
        assert np.array_equal(c1, c2) and np.array_equal(n1, n2)
        assert abs(measured_snr(c1, n1) - float(r.snr)) < 0.1, (r.noise, r.snr)
    assert {r.noise for r in rows} == {"white", "pink", "brown", "babble"}


def test_returned_arrays_do_not_alias_the_cache(rows):
    cache = AudioCache()
    r = next(r for r in rows if r.noise == "white")
    clean, noisy, _ = make_pair(r, cache=cache)
    ref_c, ref_n = clean.copy(), noisy.copy()
    clean *= 0  # a caller normalising in place must not corrupt later pairs
    noisy *= 0
    c2, n2, _ = make_pair(r, cache=cache)
    assert np.array_equal(c2, ref_c) and np.array_equal(n2, ref_n)


def test_epochs_give_fresh_noise(rows):
    r = next(r for r in rows if r.noise == "white")
    fixed = make_pair(r)[1]
    e1 = make_pair(r, epoch=1)[1]
    e2 = make_pair(r, epoch=2)[1]
    assert not np.array_equal(fixed, e1) and not np.array_equal(e1, e2) and not np.array_equal(fixed, e2)
    assert np.array_equal(e1, make_pair(r, epoch=1, cache=AudioCache())[1])
    # an overriding config and seed
    cfg = NoiseConfig.parse("pink", "0")
    a = make_pair(r, noise=cfg, seed=1)
    b = make_pair(r, noise=cfg, seed=2)
    assert not np.array_equal(a[1], b[1]) and np.array_equal(a[1], make_pair(r, noise=cfg, seed=1)[1])
    assert abs(measured_snr(a[0], a[1])) < 0.1


def test_transform_changes_the_clean_speech_before_mixing(rows):
    r = next(r for r in rows if r.noise == "white")
    plain = make_pair(r, epoch=1)
    louder = make_pair(r, epoch=1, transform=lambda x, sr, rng: x * (2.0 + rng.random()))
    factor = np.std(louder[0]) / np.std(plain[0])
    assert 2.0 <= factor <= 3.0
    assert abs(measured_snr(louder[0], louder[1]) - float(r.snr)) < 0.1  # mixed at the row's SNR, after
    again = make_pair(r, epoch=1, transform=lambda x, sr, rng: x * (2.0 + rng.random()))
    other = make_pair(r, epoch=2, transform=lambda x, sr, rng: x * (2.0 + rng.random()))
    assert np.array_equal(again[0], louder[0])  # a pure function of (seed, id, epoch)
    assert not np.isclose(np.std(other[0]) / np.std(make_pair(r, epoch=2)[0]), factor)


def test_resampling_lengths(rows):
    r = next(r for r in rows if r.noise != "babble")
    for sr in (8000, 11025, 22050):
        clean, noisy, out_sr = make_pair(r, sr=sr)
        assert out_sr == sr and clean.shape == noisy.shape
        assert abs(clean.size - round(0.3 * sr)) <= 1
    b = next(r for r in rows if r.noise == "babble")
    clean, noisy, _ = make_pair(b, sr=8000, pool=BabblePool(rows))
    assert clean.size == noisy.size == 2400


def test_babble_talkers_from_other_speakers_of_same_split(rows):
    pool = BabblePool(rows)
    by_id = {r.id: r for r in rows}
    for split in ("train", "val", "test"):
        sub = [r for r in rows if r.split == split]
        assert sub
        for r in sub[:8]:
            for i in range(25):
                for t in pool.talkers(r, 5, clip_rng(0, r.id, i)):
                    assert t.speaker != r.speaker and t.split == split and t.id in by_id
    # the talkers of a test clip are test speakers only: every test speaker but itself shows up
    r = next(r for r in rows if r.split == "test")
    seen = {t.speaker for i in range(50) for t in pool.talkers(r, 5, clip_rng(0, "x", i))}
    assert seen == {x.speaker for x in rows if x.split == "test"} - {r.speaker}


def test_babble_single_speaker_split_is_user_error(rows):
    test_spk = sorted({r.speaker for r in rows if r.split == "test"})
    only = [r for r in rows if r.split != "test" or r.speaker == test_spk[0]]
    pool = BabblePool(only)
    r = next(r for r in only if r.split == "test")
    with pytest.raises(UserError, match="no other speaker"):
        pool.talkers(r, 3, clip_rng(0, "x"))
    with pytest.raises(UserError):
        make_pair(replace(r, noise="babble", snr="0"), pool=pool)


def test_babble_uses_pool_audio(rows):
    """The babble mixture is built from the chosen talkers' audio (changing a talker changes it)."""
    r = next(r for r in rows if r.noise == "babble")
    pool = BabblePool(rows)
    n1 = make_pair(r, pool=pool, cache=AudioCache())[1]
    others = [x for x in rows if x.split == r.split and x.speaker != r.speaker]
    pool2 = BabblePool([r] + [replace(x, clean_path=others[0].clean_path) for x in others])
    n2 = make_pair(r, pool=pool2, cache=AudioCache())[1]
    assert not np.array_equal(n1, n2)


def test_given_noisy_files_used_as_is(tmp_path):
    corpus = make_corpus(tmp_path / "pairs", noisy=True, speakers=("01", "02", "03"))
    m = manifest(tmp_path, corpus, test_speakers="1")
    rows = load_manifest(m)
    assert {r.noise for r in rows} == {"given"} and all(r.noisy_path and r.snr == "" for r in rows)
    r = rows[0]
    clean, noisy, sr = make_pair(r)
    ref, _ = load_audio(r.noisy_path)
    assert sr == SR and np.array_equal(noisy, ref[0]) and not np.array_equal(clean, noisy)
    assert np.array_equal(make_pair(r, epoch=3)[1], noisy)  # given noise has no epochs
    c8, n8, _ = make_pair(r, sr=8000)
    assert c8.size == n8.size == 2400
    # a given noisy file of another length is cropped/padded to the clean length
    wav(Path(r.noisy_path), seed=1, dur=0.2, noise=True)
    c, n, _ = make_pair(r, cache=AudioCache())
    assert c.size == n.size and not n[round(0.2 * SR):].any()


def test_noise_folder_rows(tmp_path):
    corpus = make_corpus(tmp_path / "c", speakers=("01", "02", "03"))
    nf = tmp_path / "noises"
    wav(nf / "short.wav", seed=4, dur=0.05, noise=True, sr=8000)
    rows = load_manifest(manifest(tmp_path, corpus, test_speakers="1", noise=NoiseConfig.parse(str(nf), "0")))
    clean, noisy, _ = make_pair(rows[0], cache=AudioCache())
    assert abs(measured_snr(clean, noisy)) < 0.1
    noise = noisy - clean
    p = round(0.05 * SR)  # looped: periodic with the (resampled) noise file's length
    assert np.allclose(noise[p:], noise[:-p], atol=1e-5)


def test_mix_to_disk(rows, tmp_path):
    sub = rows[:10]
    out = tmp_path / "mixed"
    mpath = mix_to_disk(sub, out, all_rows=rows)
    assert mpath == out / "manifest.csv"
    mixed = load_manifest(mpath)
    assert [r.id for r in mixed] == [r.id for r in sub]
    pool = BabblePool(rows)
    for old, new in zip(sub, mixed):
        assert Path(new.noisy_path) == (out / f"{old.id}_noisy.wav").resolve()
        assert Path(new.clean_path) == Path(old.clean_path)
        assert (new.noise, new.snr, new.split, new.noise_seed) == (old.noise, old.snr, old.split, old.noise_seed)
        disk, sr = load_audio(new.noisy_path)
        assert sr == SR and disk.dtype == np.float32
        _, ref, _ = make_pair(old, pool=pool)
        assert np.array_equal(disk[0], ref)  # float32 exact
        assert np.array_equal(make_pair(new)[1], ref)  # the new manifest gives the same pair
    assert "manifest.csv" in (p.name for p in out.iterdir())
    before = mpath.read_bytes()
    with pytest.raises(UserError, match="overwrite"):
        mix_to_disk(sub, out, all_rows=rows)
    assert mpath.read_bytes() == before
    assert mix_to_disk(sub, out, all_rows=rows, overwrite=True) == mpath
    assert mpath.read_bytes() == before
    # resampled mixing
    m8 = load_manifest(mix_to_disk(sub[:2], tmp_path / "m8", sr=8000, all_rows=rows))
    assert sf.info(m8[0].noisy_path).samplerate == 8000 and sf.info(m8[0].noisy_path).frames == 2400


def test_make_pair_missing_file_is_user_error(rows):
    r = replace(rows[0], clean_path=str(Path(rows[0].clean_path).with_name("gone.wav")))
    with pytest.raises(UserError, match="no such file"):
        make_pair(r, cache=AudioCache())
