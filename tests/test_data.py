"""Failure, integration and CLI tests of rotvq_audio.data."""
import math, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader, DistributedSampler

from rotvq_audio.data import (NARROWBAND_SOURCES, AudioError, SpeechDataset, audio_info, build_manifest, collate,
                              crop_start, default_speech_dir, load_audio, main, read_manifest, rms_db, speaker_split,
                              speech_split)

torch.set_num_threads(1)


def speech_dir():
    try: return default_speech_dir()
    except FileNotFoundError as e: pytest.skip(f"shared speech corpus not available ({e})")


def sine(sr, seconds=1.0, f=440.0, amp=0.3):
    return (amp * np.sin(2 * np.pi * f * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


# ---------------------------------------------------------------- bad input

def bad_files(tmp):
    (tmp / "empty.wav").touch()
    (tmp / "text.wav").write_text("RIFF? no, just text")
    sf.write(tmp / "good.flac", np.random.default_rng(0).normal(0, 0.1, 48000), 16000)
    (tmp / "cut.flac").write_bytes((tmp / "good.flac").read_bytes()[:20000])
    (tmp / "folder.wav").mkdir()
    sf.write(tmp / "nan.wav", np.array([0.0, np.nan, 0.1]), 16000, subtype="FLOAT")
    sf.write(tmp / "inf.wav", np.array([0.0, np.inf, 0.1]), 16000, subtype="FLOAT")
    sf.write(tmp / "zero.wav", np.zeros(0), 16000)  # a valid header with no frames
    return {"empty.wav": "empty", "text.wav": "text.wav", "cut.flac": "cut.flac", "folder.wav": "directory",
            "missing.wav": "does not exist", "nan.wav": "NaN", "inf.wav": "Inf", "zero.wav": "zero-length"}


def test_bad_files_raise_audio_error_naming_the_file(tmp_path):
    for name, why in bad_files(tmp_path).items():
        with pytest.raises(AudioError) as e: load_audio(tmp_path / name)
        assert name in str(e.value) and why in str(e.value), str(e.value)
        assert isinstance(e.value, ValueError)


def test_audio_info_errors_and_values(tmp_path):
    bad_files(tmp_path)
    for name in ("empty.wav", "text.wav", "folder.wav", "missing.wav"):
        with pytest.raises(AudioError, match=name): audio_info(tmp_path / name)
    sf.write(tmp_path / "st.wav", np.zeros((22050, 2)), 44100)
    assert audio_info(tmp_path / "st.wav") == (0.5, 44100, 2)


# ---------------------------------------------------------------- decoding

def test_stereo_mixdown(tmp_path):
    left, right = sine(16000), np.full(16000, 0.2, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    x = load_audio(tmp_path / "s.wav")
    assert x.shape == (16000,) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.from_numpy((left + right) / 2))


@pytest.mark.parametrize("sr,fmt", [(44100, "WAV"), (48000, "FLAC"), (22050, "OGG"), (8000, "WAV")])
def test_resampling_length_and_pitch(tmp_path, sr, fmt):
    p = tmp_path / f"x.{fmt.lower()}"
    sf.write(p, sine(sr, 2.0, f=500.0), sr, format=fmt)
    x = load_audio(p, 16000)
    assert abs(len(x) - 32000) <= 1
    spec = torch.fft.rfft(x[4000:-4000] * torch.hann_window(len(x) - 8000))
    peak_hz = spec.abs().argmax().item() * 16000 / (len(x) - 8000)
    assert abs(peak_hz - 500) < 5  # a resampler that got the ratio wrong moves the tone


# ---------------------------------------------------------------- manifests and splits

def test_build_manifest_tmp_folder(tmp_path):
    for spk, n in [("a", 2), ("b", 1)]:
        (tmp_path / "c" / spk / "sess").mkdir(parents=True)
        for i in range(n): sf.write(tmp_path / "c" / spk / "sess" / f"{i}.wav", sine(8000, 0.25 * (i + 1)), 8000)
    (tmp_path / "c" / "notes.txt").write_text("ignored")
    rows = build_manifest(tmp_path / "c", tmp_path / "out" / "m.csv", speaker_from="grandparent")
    assert [(r["path"], r["duration"], r["speaker"]) for r in rows] == [
        ("a/sess/0.wav", 0.25, "a"), ("a/sess/1.wav", 0.5, "a"), ("b/sess/0.wav", 0.25, "b")]
    assert not (tmp_path / "out" / "m.csv.tmp").exists()
    back = read_manifest(tmp_path / "out" / "m.csv")  # manifest lives elsewhere: paths still resolve
    assert [Path(r["path"]) for r in back] == [(tmp_path / "c" / r["path"]).resolve() for r in rows]
    assert all(isinstance(r["duration"], float) for r in back)
    rows = build_manifest(tmp_path / "c", tmp_path / "c" / "m.jsonl", speaker_from=lambda rel: rel.stem)
    assert [r["speaker"] for r in read_manifest(tmp_path / "c" / "m.jsonl")] == ["0", "1", "0"]


def test_read_manifest_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"): read_manifest(tmp_path / "nope.csv")
    (tmp_path / "m.csv").write_text("file,duration\nx.wav,1\n")
    with pytest.raises(ValueError, match="'path' column"): read_manifest(tmp_path / "m.csv")


def test_shared_manifest_and_speech_split():
    root = speech_dir()
    rows = read_manifest(root / "manifest.csv")
    assert rows and all("duration" in r and "duration_s" not in r for r in rows)
    assert all(Path(r["path"]).is_file() for r in rows[:50])
    train, dev = speech_split("train", root), speech_split("dev", root)
    assert len(train) + len(dev) == len(rows)
    assert not {r["speaker"] for r in train} & {r["speaker"] for r in dev}
    full = speech_split("train", exclude_sources=NARROWBAND_SOURCES)
    assert full and "asterisk_g722" not in {r["source"] for r in full}
    only = speech_split("train", sources=["vctk"])
    assert only and {r["source"] for r in only} == {"vctk"}
    with pytest.raises(ValueError, match="split"): speech_split("test", root)


def test_build_manifest_on_shared_corpus(tmp_path):
    root = speech_dir()
    rows = build_manifest(root / "dev", tmp_path / "dev.csv", speaker_from="parent")
    ref = {Path(r["path"]).resolve(): r for r in speech_split("dev", root)}
    assert len(rows) == len(ref)
    for r in rows:
        want = ref[(root / "dev" / r["path"]).resolve()]
        assert r["speaker"] == want["speaker"] and r["duration"] == pytest.approx(want["duration"], abs=2e-3)


def test_default_speech_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ROTVQ_SPEECH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="ROTVQ_SPEECH"): default_speech_dir()
    (tmp_path / "manifest.csv").write_text("path,split,source,speaker,duration_s\n")
    assert default_speech_dir() == tmp_path.resolve()


def test_speaker_split_disjoint_and_seeded():
    rows = [dict(path=f"{s}/{i}", speaker=f"s{s}") for s in range(37) for i in range(s % 4 + 1)]
    for frac in (0.05, 0.1, 0.5, 0.9):
        tr, dv = speaker_split(rows, frac, seed=3)
        assert not {r["speaker"] for r in tr} & {r["speaker"] for r in dv}
        assert len(tr) + len(dv) == len(rows) and dv and tr
        assert len({r["speaker"] for r in dv}) == min(max(1, round(frac * 37)), 36)
    assert speaker_split(rows, 0.1, seed=3) == speaker_split(rows, 0.1, seed=3)
    assert speaker_split(rows, 0.1, seed=3)[1] != speaker_split(rows, 0.1, seed=4)[1]
    assert speaker_split(rows[:1], 0.5) == (rows[:1], [])


# ---------------------------------------------------------------- dataset

@pytest.fixture
def clips(tmp_path):
    "Five clips of different lengths, one shorter than a segment, one mostly silent."
    rng = np.random.default_rng(0)
    rows = []
    for i, secs in enumerate([0.5, 1.5, 2.0, 3.0, 2.5]):
        x = (0.2 * rng.standard_normal(int(16000 * secs))).astype(np.float32)
        if i == 4: x[: int(16000 * 2.2)] *= 1e-4  # speech only in the last 0.3 s
        sf.write(tmp_path / f"{i}.flac", x, 16000)
        rows.append(dict(path=str(tmp_path / f"{i}.flac"), duration=secs, speaker=f"s{i % 2}"))
    return rows


def test_dataset_shapes_and_padding(clips):
    ds = SpeechDataset(clips, segment=16000)
    for i in range(len(ds)):
        x = ds[i]
        assert x.shape == (1, 16000) and x.dtype == torch.float32
    assert ds[0][0, 8000:].abs().sum() == 0 and ds[0][0, :8000].abs().sum() > 0
    with pytest.raises(ValueError, match="at least one"): SpeechDataset([])


def test_validation_crops_are_deterministic(clips):
    a = SpeechDataset(clips, segment=8000, train=False)
    b = SpeechDataset(clips, segment=8000, train=False, cache=True)
    b.set_epoch(7)
    for i in range(len(a)): assert torch.equal(a[i], b[i]) and torch.equal(a[i], a[i])
    with_workers = torch.cat(list(DataLoader(a, batch_size=2, num_workers=2, collate_fn=collate)))
    assert torch.equal(with_workers, torch.stack([a[i] for i in range(len(a))]))


def test_train_crops_reproducible_per_epoch(clips):
    ds = SpeechDataset(clips, segment=4000, seed=5)
    ds.set_epoch(0); e0 = [ds[i] for i in range(len(ds))]
    ds.set_epoch(1); e1 = [ds[i] for i in range(len(ds))]
    ds.set_epoch(0); assert all(torch.equal(x, y) for x, y in zip(e0, [ds[i] for i in range(len(ds))]))
    assert not all(torch.equal(x, y) for x, y in zip(e0, e1))
    # with set_epoch, crops do not depend on the number of workers
    ds.set_epoch(1)
    for nw in (0, 2):
        got = torch.cat(list(DataLoader(ds, batch_size=2, num_workers=nw, collate_fn=collate)))
        assert torch.equal(got, torch.stack(e1))


def test_train_crops_without_set_epoch_follow_torch_seed(clips):
    ds = SpeechDataset(clips, segment=4000)
    def run():
        torch.manual_seed(0)
        return torch.cat(list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)))
    first = run()
    assert torch.equal(first, run())
    assert not torch.equal(first, torch.cat(list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate))))


def test_silence_aware_crops(clips):
    quiet = [clips[4]] * 50
    # about 13 % of crop positions touch the loud tail; 20 tries miss it (0.87 ** 20) about 6 % of the time
    aware = SpeechDataset(quiet, segment=4000, min_rms_db=-40.0, tries=20)
    plain = SpeechDataset(quiet, segment=4000, min_rms_db=None)
    for d in (aware, plain): d.set_epoch(0)
    share = lambda d: np.mean([rms_db(d[i]) < -40 for i in range(len(d))])
    assert share(plain) > 0.7 and share(aware) < 0.15
    x = torch.zeros(20000)
    assert crop_start(len(x), 4000, np.random.default_rng(0), x, -50.0) in range(16001)  # all-silent still yields a crop


def test_dataloader_num_workers_and_cache(clips):
    ds = SpeechDataset(clips, segment=16000, cache=True).preload()
    assert len(ds._cache) == len(clips)
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate, shuffle=True))
    assert [b.shape for b in batches] == [(2, 1, 16000), (2, 1, 16000), (1, 1, 16000)]


def test_distributed_sampler(clips):
    ds = SpeechDataset(clips * 2, segment=8000, train=False)
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        sampler.set_epoch(3); ds.set_epoch(3)
        idx = list(sampler); seen += idx
        x = torch.cat(list(DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate)))
        assert x.shape == (len(idx), 1, 8000)
        assert torch.equal(x, torch.stack([ds[i] for i in idx]))
    assert sorted(seen) == list(range(len(ds)))


def test_collate_mismatched_shapes():
    assert collate([torch.zeros(1, 5)] * 3).shape == (3, 1, 5)
    with pytest.raises(ValueError, match="one shape"): collate([torch.zeros(1, 5), torch.zeros(1, 6)])


def test_on_shared_dev_clips():
    rows = speech_split("dev", speech_dir())[:4]
    ds = SpeechDataset(rows, segment=16000, train=False)
    x = collate([ds[i] for i in range(len(ds))])
    assert x.shape == (4, 1, 16000) and torch.isfinite(x).all() and x.abs().max() <= 1


# ---------------------------------------------------------------- command line

def test_main_in_process(tmp_path, capsys):
    (tmp_path / "spk").mkdir()
    sf.write(tmp_path / "spk" / "a.wav", sine(16000, 1.8), 16000)
    assert main(["manifest", str(tmp_path), str(tmp_path / "m.csv")]) == 0
    assert "1 files, 0.00 hours, 1 speakers" in capsys.readouterr().out
    with pytest.raises(SystemExit): main(["manifest", str(tmp_path)])


def test_module_cli_on_shared_corpus(tmp_path):
    root = speech_dir()
    r = subprocess.run([sys.executable, "-m", "rotvq_audio.data", "manifest", str(root / "dev"), str(tmp_path / "m.csv")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    n = len(speech_split("dev", root))
    assert f"{n} files" in r.stdout and "speakers" in r.stdout
    assert len(read_manifest(tmp_path / "m.csv")) == n
