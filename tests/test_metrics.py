"Tests of rotvq_audio.metrics: agreement with the reference packages, failure modes, evaluate()."
import math, os
from pathlib import Path

import numpy as np
import pesq
import pytest
import soundfile as sf
import torch
import torchaudio
from pystoi import stoi as pystoi_stoi

from rotvq_audio.metrics import (CodebookMetrics, EvalResult, bitrate, codebook_metrics, evaluate, mel_distance,
                                 pesq_nb, pesq_wb, si_sdr, stoi)
from rotvq_audio.codebook import UsageAccumulator

SPEECH = Path(os.environ.get("ROTVQ_SPEECH", Path(__file__).resolve().parents[1].parent / "shared" / "speech"))
DEV_CLIPS = ["dev/librispeech/367/367-130732-0006.flac", "dev/librispeech/3331/3331-159605-0004.flac",
             "dev/librispeech/7312/7312-92432-0000.flac"]


@pytest.fixture(scope="module")
def clips():
    paths = [SPEECH / p for p in DEV_CLIPS]
    if not all(p.exists() for p in paths):
        pytest.skip(f"speech corpus not found at {SPEECH} (set ROTVQ_SPEECH to its folder)")
    return paths


@pytest.fixture(scope="module")
def clean(clips):
    return sf.read(clips[0], dtype="float32")[0]


def add_noise(x, snr_db, seed=0):
    noise = np.random.default_rng(seed).standard_normal(len(x)).astype(np.float32)
    return x + noise * np.sqrt(np.var(x) / np.var(noise) / 10 ** (snr_db / 10))


# --- agreement with the reference implementations -------------------------------------------

@pytest.mark.parametrize("mode,fn", [("wb", pesq_wb), ("nb", pesq_nb)])
def test_pesq_equals_reference(clean, mode, fn):
    deg = add_noise(clean, 15)
    want = pesq.pesq(16000, clean, deg, mode)
    assert fn(clean, deg) == want
    assert fn(torch.from_numpy(clean)[None, None], torch.from_numpy(deg)[None]) == want  # tensor layouts
    assert fn(clean, np.concatenate([deg, np.zeros(123, np.float32)])) == want  # longer output truncated


def test_pesq_nb_at_8k_equals_reference(clean):
    ref8 = torchaudio.functional.resample(torch.from_numpy(clean), 16000, 8000).numpy()
    deg8 = add_noise(ref8, 15)
    assert pesq_nb(ref8, deg8, sample_rate=8000) == pesq.pesq(8000, ref8, deg8, "nb")


def test_pesq_resamples_other_rates(clean):
    "Other rates go through torchaudio's resampler to 16 kHz, then the reference PESQ."
    ref48, deg48 = (torchaudio.functional.resample(torch.from_numpy(x), 16000, 48000) for x in (clean, add_noise(clean, 15)))
    ref16, deg16 = (torchaudio.functional.resample(x, 48000, 16000).numpy() for x in (ref48, deg48))
    assert pesq_wb(ref48, deg48, sample_rate=48000) == pesq.pesq(16000, ref16, deg16, "wb")
    assert pesq_nb(ref48, deg48, sample_rate=48000) == pesq.pesq(16000, ref16, deg16, "nb")


@pytest.mark.parametrize("extended", [False, True])
def test_stoi_equals_reference(clean, extended):
    deg = add_noise(clean, 5)
    # ESTOI's matmuls run on multithreaded OpenBLAS, so pystoi itself varies in the last bit between calls
    assert stoi(clean, deg, extended=extended) == pytest.approx(pystoi_stoi(clean, deg, 16000, extended=extended),
                                                                rel=1e-12 if extended else 0)


def test_clean_against_itself(clean):
    assert pesq_wb(clean, clean) == pytest.approx(4.644, abs=1e-3)
    assert stoi(clean, clean) == pytest.approx(1.0)
    assert mel_distance(clean, clean) == 0.0


# --- failure modes ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [pesq_wb, pesq_nb, stoi])
def test_silent_reference(fn):
    speechy = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    with pytest.raises(ValueError, match="silent"):
        fn(np.zeros(16000, np.float32), speechy)
    assert math.isnan(fn(np.zeros(16000, np.float32), speechy, on_error="nan"))


@pytest.mark.parametrize("fn", [pesq_wb, pesq_nb])
def test_pesq_too_short(clean, fn):
    with pytest.raises(ValueError, match="0.25 s"):
        fn(clean[:3000], clean[:3000])
    assert math.isnan(fn(clean[:3000], clean[:3000], on_error="nan"))


def test_pesq_no_utterance(clean):
    hum = np.sin(2 * np.pi * 20 * np.arange(16000) / 16000).astype(np.float32)  # below the WB input filter
    with pytest.raises(ValueError, match="no speech"):
        pesq_wb(hum, clean[:16000])


def test_stoi_too_short(clean):
    with pytest.raises(ValueError, match="0.4 s"):
        stoi(clean[:4000], clean[:4000])
    assert math.isnan(stoi(clean[:4000], clean[:4000], on_error="nan"))


def test_bad_arguments(clean):
    with pytest.raises(ValueError, match=r"got shape \(2, 16000\)"):
        pesq_wb(np.zeros((2, 16000)), clean[:16000])
    with pytest.raises(ValueError, match="on_error"):
        pesq_wb(clean, clean, on_error="ignore")
    with pytest.raises(ValueError, match="more than 1024 samples"):
        mel_distance(clean[:800], clean[:800])


# --- SI-SDR, mel distance, bitrate -----------------------------------------------------------

def orthogonal_noise(ref, snr_db, seed=0):
    "Zero-mean noise orthogonal to zero-mean `ref`, at exactly `snr_db`."
    r = ref - ref.mean()
    n = np.random.default_rng(seed).standard_normal(len(ref))
    n -= n.mean()
    n -= (n @ r) / (r @ r) * r
    return n * np.sqrt((r @ r) / (n @ n) / 10 ** (snr_db / 10))


@pytest.mark.parametrize("snr", [-5.0, 0.0, 7.5, 20.0, 40.0])
def test_si_sdr_known_snr(snr):
    ref = np.sin(np.linspace(0, 300, 8000)) + 0.3 * np.random.default_rng(1).standard_normal(8000)
    assert si_sdr(ref, ref + orthogonal_noise(ref, snr)) == pytest.approx(snr, abs=1e-6)


def test_si_sdr_invariances_and_batch():
    g = np.random.default_rng(2)
    ref = g.standard_normal((3, 4000))
    deg = ref + g.uniform(0.2, 2, (3, 1)) * g.standard_normal((3, 4000))
    base = si_sdr(ref[0], deg[0])
    assert si_sdr(ref[0], 3.7 * deg[0]) == pytest.approx(base, abs=1e-6)
    assert si_sdr(ref[0], -0.2 * deg[0] + 5.0) == pytest.approx(base, abs=1e-6)  # sign and DC don't matter
    batched = si_sdr(torch.from_numpy(ref), torch.from_numpy(deg))
    assert batched.shape == (3,)
    assert batched.tolist() == pytest.approx([si_sdr(r, d) for r, d in zip(ref, deg)], abs=1e-9)
    assert si_sdr(ref[0], ref[0]) > 100  # identical: far above any real SNR, still finite
    assert isinstance(si_sdr(torch.from_numpy(ref[:1, None]), torch.from_numpy(deg[:1, None])), float)


def test_si_sdr_of_noisy_speech(clean):
    for snr in (30, 10, 0):
        assert si_sdr(clean, add_noise(clean, snr)) == pytest.approx(snr, abs=0.1)


def test_mel_distance_monotone_in_noise(clean):
    d = [mel_distance(clean, add_noise(clean, snr)) for snr in (40, 30, 20, 10, 0)]
    assert d[0] > 0 and all(a < b for a, b in zip(d, d[1:])), d


def test_mel_distance_batch_is_mean_of_items(clean):
    x = torch.from_numpy(clean[:16000])
    y1, y2 = (torch.from_numpy(add_noise(clean[:16000], s)) for s in (20, 5))
    batched = mel_distance(torch.stack([x, x])[:, None], torch.stack([y1, y2])[:, None])
    assert batched == pytest.approx((mel_distance(x, y1) + mel_distance(x, y2)) / 2, rel=1e-5)


def test_bitrate():
    assert bitrate(12, 1024, 50) == 6000
    assert [bitrate(n, 1024, 50) for n in (3, 6)] == [1500, 3000]
    assert bitrate(8, 256, 75) == 4800
    assert bitrate(1, 1000, 50) == pytest.approx(50 * math.log2(1000))


# --- codebook metrics ------------------------------------------------------------------------

def test_codebook_metrics_known_distributions():
    K = 256
    uniform = torch.arange(4 * K).remainder(K).view(2, 1, 2 * K)
    constant = torch.full((2, 1, 2 * K), 3)
    cm = codebook_metrics([torch.cat([uniform, constant], 1)], K, frame_rate=50)
    assert isinstance(cm, CodebookMetrics)
    assert cm.entropy.tolist() == pytest.approx([8.0, 0.0], abs=1e-6)
    assert cm.perplexity.tolist() == pytest.approx([256.0, 1.0], abs=1e-4)
    assert cm.norm_entropy.tolist() == pytest.approx([1.0, 0.0], abs=1e-6)
    assert cm.utilization.tolist() == pytest.approx([1.0, 1 / K])
    assert cm.bitrate == 800.0 and cm.effective_bitrate == pytest.approx(400.0)


def test_codebook_metrics_pools_and_accepts_accumulator():
    g = torch.Generator().manual_seed(0)
    codes = [torch.randint(0, 64, (1, 3, int(t)), generator=g) for t in (10, 50, 7)]
    acc = UsageAccumulator(3, 64)
    for c in codes: acc.update(c)
    a, b = codebook_metrics(codes, 64, 50), codebook_metrics(acc, 64, 50)
    assert torch.equal(a.entropy, b.entropy) and a.effective_bitrate == b.effective_bitrate
    pooled = codebook_metrics(torch.cat([c.view(3, -1) for c in codes], 1)[None], 64, 50)
    assert torch.allclose(a.entropy, pooled.entropy)
    assert a.effective_bitrate == pytest.approx(50 * a.entropy.sum().item())


# --- evaluate --------------------------------------------------------------------------------

def noisy_fn(x):
    "Deterministic 10 dB noise, so serial and parallel runs see identical reconstructions."
    return torch.from_numpy(add_noise(x.view(-1).numpy(), 10)).view(1, 1, -1)


def test_evaluate_identity(clips):
    res = evaluate(lambda x: x, clips, n_workers=1, progress=False)
    assert isinstance(res, EvalResult) and len(res.rows) == 3
    assert [r["item"] for r in res.rows] == [str(p) for p in clips]
    assert res.means["pesq_wb"] == pytest.approx(4.644, abs=1e-3)
    assert res.means["mel_distance"] == 0.0 and res.means["stoi"] == pytest.approx(1.0)
    assert res.failed == dict.fromkeys(res.means, 0) and res.codebook is None


def test_evaluate_noisy_parallel_equals_serial_and_reference(clips):
    ser = evaluate(noisy_fn, clips, n_workers=1, progress=False)
    par = evaluate(noisy_fn, clips, n_workers=2, progress=False)
    assert par.rows == ser.rows and par.means == ser.means
    for row, p in zip(ser.rows, clips):
        ref = sf.read(p, dtype="float32")[0]
        deg = noisy_fn(torch.from_numpy(ref)).view(-1).numpy()
        assert row["pesq_wb"] == pesq.pesq(16000, ref, deg, "wb")
        assert row["pesq_nb"] == pesq.pesq(16000, ref, deg, "nb")
        assert row["stoi"] == pystoi_stoi(ref, deg, 16000)
        assert row["si_sdr"] == pytest.approx(10, abs=0.1)
    assert ser.means["pesq_wb"] == pytest.approx(np.mean([r["pesq_wb"] for r in ser.rows]))


def test_evaluate_dataset_forms(clips):
    rows = [dict(path=str(p.relative_to(SPEECH))) for p in clips[:2]]
    tensors = [torch.from_numpy(sf.read(p, dtype="float32")[0])[None] for p in clips[:2]]  # (1, T)
    a = evaluate(noisy_fn, rows, root=SPEECH, metrics=("pesq_wb", "estoi"), n_workers=2, progress=False)
    b = evaluate(noisy_fn, tensors, metrics=("pesq_wb", "estoi"), n_workers=1, progress=False)
    assert [r["pesq_wb"] for r in a.rows] == [r["pesq_wb"] for r in b.rows]
    assert [r["estoi"] for r in a.rows] == pytest.approx([r["estoi"] for r in b.rows], rel=1e-12)  # see test_stoi_equals_reference
    assert a.rows[0]["item"] == rows[0]["path"]  # the name as given, not resolved against root
    assert b.rows[0]["item"] == "#0"


def test_evaluate_failed_rows_are_nan_and_skipped(clean):
    data = [clean, clean[:3000]]  # the second is too short for PESQ and STOI
    res = evaluate(noisy_fn, data, metrics=("pesq_wb", "stoi", "si_sdr"), n_workers=2, progress=False)
    assert math.isnan(res.rows[1]["pesq_wb"]) and math.isnan(res.rows[1]["stoi"])
    assert res.failed == dict(pesq_wb=1, stoi=1, si_sdr=0)
    assert res.means["pesq_wb"] == res.rows[0]["pesq_wb"]
    assert "| pesq_wb |" in res.to_markdown()


def test_evaluate_with_codes(clean):
    def fn(x):
        T = x.shape[-1] // 320
        return x, (x.view(-1)[: T * 320].view(1, 1, T, 320)[..., :2].expand(1, 2, T, 2) > 0).long().sum(-1)  # (1, 2, T)
    res = evaluate(fn, [clean], metrics=("si_sdr",), n_workers=1, progress=False, codebook_size=4, frame_rate=50)
    assert res.codebook.bitrate == 200.0 and 0 < res.codebook.effective_bitrate <= 200.0
    assert "effective bitrate" in res.to_markdown()
    with pytest.raises(ValueError, match="codebook_size"):
        evaluate(fn, [clean], metrics=("si_sdr",), n_workers=1, progress=False)


def test_evaluate_unknown_metric(clean):
    with pytest.raises(ValueError, match="unknown metrics"):
        evaluate(lambda x: x, [clean], metrics=("pesq_wb", "visqol"), progress=False)


def test_evaluate_on_manifest_rows(clips):
    from rotvq_audio.data import speech_split
    rows = [r for r in speech_split("dev", root=SPEECH) if r["path"] in {str(p.resolve()) for p in clips}]
    assert len(rows) == 3
    res = evaluate(noisy_fn, rows, metrics=("si_sdr", "mel_distance"), n_workers=1, progress=False)
    assert [r["item"] for r in res.rows] == [r["path"] for r in rows]
    assert res.means["si_sdr"] == pytest.approx(10, abs=0.1) and res.means["mel_distance"] > 0
