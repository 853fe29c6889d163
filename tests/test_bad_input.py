"Bad input to the CLI and the API: permissions, folder runs past bad files, forged token files, odd arrays, bounded memory."
import io, json, os, stat, subprocess, sys, zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import npy_header, zero_token_file, run_rotvq as run  # `rotvq ARGS` in-process: (status, stdout, stderr)
from rotvq_audio.codec import CodecConfig, CodecModel
from rotvq_audio.api import Codec, load_tokens, token_file_header

torch.set_num_threads(2)






def one_line_error(code, err, *needles):
    assert code == 2 and err.startswith("rotvq: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles: assert n in err, (n, err)


def forge(src, dst, edit=None, codes=None):
    "A copy of token file `src` with its metadata edited or its codes replaced."
    with np.load(src) as z: c, m = z["codes"], json.loads(str(z["meta"]))
    if edit: edit(m)
    with open(dst, "wb") as f: np.savez_compressed(f, codes=c if codes is None else codes, meta=np.array(json.dumps(m)))
    return dst


# 12. permissions ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_new_outputs_get_the_umasks_permissions_and_a_private_file_stays_private(work, tmp_path, umask):
    old = os.umask(umask)
    try:
        assert run("encode", work / "clip.wav", tmp_path / "new.npz", "--model", work / "tiny")[0] == 0
        (tmp_path / "old.wav").write_bytes(b"x"); (tmp_path / "old.wav").chmod(0o600)
        assert run("decode", work / "clip.npz", tmp_path / "old.wav", "--model", work / "tiny")[0] == 0
    finally: os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.npz").stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "old.wav").stat().st_mode) == 0o600  # replaced, not widened (round two, item 19)


# 13. folder runs go on past bad token files, with clear reasons -------------------------------------------------------

def test_decoding_a_folder_goes_past_every_bad_token_file(work, tmp_path):
    src = tmp_path / "tokens"; src.mkdir()
    good = (work / "clip.npz").read_bytes()
    (src / "a.npz").write_bytes(good); (src / "z.npz").write_bytes(good)
    np.save(src / "plain.npy", np.zeros(3)); (src / "plain.npy").rename(src / "b_npy.npz")  # an .npy named .npz
    (src / "c_cut.npz").write_bytes(good[:len(good) // 2])
    forge(work / "clip.npz", src / "d_meta.npz", edit=lambda m: m.update(lengths="many"))
    code, out, err = run("decode", src, tmp_path / "wav", "--model", work / "tiny", "-q")
    assert code == 2 and out == "", out + err
    assert sorted(p.name for p in (tmp_path / "wav").iterdir()) == ["a.wav", "z.wav"]
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(l.startswith("rotvq: skipped ") for l in lines), err
    assert "context manager" not in err and all("not a rotvq token file" in l or "expected lengths" in l for l in lines), err


# 14. one-line errors, never tracebacks --------------------------------------------------------------------------------

@pytest.mark.parametrize("kbps", ["inf", "nan", "-inf", "0", "-3"])
def test_a_non_finite_or_non_positive_bitrate_is_one_line(work, tmp_path, kbps):
    code, _, err = run("encode", work / "clip.wav", tmp_path / "o.npz", f"--kbps={kbps}", "--model", work / "tiny")
    one_line_error(code, err, "expected a bitrate in kbps")
    assert not (tmp_path / "o.npz").exists()


def test_a_truncated_token_file_is_one_line(work, tmp_path):
    cut = tmp_path / "cut.npz"; cut.write_bytes((work / "clip.npz").read_bytes()[:300])
    for argv in (("info", cut), ("decode", cut, tmp_path / "o.wav", "--model", work / "tiny")):
        one_line_error(*run(*argv)[::2], "cut.npz", "not a rotvq token file")


def test_a_mistyped_local_model_path_is_not_sent_to_the_hub(work, tmp_path, monkeypatch):
    hub = type(sys)("huggingface_hub")
    def download(*a, **kw): raise AssertionError("the Hub was asked")
    hub.snapshot_download = download
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    code, _, err = run("encode", work / "clip.wav", tmp_path / "o.npz", "--model", "runs/tiyn")  # shaped like owner/name
    one_line_error(code, err, "no model folder at runs/tiyn")


def test_a_hub_failure_is_one_line(work, tmp_path, monkeypatch):
    hub = type(sys)("huggingface_hub")
    def download(*a, **kw): raise ConnectionError("Max retries exceeded with url: /api/models/someone/codec\n(more lines)")
    hub.snapshot_download = download
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    monkeypatch.chdir(tmp_path)
    code, _, err = run("encode", work / "clip.wav", tmp_path / "o.npz", "--model", "someone/codec")
    one_line_error(code, err, "'someone/codec' could not be fetched from the Hub: Max retries exceeded")


def test_a_config_asking_for_a_huge_model_fails_before_allocating(work, tmp_path):
    (tmp_path / "m").mkdir()
    cfg = json.loads((work / "tiny" / "config.json").read_text()); cfg["codebook_size"] = 2 * 10**9  # ~190 GB of codebooks
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "m" / "model.safetensors").write_bytes((work / "tiny" / "model.safetensors").read_bytes())
    code, _, err = run("encode", work / "clip.wav", tmp_path / "o.npz", "--model", tmp_path / "m")
    one_line_error(code, err, "do not fit this model", "shape mismatch", "expected (2000000000, 8), found (1024, 8)")
    cfg["codebook_size"] = -5; (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    code, _, err = run("encode", work / "clip.wav", tmp_path / "o.npz", "--model", tmp_path / "m")
    one_line_error(code, err, "codebook_size=-5")


# 15. a forged token file cannot make `info` or `decode` allocate what it claims ---------------------------------------

def _meta_member(work):
    with zipfile.ZipFile(work / "clip.npz") as zf: return json.loads(np.load(io.BytesIO(zf.read("meta.npy"))).item())


def _npz(path, codes_npy: bytes, meta: dict):
    buf = io.BytesIO(); np.save(buf, np.array(json.dumps(meta)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("codes.npy", codes_npy); zf.writestr("meta.npy", buf.getvalue())
    return path




def test_a_header_claiming_50M_frames_over_a_few_bytes_is_refused(work, tmp_path):
    meta = _meta_member(work) | {"lengths": [50_000_000 * 320], "n_q": 12}
    bomb = _npz(tmp_path / "bomb.npz", npy_header((1, 12, 50_000_000)) + bytes(4096), meta)
    for argv in (("info", bomb), ("decode", bomb, tmp_path / "o.wav", "--model", work / "tiny")):
        one_line_error(*run(*argv)[::2], "header claims shape (1, 12, 50000000)")


def _peak_rss_mb(code: str) -> float:
    "Peak RSS of a fresh Python running `code`, in MB."
    out = subprocess.run([sys.executable, "-c", code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1]) / 1024


def test_info_on_a_genuinely_huge_token_file_reads_only_its_headers(work, tmp_path):
    "8 M frames of zeros compress to ~0.2 MB; `info` answers from the headers and never inflates the 192 MB."
    n = 8_000_000
    meta = _meta_member(work) | {"lengths": [n * 320], "n_q": 12}
    path = zero_token_file(tmp_path / "huge.npz", meta, (1, 12, n))
    assert path.stat().st_size < 2e6
    meta_read, shape = token_file_header(path)
    assert shape == (1, 12, n) and meta_read["lengths"] == [n * 320]
    base = _peak_rss_mb("import rotvq_audio.cli")
    info = _peak_rss_mb(f"from rotvq_audio.cli import main; assert main(['info', {str(path)!r}]) == 0")
    assert info - base < 100, (base, info)  # the codes alone would be 192 MB as int16, 768 MB as int64


# 16. API edge cases ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def codec(work): return Codec.from_pretrained(work / "tiny")


def test_empty_batches_are_refused_by_name(codec):
    with pytest.raises(ValueError, match="B ≥ 1"): codec.decode(torch.zeros(0, 3, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="empty batch"): codec.encode(torch.zeros(0, 1, 16000), 16000)
    with pytest.raises(ValueError, match="empty list"): codec.encode([], 16000)


def test_a_tiny_2d_array_is_ambiguous_and_refused(codec):
    with pytest.raises(ValueError, match="time and channels cannot be told apart"): codec.encode(np.zeros((2, 6), np.float32), 16000)
    assert codec.encode(np.zeros((2, 1600), np.float32), 16000).shape == (1, 12, 5)  # 100 ms of stereo is fine
    assert codec.encode(np.zeros(6, np.float32), 16000).shape == (1, 12, 1)  # and 1-D is never ambiguous


def test_a_stream_keeps_its_stage_count_and_batch_size(codec):
    x = torch.randn(1, 1, 3200) * 0.1
    s = codec.stream(n_q=3)
    with pytest.raises(ValueError, match="expected 3 stages per frame in this stream, got 12"): s.decode_chunk(codec.encode(x, 16000))
    s.decode_chunk(codec.encode(x, 16000, n_q=3))
    with pytest.raises(ValueError, match="batch size 1 as before"): s.decode_chunk(codec.encode(torch.cat([x, x]), 16000, n_q=3))
    s.encode_chunk(x)
    with pytest.raises(ValueError, match="batch size 1 as before"): s.encode_chunk(torch.cat([x, x]))


@pytest.mark.parametrize("edit, msg", [
    (lambda m: m.update(frame_rate=999), "frame_rate a number dividing sample_rate"),
    (lambda m: m.update(frame_rate=40), "for its lengths"),  # a whole hop, but not the one the codes were made with
    (lambda m: m.update(lengths=[20000.0]), "lengths a non-empty list of positive integers"),
    (lambda m: m.update(lengths=[1]), "(B=1, n_q=12, N=1) for its lengths"),
    (lambda m: m.update(format_version="1"), "expected format_version in (1, 2) (an integer"),
    (lambda m: m.update(format_version=3), "got 3"),
    (lambda m: m.update(tokenizer_hash=7), "a tokenizer_hash string (format version 2)"),
    (lambda m: m.update(codebook_size=True), "codebook_size an integer"),
    (lambda m: m.pop("model_hash"), "lacks ['model_hash']"),
])
def test_forged_metadata_is_refused_naming_the_field(work, tmp_path, edit, msg):
    bad = forge(work / "clip.npz", tmp_path / "bad.npz", edit=edit)
    with pytest.raises(ValueError, match=None) as e: load_tokens(bad)
    assert msg in str(e.value) and "bad.npz" in str(e.value), str(e.value)


def test_forged_codes_are_refused(work, tmp_path):
    with np.load(work / "clip.npz") as z: c = z["codes"]
    for codes, msg in ((c.astype(np.float32), "integer codes"), (np.full_like(c, 5000), "codes in [0, 1024)"),
                       (c[:, :, :-1], "N=63"), (np.where(np.arange(c.shape[-1]) == 3, -1, c).astype(c.dtype), "-1 only as padding")):
        with pytest.raises(ValueError) as e: load_tokens(forge(work / "clip.npz", tmp_path / "bad.npz", codes=codes))
        assert msg in str(e.value), (msg, str(e.value))


def test_tokens_refuses_lengths_that_do_not_fit_the_codes(codec):
    codes = codec.encode(torch.randn(16000) * 0.1, 16000)
    with pytest.raises(ValueError, match=r"in \(15680, 16000\] samples for its 50 frames"): codec.tokens(codes, 100)
    assert codec.tokens(codes, 15999).lengths == [15999]


# 17. bounded memory for a long, high-rate, stereo file ----------------------------------------------------------------

def test_cli_encode_of_a_long_48k_stereo_file_stays_near_the_api_on_16k_mono(work, tmp_path):
    "5 minutes at 48 kHz stereo: whole-file reading and one-shot resampling would add ~0.7 GB; block reading adds ~60 MB."
    wav = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    with sf.SoundFile(wav, "w", 48000, 2, "PCM_16") as f:
        for _ in range(30): f.write((rng.standard_normal((480000, 2)) * 0.05).astype(np.float32))
    model = str(work / "tiny")
    cli_mb = _peak_rss_mb(f"import torch; torch.set_num_threads(1)\nfrom rotvq_audio.cli import main\n"
                          f"assert main(['encode', {str(wav)!r}, {str(tmp_path / 'long.npz')!r}, '--model', {model!r}, '-q']) == 0")
    api_mb = _peak_rss_mb(f"import torch; torch.set_num_threads(1)\nfrom rotvq_audio.api import Codec\n"
                          f"c = Codec.from_pretrained({model!r}); c.encode(torch.randn(300 * 16000) * 0.05, 16000)")
    print(f"peak RSS: CLI on 5 min 48 kHz stereo {cli_mb:.0f} MB, API on 5 min 16 kHz mono {api_mb:.0f} MB")
    assert cli_mb < api_mb + 250, (cli_mb, api_mb)
    assert load_tokens(tmp_path / "long.npz").codes.shape == (1, 12, 15000)
