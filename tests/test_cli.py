"""The `rotvq` command: exit statuses, messages, folder runs that skip bad files, atomic outputs."""
import math, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import run_rotvq as run  # `rotvq ARGS` in-process: (status, stdout, stderr)
from rotvq_audio.codec import CodecConfig, CodecModel
from rotvq_audio.data import load_audio
from rotvq_audio.api import load_tokens

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    "A tiny model, a speech-like wav, a folder with a good and a bad file."
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    CodecModel(CodecConfig.tiny()).save_pretrained(d / "tiny")
    CodecModel(CodecConfig.tiny(causal=True)).save_pretrained(d / "other")
    x = (np.random.default_rng(0).standard_normal(20000) * 0.1).astype(np.float32)
    sf.write(d / "clip.wav", x, 16000)
    sf.write(d / "clip44.flac", np.stack([x, x], 1), 44100)
    (d / "in" / "sub").mkdir(parents=True)
    sf.write(d / "in" / "a.wav", x[:8000], 16000)
    sf.write(d / "in" / "sub" / "b.flac", x[:5000], 16000)
    (d / "in" / "notes.wav").write_text("this is text, not audio\n")
    return d




def shell(*argv, cwd=None):
    "`rotvq ARGS` as a separate process, as a user runs it."
    r = subprocess.run([sys.executable, "-m", "rotvq_audio.cli", *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=300)
    return r.returncode, r.stdout, r.stderr


def test_encode_info_decode_in_a_shell(work):
    m = ["--model", work / "tiny"]
    code, out, err = shell("encode", work / "clip44.flac", work / "c.npz", "--kbps", 3, *m)
    assert code == 0, err
    n = len(load_audio(work / "clip44.flac"))  # 20000 samples at 44.1 kHz, resampled to 16 kHz
    assert f"6 x {math.ceil(n / 320)} codes" in out and load_tokens(work / "c.npz").lengths == [n]
    code, out, err = shell("info", work / "c.npz")
    assert code == 0 and f"(1, 6, {math.ceil(n / 320)})" in out and "3 kbps" in out and "tiny" in out, out + err
    code, out, err = shell("decode", work / "c.npz", work / "c.wav", *m)
    assert code == 0, err
    info = sf.info(str(work / "c.wav"))
    assert (info.samplerate, info.frames, info.subtype) == (16000, n, "PCM_16")


def test_usage_errors_exit_2(work):
    code, out, err = shell("encode", work / "clip.wav")
    assert code == 2 and "usage: rotvq encode" in err and "Traceback" not in err
    assert run("frobnicate")[0] == 2 and run()[0] == 2
    assert run("encode", work / "clip.wav", work / "x.npz", "--kbps", "fast")[0] == 2


def test_runtime_errors_exit_2_with_one_line(work, tmp_path):
    m = ["--model", work / "tiny"]
    trunc = tmp_path / "trunc.flac"
    sf.write(trunc, np.random.default_rng(1).standard_normal(48000).astype(np.float32) * 0.1, 16000)
    trunc.write_bytes(trunc.read_bytes()[:3000])
    bad_weights = tmp_path / "bad"; bad_weights.mkdir()
    (bad_weights / "config.json").write_text((work / "tiny" / "config.json").read_text())
    (bad_weights / "model.safetensors").write_bytes(b"\0" * 100)
    cases = [(("encode", work / "in" / "notes.wav", tmp_path / "o.npz", *m), "cannot decode"),
             (("encode", trunc, tmp_path / "o.npz", *m), "trunc.flac"),
             (("encode", tmp_path / "missing.wav", tmp_path / "o.npz", *m), "does not exist"),
             (("encode", work / "clip.wav", tmp_path / "o.npz", "--kbps", 2.2, *m), "expected a bitrate in kbps"),
             (("encode", work / "clip.wav", tmp_path / "o.npz", "--model", tmp_path / "nope"), "no model folder"),
             (("encode", work / "clip.wav", tmp_path / "o.npz", "--model", bad_weights), "corrupted or not a safetensors file"),
             (("decode", work / "clip.wav", tmp_path / "o.wav", *m), "not a rotvq token file"),
             (("info", tmp_path / "none.npz"), "no token file")]
    for argv, msg in cases:
        code, out, err = run(*argv)
        assert code == 2 and err.startswith("rotvq: error: ") and msg in err and err.count("\n") == 1, (argv, err)
        assert not (tmp_path / "o.npz").exists() and not (tmp_path / "o.wav").exists()


def test_text_file_named_wav_in_a_shell(work, tmp_path):
    code, out, err = shell("encode", work / "in" / "notes.wav", tmp_path / "o.npz", "--model", work / "tiny")
    assert code == 2 and "Traceback" not in err and "notes.wav" in err, err


def test_decode_with_another_model_fails(work, tmp_path):
    assert run("encode", work / "clip.wav", tmp_path / "c.npz", "--model", work / "tiny")[0] == 0
    code, _, err = run("decode", tmp_path / "c.npz", tmp_path / "c.wav", "--model", work / "other")
    assert code == 2 and "were made by model 'tiny'" in err and not (tmp_path / "c.wav").exists()


def test_folder_skips_bad_files_and_reports(work, tmp_path):
    code, out, err = run("encode", work / "in", tmp_path / "out", "--model", work / "tiny")
    assert code == 2 and "2 file(s) written" in out and "1 skipped" in out
    assert "rotvq: skipped" in err and "notes.wav" in err
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.npz")) == ["a.npz", "sub/b.npz"]
    code, out, err = run("decode", tmp_path / "out", tmp_path / "wav", "-q", "--model", work / "tiny")
    assert code == 0 and out == "" and sf.info(str(tmp_path / "wav" / "sub" / "b.wav")).frames == 5000


def test_folder_into_a_file_fails(work, tmp_path):
    (tmp_path / "f").write_text("x")
    code, _, err = run("encode", work / "in", tmp_path / "f", "--model", work / "tiny")
    assert code == 2 and "is a file" in err


def test_outputs_are_atomic(work, tmp_path, monkeypatch):
    assert run("encode", work / "clip.wav", tmp_path / "c.npz", "--model", work / "tiny")[0] == 0
    assert run("decode", tmp_path / "c.npz", tmp_path / "c.wav", "--model", work / "tiny")[0] == 0
    before = (tmp_path / "c.wav").read_bytes()
    def half_write(path, *a, **kw):
        Path(path).write_bytes(b"RIFF"); raise OSError("No space left on device")
    monkeypatch.setattr(sf, "write", half_write)
    code, _, err = run("decode", tmp_path / "c.npz", tmp_path / "c.wav", "--model", work / "tiny")
    assert code == 2 and "No space left" in err
    assert (tmp_path / "c.wav").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "c.wav"] # no temporary file left


def test_demo(work, tmp_path):
    code, out, err = run("demo", "--model", work / "tiny", "--out", tmp_path / "d", "--kbps", 3)
    assert code == 0, err
    for s in ("8.42 s of speech", "PESQ-WB", "STOI", "DNSMOS OVRL", "(1, 3, 421)", "(1, 6, 421)", "(1, 12, 421)", "codebook usage at 3 kbps",
              "demo.npz", "demo_3kbps.wav", "LibriSpeech 4340-15220-0000"):
        assert s in out, (s, out)
    assert load_tokens(tmp_path / "d" / "demo.npz").n_q == 6
    assert sf.info(str(tmp_path / "d" / "demo_3kbps.wav")).frames == 134720


def test_demo_on_a_given_clip_and_bad_kbps(work, tmp_path):
    code, out, _ = run("demo", work / "clip.wav", "--model", work / "tiny", "--out", tmp_path)
    assert code == 0 and "1.25 s of speech" in out and (tmp_path / "clip_6kbps.wav").exists()
    code, _, err = run("demo", "--model", work / "tiny", "--out", tmp_path, "--kbps", 7.3)
    assert code == 2 and "expected a bitrate" in err


def test_an_output_never_overwrites_its_input_or_lies_about_its_format(work, tmp_path):
    m = ["--model", work / "tiny"]
    audio = tmp_path / "same.flac"; shutil.copy(work / "clip44.flac", audio); before = audio.read_bytes()
    code, _, err = run("encode", audio, audio, *m)
    assert code == 2 and "ending in .npz" in err and audio.read_bytes() == before
    assert run("encode", audio, tmp_path / "t.npz", *m)[0] == 0
    tokens = (tmp_path / "t.npz").read_bytes()
    code, _, err = run("decode", tmp_path / "t.npz", tmp_path / "t.npz", *m)
    assert code == 2 and (tmp_path / "t.npz").read_bytes() == tokens
    code, _, err = run("decode", tmp_path / "t.npz", tmp_path / "x.flac", *m)
    assert code == 2 and "got" in err and "x.flac" in err and not (tmp_path / "x.flac").exists()
