"""The public `Codec` API: loading, encode/decode of every input form, exactness of batching, chunking and
streaming, token files, and the errors bad input gets."""
import json, math, os
from pathlib import Path

import numpy as np
import pytest
import torch

from rotvq_audio import Codec
from rotvq_audio import api as tk
from rotvq_audio.codec import CodecConfig, CodecModel
from rotvq_audio.data import load_audio
from rotvq_audio.metrics import pesq_wb, stoi
from rotvq_audio.api import PAD_CODE, Tokens, bundled_model_dir, load_tokens, save_tokens

torch.set_num_threads(2)
SPEECH = Path(os.environ.get("ROTVQ_SPEECH", Path(__file__).resolve().parents[1].parent / "shared" / "speech"))
HAS_BUNDLED = (bundled_model_dir() / "config.json").is_file()
# PESQ-WB floor of the bundled model on the dev clip below at 6 kbps: measured value minus 0.1. The bundled model
# (the long run at 5.85 CPU-hours, step 17250) measures 2.52 (STOI 0.922); at 5.30 CPU-hours it measured 2.46, the
# 2-CPU-hour pilot 2.08, the
# first interim model 1.26. Raise this whenever better weights are bundled.
BUNDLED_PESQ_FLOOR_6KBPS = 2.42


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    "Folders of an untrained tiny model and of a causal one (exactness does not depend on training)."
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    CodecModel(CodecConfig.tiny()).save_pretrained(root / "tiny")
    CodecModel(CodecConfig.tiny(causal=True)).save_pretrained(root / "causal")
    return root


@pytest.fixture(scope="module")
def codec(models): return Codec.from_pretrained(models / "tiny")


@pytest.fixture(scope="module")
def causal(models): return Codec.from_pretrained(models / "causal")


def speech(seconds=None):
    "A dev clip of real speech (skips when the shared set is absent)."
    files = sorted((SPEECH / "dev").rglob("*.flac"))
    if not files: pytest.skip(f"no shared speech under {SPEECH}")
    wav = load_audio(next(f for f in files if 3 < load_audio(f).shape[0] / 16000 < 8))
    return wav if seconds is None else wav[:int(seconds * 16000)]


# --- loading ------------------------------------------------------------------------------------------

def test_from_pretrained_folder_and_properties(codec, models):
    assert (codec.sample_rate, codec.frame_rate, codec.codebook_size, codec.n_q) == (16000, 50, 1024, 12)
    assert [codec.n_q_for(k) for k in (1.5, 3, 6)] == [3, 6, 12]
    assert codec.bitrate(6) == 3000 and codec.bitrate() == 6000
    assert codec.name == "tiny" and len(codec.weights_hash) == 64
    with pytest.raises(ValueError, match="expected a bitrate in kbps"): codec.encode(np.zeros(320), 16000, kbps=2.2)
    with pytest.raises(ValueError, match="not both"): codec.encode(np.zeros(320), 16000, kbps=3, n_q=6)


def test_bundled_model_or_clear_error(monkeypatch, tmp_path, models):
    if HAS_BUNDLED:
        assert Codec.from_pretrained().name == "rotvq-audio/default"
    monkeypatch.setattr(tk, "bundled_model_dir", lambda: tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"no bundled model in .*empty; pass a folder"): Codec.from_pretrained()
    monkeypatch.setattr(tk, "bundled_model_dir", lambda: models / "tiny")
    assert Codec.from_pretrained().name == "rotvq-audio/default"


def test_missing_model_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model folder at"): Codec.from_pretrained(tmp_path / "nothing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="no model folder at"): Codec.from_pretrained(tmp_path / "file")


def test_hub_id_without_huggingface_hub(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)  # `import huggingface_hub` now fails
    with pytest.raises(FileNotFoundError, match="huggingface_hub is not installed"): Codec.from_pretrained("someone/some-codec")


def test_corrupted_weights(tmp_path, models):
    d = tmp_path / "m"; d.mkdir()
    (d / "config.json").write_text((models / "tiny" / "config.json").read_text())
    (d / "model.safetensors").write_bytes((models / "tiny" / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(ValueError, match="corrupted or not a safetensors file"): Codec.from_pretrained(d)


# --- round trip, determinism, input forms -------------------------------------------------------------

def test_round_trip_on_dev_speech(codec):
    wav = speech()
    c = Codec.from_pretrained() if HAS_BUNDLED else codec
    for kbps in (1.5, 6):
        codes = c.encode(wav, 16000, kbps=kbps)
        assert codes.shape == (1, c.n_q_for(kbps), math.ceil(len(wav) / 320)) and codes.dtype == torch.int64
        rec = c.decode(codes, length=len(wav))
        assert rec.shape == (1, 1, len(wav)) and torch.isfinite(rec).all()
    score = pesq_wb(wav, rec[0, 0])
    # an untrained tiny model sits at PESQ's floor (~1.0); the bundled model must clear the measured floor
    assert score >= (BUNDLED_PESQ_FLOOR_6KBPS if HAS_BUNDLED else 1.0), score
    if HAS_BUNDLED: assert stoi(wav, rec[0, 0]) >= 0.89  # measured 0.922


def test_encode_deterministic(codec, models):
    x = speech(2.0)
    a = codec.encode(x, 16000)
    assert torch.equal(a, codec.encode(x, 16000))
    assert torch.equal(a, Codec.from_pretrained(models / "tiny").encode(x, 16000))


def test_input_forms_agree(codec):
    x = speech(1.0).numpy()
    ref = codec.encode(x, 16000)
    for form in (x[None], x[:, None], x[None, None], torch.from_numpy(x), (x * 32767).astype(np.int16),
                 np.stack([x, x]), np.stack([x, x], 1)):
        got = codec.encode(form, 16000)
        agree = (got == ref).float().mean().item()
        assert got.shape == ref.shape and agree > (0.9 if form.dtype == np.int16 else 0.999), (form.shape, agree)


def test_resampling(codec):
    x = np.random.default_rng(0).standard_normal(44100).astype(np.float32) * 0.1
    assert codec.encode(x, 44100).shape == (1, 12, 50)
    assert codec.encode(x[:8000], 8000).shape == (1, 12, 50)


def test_batch_equals_single(codec):
    rng = np.random.default_rng(1)
    clips = [speech(2.0).numpy(), rng.standard_normal(7777).astype(np.float32) * 0.1,
             rng.standard_normal((2, 3000)).astype(np.float32) * 0.1, rng.standard_normal(100).astype(np.float32)]
    codes = codec.encode(clips, 16000, kbps=3)
    frames = [50 * 2, 25, 10, 1]
    assert codes.shape == (4, 6, 100)
    for i, (c, n) in enumerate(zip(clips, frames)):
        assert torch.equal(codes[i, :, :n], codec.encode(c, 16000, kbps=3)[0]), i
        assert (codes[i, :, n:] == PAD_CODE).all()
    # a padded (B, C, T) batch with lengths gives the same codes
    padded = np.zeros((2, 1, 32000), np.float32); padded[0, 0] = clips[0]; padded[1, 0, :7777] = clips[1]
    assert torch.equal(codec.encode(padded, 16000, kbps=3, lengths=[32000, 7777]), codes[:2])
    # and decoding the padded batch gives each clip's own audio, zero after its end
    lens = [len(clips[0]), 7777, 3000, 100]
    audio = codec.decode(codes, length=lens)
    for i, n in enumerate(lens):
        alone = codec.decode(codes[i:i + 1, :, :frames[i]], length=n)[0]
        torch.testing.assert_close(audio[i, :, :n], alone, atol=1e-5, rtol=0)
        assert (audio[i, :, n:] == 0).all()


def test_shorter_than_one_frame_is_padded(codec):
    "Documented: audio shorter than 20 ms is zero-padded to one frame; decode(length=T) gives T samples back."
    codes = codec.encode(np.full(37, 0.1, np.float32), 16000)
    assert codes.shape == (1, 12, 1)
    assert codec.decode(codes, length=37).shape == (1, 1, 37)


# --- long audio and streaming -------------------------------------------------------------------------

def test_chunked_equals_whole(models):
    x = torch.from_numpy(np.random.default_rng(2).standard_normal(20 * 16000).astype(np.float32)) * 0.1
    whole, chunked = Codec.from_pretrained(models / "tiny"), Codec.from_pretrained(models / "tiny", chunk_seconds=1.0)
    assert whole.chunk_frames >= 1000 and chunked.chunk_frames == 50
    a, b = whole.encode(x, 16000), chunked.encode(x, 16000)
    assert (a == b).float().mean().item() >= 0.999 # exact up to float ties at 19 seams
    torch.testing.assert_close(chunked.decode(a), whole.decode(a), atol=1e-4, rtol=0)


def _stream(codec, x, sizes, **kw):
    "Feed `x` through a stream in packets of cycling `sizes`; return all codes and audio."
    s, codes, audio, i, k = codec.stream(**kw), [], [], 0, 0
    while i < x.shape[-1]:
        n = sizes[k % len(sizes)]; k += 1
        codes.append(s.encode_chunk(x[..., i:i + n])); i += n
        audio.append(s.decode_chunk(codes[-1]))
    codes.append(s.flush_encode()); audio += [s.decode_chunk(codes[-1]), s.flush_decode()]
    return torch.cat(codes, -1), torch.cat(audio, -1), s


def test_streaming_causal_exact(causal):
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((1, 1, 3 * 16000 + 123)).astype(np.float32)) * 0.1
    codes, audio, s = _stream(causal, x, [160, 1, 977, 320, 4000], kbps=3)
    assert s.latency_frames == 0
    assert torch.equal(codes, causal.encode(x, 16000, kbps=3))
    torch.testing.assert_close(audio, causal.decode(codes), atol=1e-5, rtol=0)


def test_streaming_causal_emits_each_frame_at_once(causal):
    s = causal.stream()
    assert s.encode_chunk(torch.zeros(319)).shape[-1] == 0 and s.encode_chunk(torch.zeros(1)).shape[-1] == 1
    assert s.decode_chunk(torch.zeros(1, 12, 1, dtype=torch.long)).shape == (1, 1, 320)


def test_streaming_noncausal_exact_with_lookahead(codec):
    x = torch.from_numpy(np.random.default_rng(4).standard_normal((1, 1, 16000 + 5)).astype(np.float32)) * 0.1
    codes, audio, s = _stream(codec, x, [800, 1313])
    assert s.latency_frames > 0
    assert torch.equal(codes, codec.encode(x, 16000))
    torch.testing.assert_close(audio, codec.decode(codes), atol=1e-5, rtol=0)


# --- token files -------------------------------------------------------------------------------------

def test_token_file_round_trip(codec, tmp_path):
    clips = [speech(1.0), torch.zeros(5000) + 0.01]
    codes = codec.encode(clips, 16000, kbps=1.5)
    p = save_tokens(tmp_path / "t.npz", codec.tokens(codes, [16000, 5000]))
    t = load_tokens(p)
    assert torch.equal(t.codes, codes) and t.lengths == [16000, 5000] and t.n_q == 3
    assert (t.model, t.model_hash, t.sample_rate, t.frame_rate, t.codebook_size) == ("tiny", codec.weights_hash, 16000, 50, 1024)
    assert t.tokenizer_hash == codec.tokenizer_hash and len(t.tokenizer_hash) == 64
    with np.load(p) as z: assert z["codes"].dtype == np.int16 and json.loads(str(z["meta"]))["format_version"] == 2
    torch.testing.assert_close(codec.decode_tokens(p), codec.decode(codes, [16000, 5000]))
    assert [f.name for f in tmp_path.iterdir()] == ["t.npz"] # no temporary file left


def test_token_file_from_other_model_is_refused(codec, causal, tmp_path):
    p = save_tokens(tmp_path / "t.npz", codec.tokens(codec.encode(np.zeros(3200, np.float32), 16000)))
    with pytest.raises(ValueError, match=r"were made by model 'tiny' \(tokenizer [0-9a-f]{12}\), but this codec is 'causal'"):
        causal.decode_tokens(p)


def test_save_tokens_is_atomic(codec, tmp_path, monkeypatch):
    p = save_tokens(tmp_path / "t.npz", codec.tokens(codec.encode(np.zeros(3200, np.float32), 16000)))
    before = p.read_bytes()
    def boom(f, **kw): f.write(b"half"); raise OSError("disk full")
    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"): save_tokens(p, codec.tokens(codec.encode(np.ones(6400, np.float32), 16000)))
    assert p.read_bytes() == before and [f.name for f in tmp_path.iterdir()] == ["t.npz"]


def test_bad_token_files(codec, tmp_path):
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="is not a rotvq token file"): load_tokens(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError, match="no token file"): load_tokens(tmp_path / "missing.npz")
    good = codec.tokens(codec.encode(np.zeros(3200, np.float32), 16000))
    meta = dict(format_version=1, model="m", model_hash="0" * 64, sample_rate=16000, frame_rate=50.0, codebook_size=1024, n_q=12, lengths=[3200])
    for name, codes, change, msg in [("range", good.codes.numpy() + 2000, {}, r"expected codes in \[0, 1024\)"),
                                     ("float", good.codes.numpy().astype(np.float32), {}, "expected integer codes"),
                                     ("shape", good.codes.numpy()[0], {}, "expected integer codes shaped"),
                                     ("version", good.codes.numpy(), {"format_version": 9}, r"expected format_version in \(1, 2\) .*got 9"),
                                     ("meta", good.codes.numpy(), {"n_q": None}, r"lacks \[.n_q.\]")]:
        m = {k: v for k, v in (meta | change).items() if v is not None}
        np.savez(tmp_path / f"{name}.npz", codes=codes, meta=np.array(json.dumps(m)))
        with pytest.raises(ValueError, match=msg): load_tokens(tmp_path / f"{name}.npz")


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("audio, msg", [
    (np.array([0.1, np.nan, 0.2] * 200, np.float32), "expected finite samples, got 200 NaN/Inf in audio"),
    (np.array([0.1, np.inf] * 200, np.float32), "got 200 NaN/Inf"),
    (np.zeros(0, np.float32), "expected at least one sample, got empty audio"),
    (np.zeros((5, 16000), np.float32), "expected mono or stereo audio, got 5 channels in audio"),
    (np.zeros((16000, 5), np.float32), "expected mono or stereo audio, got 5 channels in audio"),
    (np.zeros((2, 5, 16000), np.float32), "expected mono or stereo audio, got 5 channels"),
    (np.zeros((1, 1, 1, 100), np.float32), "expected one clip shaped"),
    (np.zeros(100, np.int64), "expected int16, int32 or float samples"),
    ([np.zeros(100, np.float32), np.zeros(0, np.float32)], "empty audio in item 1"),
])
def test_bad_audio(codec, audio, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(")): codec.encode(audio, 16000)


def test_bad_lengths_and_rate(codec):
    with pytest.raises(ValueError, match="lengths"): codec.encode(np.zeros((2, 1, 100), np.float32), 16000, lengths=[100, 101])
    with pytest.raises(ValueError, match="sample_rate"): codec.encode(np.zeros(100, np.float32), 0)


@pytest.mark.parametrize("codes, msg", [
    (torch.zeros(1, 12, 5), "expected integer codes, got torch.float32"),
    (torch.zeros(12, 5, dtype=torch.long), r"expected codes shaped \(B, n_q, N\)"),
    (torch.zeros(1, 13, 5, dtype=torch.long), r"1 ≤ n_q ≤ 12"),
    (torch.full((1, 12, 5), 1024), r"expected codes in \[0, 1024\)"),
    (torch.tensor([[[0, -1, 0]]]), "only as padding after an item's last frame"),
    (torch.full((1, 3, 4), -1), "all padding"),
    ("codes", "expected codes as a tensor"),
])
def test_bad_codes(codec, codes, msg):
    with pytest.raises((ValueError, TypeError), match=msg): codec.decode(codes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda(models):
    c = Codec.from_pretrained(models / "tiny", device="cuda")
    x = np.random.default_rng(5).standard_normal(16000).astype(np.float32) * 0.1
    codes = c.encode(x, 16000)
    assert codes.device.type == "cuda" and c.decode(codes).device.type == "cuda"
    assert (codes.cpu() == Codec.from_pretrained(models / "tiny").encode(x, 16000)).float().mean() > 0.99
