"""Faults and bad input, round two (issue 31): each test names the item it covers and fails on the code before it."""
import io, json, os, resource, stat, subprocess, sys, time, zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import npy_header, zero_token_file, run_rotvq as run  # `rotvq ARGS` in-process: (status, stdout, stderr)
from rotvq_audio.api import Codec
from rotvq_audio.codec import CodecConfig, CodecModel
from rotvq_audio.tokenfile import Tokens, load_tokens, save_tokens




@pytest.fixture(scope="module")
def codec(work): return Codec.from_pretrained(work / "tiny")


def one_line_error(code, err, *needles):
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles: assert n in err, (n, err)


def peak_rss_mb(code: str) -> float:
    "Peak RSS of a fresh Python running `code`, in MB."
    out = subprocess.run([sys.executable, "-c", code + "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return int(out.stdout.split()[-1]) / 1024


# 1. an odd sample rate: the resampler's memory and time stay bounded -------------------------------------------------

def test_one_second_at_16001_hz_encodes_in_bounded_memory(work, tmp_path):
    sf.write(tmp_path / "odd.wav", (np.random.default_rng(1).standard_normal(16001) * 0.1).astype(np.float32), 16001)
    base = peak_rss_mb(f"import rotvq_audio.cli; from rotvq_audio.api import Codec; Codec.from_pretrained({str(work / 'tiny')!r})")
    code = (f"from rotvq_audio.cli import main; assert main(['encode', {str(tmp_path / 'odd.wav')!r}, {str(tmp_path / 'o.npz')!r}, "
            f"'--model', {str(work / 'tiny')!r}]) == 0")
    assert peak_rss_mb(code) - base < 300  # it was 5.1 GB: torchaudio's kernel for 16001 -> 16000


@pytest.mark.parametrize("sr", [11127, 16001, 48001, 44099])
def test_odd_rates_resample_quickly_to_the_right_length(sr):
    from rotvq_audio.data import resample
    x = torch.randn(1, sr) * 0.1
    t0 = time.perf_counter(); y = resample(x, sr, 16000)
    assert y.shape == (1, 16000) and time.perf_counter() - t0 < 5


# 2. decode checks the header and the model before it allocates --------------------------------------------------------



def test_decode_refuses_another_models_huge_file_before_reading_its_codes(work, tmp_path):
    "8 M frames of zeros (~0.2 MB compressed, 192 MB as int16) made by another model: refused from the header."
    n = 8_000_000
    with zipfile.ZipFile(work / "clip.npz") as zf: meta = json.loads(np.load(io.BytesIO(zf.read("meta.npy"))).item())
    meta |= {"lengths": [n * 320], "n_q": 12, "tokenizer_hash": "0" * 64, "model": "another"}
    path = zero_token_file(tmp_path / "huge.npz", meta, (1, 12, n))
    one_line_error(*run("decode", path, tmp_path / "o.wav", "--model", work / "tiny")[::2], "were made by model 'another'")
    base = peak_rss_mb(f"import rotvq_audio.cli; from rotvq_audio.api import Codec; Codec.from_pretrained({str(work / 'tiny')!r})")
    code = (f"from rotvq_audio.cli import main; assert main(['decode', {str(path)!r}, {str(tmp_path / 'o.wav')!r}, "
            f"'--model', {str(work / 'tiny')!r}]) == 2")
    assert peak_rss_mb(code) - base < 100  # reading the codes would take 192 MB, and 768 MB as int64


# 5-7. no write through a planted link -----------------------------------------------------------------------------------

def test_lm_export_never_writes_through_a_planted_temporary(work, tmp_path):
    from rotvq_audio.corpus import lm_export, tokenize
    (tmp_path / "clips").mkdir(); sf.write(tmp_path / "clips" / "a.wav", sf.read(work / "clip.wav")[0], 16000)
    assert tokenize(str(tmp_path / "clips"), str(tmp_path / "tok"), model=str(work / "tiny"), num_workers=0, progress=False) is not None
    lm = tmp_path / "lm"; lm.mkdir()
    victim = tmp_path / "victim.txt"; victim.write_text("precious")
    for s in ("train", "val"): os.symlink(victim, lm / f".{s}.bin.tmp")
    lm_export(str(tmp_path / "tok"), str(lm))
    assert victim.read_text() == "precious" and (lm / "train.bin").is_file()
    assert not list(lm.glob(".*.tmp"))  # the planted links are gone, and no temporary is left


def _tiny_run_args(out):
    return ["tiny", "--out", str(out), "--steps", "2", "--val_clips", "0", "--num_workers", "0", "--max_train_clips", "4",
            "--log_every", "1", "--threads", "1", "--quiet"]


@pytest.mark.parametrize("planted", [".lock", "log.jsonl"])
def test_the_trainer_never_writes_through_a_planted_link(tmp_path, planted, one_thread):
    from rotvq_audio.train import main
    run_dir = tmp_path / "run"; run_dir.mkdir()
    victim = tmp_path / "victim.txt"
    if planted == ".lock": victim.write_text("precious")
    os.symlink(victim, run_dir / planted)  # dangling for the log: it must not create the file outside the run
    assert main(_tiny_run_args(run_dir)) == 2
    assert (victim.read_text() == "precious") if planted == ".lock" else not victim.exists()


# 12-15. silent wrong results in the API ----------------------------------------------------------------------------------

def test_a_flushed_stream_takes_no_more_input(codec):
    s = codec.stream()
    s.encode_chunk(torch.zeros(3200)); s.flush_encode()
    with pytest.raises(ValueError, match="ended by flush_encode"): s.encode_chunk(torch.zeros(3200))
    s.decode_chunk(codec.encode(torch.zeros(3200), 16000)); s.flush_decode()
    with pytest.raises(ValueError, match="ended by flush_decode"): s.decode_chunk(codec.encode(torch.zeros(3200), 16000))


def test_save_tokens_refuses_what_load_tokens_would(tmp_path):
    bad = Tokens(torch.full((1, 2, 3), 5000), [900], "m", "0" * 64, 16000, 50.0, 1024, "1" * 64)
    with pytest.raises(ValueError, match=r"expected codes in \[0, 1024\)"): save_tokens(tmp_path / "t.npz", bad)
    assert not (tmp_path / "t.npz").exists()


def test_an_archive_with_two_codes_members_is_refused(work, tmp_path):
    with zipfile.ZipFile(work / "clip.npz") as zf: members = {n: zf.read(n) for n in zf.namelist()}
    with pytest.warns(UserWarning, match="Duplicate name"):
        with zipfile.ZipFile(tmp_path / "two.npz", "w") as zf:
            for n, b in members.items(): zf.writestr(n, b)
            zf.writestr("codes.npy", members["codes.npy"])
    with pytest.raises(ValueError, match=r"ambiguous archive: \['codes.npy'\] appear more than once"): load_tokens(tmp_path / "two.npz")


def test_a_boolean_rate_and_fractional_lengths_are_refused(codec):
    with pytest.raises(ValueError, match="expected the sample_rate as a whole number of Hz"): codec.encode(np.zeros(1600, np.float32), True)
    with pytest.raises(ValueError, match="expected lengths as whole numbers of samples"):
        codec.encode(np.zeros((1, 1, 1600), np.float32), 16000, lengths=[1.9])


# 17-20. every trainer flag is checked by the field it sets ----------------------------------------------------------

@pytest.mark.parametrize("flag, value, needle", [
    ("--steps", "abc", "steps an integer, got 'abc'"), ("--steps", "-5", "steps ≥ 1, got -5"), ("--lr", "abc", "lr a finite number"),
    ("--batch_size", "0", "batch_size ≥ 1, got 0"), ("--batch_size", "-1", "batch_size ≥ 1"), ("--log_every", "0", "log_every ≥ 1"),
    ("--seed", "1.5", "seed an integer, got 1.5"), ("--threads", "-1", "threads ≥ 1, got -1"), ("--segment", "0", "segment ≥ 1"),
    ("--segment", "100", "expected data.segment ≥ codec.hop_length"), ("--grad_clip", "-1", "grad_clip ≥ 0, got -1"),
    ("--warmup_steps", "-3", "warmup_steps ≥ 0"), ("--val_every", "-1", "val_every ≥ 0"), ("--max_minutes", "-1", "max_minutes > 0"),
    ("--keep_ckpts", "0", "keep_ckpts ≥ 1"), ("--max_train_clips", "-1", "max_train_clips ≥ 1"), ("--stop_at", "0", "stop_at ≥ 1"),
    ("--exclude_sources", "ami", "exclude_sources a list, got 'ami'"), ("--device", "meta", "device one of 'cuda', 'cpu'"),
    ("--freeze", "encoder", "freeze one of 'tokenizer'"),
])
def test_a_bad_trainer_flag_is_one_line_naming_the_field(tmp_path, capsys, flag, value, needle):
    from rotvq_audio.train import main
    assert main(["tiny", "--out", str(tmp_path / "run"), flag, value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rotvq-train: ") and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "run" / "ckpt").exists()


def test_a_json_config_is_checked_by_the_same_fields(tmp_path):
    from rotvq_audio.config import load_config
    cfg = json.loads(Path(__file__).parents[1].joinpath("rotvq_audio", "configs", "tiny.json").read_text())
    cfg["optim"]["grad_clip"] = -1
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"expected TrainConfig \(c.json\).optim.grad_clip ≥ 0, got -1"): load_config(str(tmp_path / "c.json"))


# 24. temporaries are cleaned on the next start --------------------------------------------------------------------------

def test_a_killed_checkpoint_saves_temporary_is_removed_on_the_next_start(tmp_path):
    from rotvq_audio.checkpoint import lock_run
    stale = tmp_path / "run" / "ckpt" / ".tmp-step-0000100-12345"; stale.mkdir(parents=True); (stale / "state.pt").write_bytes(b"x")
    f = lock_run(tmp_path / "run"); f.close()
    assert not stale.exists()


def test_sighup_stops_like_sigterm():
    import signal
    from rotvq_audio.core import StopRequest
    with StopRequest() as req:
        os.kill(os.getpid(), signal.SIGHUP)
        assert req.reason == "SIGHUP"


# 3, 4, 8, 11, 16. the corpus commands --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(work, tmp_path_factory):
    "A tokenized folder of two clips."
    from rotvq_audio.corpus import tokenize
    d = tmp_path_factory.mktemp("corpus"); (d / "clips").mkdir()
    for name in ("a", "b"): sf.write(d / "clips" / f"{name}.wav", sf.read(work / "clip.wav")[0], 16000)
    tokenize(str(d / "clips"), str(d / "tok"), model=str(work / "tiny"), num_workers=0, progress=False)
    return d


def test_lm_export_refuses_a_settings_file_claiming_1e12_items_at_once(corpus, tmp_path):
    import shutil
    from rotvq_audio.corpus import lm_export
    shutil.copytree(corpus / "tok", tmp_path / "tok")
    s = json.loads((tmp_path / "tok" / "tokenize.json").read_text()); s["n_items"] = 1e12
    (tmp_path / "tok" / "tokenize.json").write_text(json.dumps(s))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"tokenize.json.n_items an integer, got 1000000000000.0"): lm_export(str(tmp_path / "tok"), str(tmp_path / "lm"))
    s["n_items"] = 10**9; (tmp_path / "tok" / "tokenize.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match="far more than the folder holds"): lm_export(str(tmp_path / "tok"), str(tmp_path / "lm"))
    assert time.perf_counter() - t0 < 10


def test_a_glob_over_a_symlink_loop_ends_and_lists_each_file_once(corpus, tmp_path):
    from rotvq_audio.corpus import list_inputs
    (tmp_path / "d" / "sub").mkdir(parents=True); sf.write(tmp_path / "d" / "sub" / "x.wav", np.zeros(1600, np.float32), 16000)
    os.symlink(tmp_path / "d", tmp_path / "d" / "sub" / "loop")
    t0 = time.perf_counter()
    items = list_inputs(str(tmp_path / "d" / "**" / "*.wav"))
    assert [i.id for i in items] == ["sub/x"] and time.perf_counter() - t0 < 10


def test_two_inputs_with_one_id_are_refused_by_name(tmp_path):
    from rotvq_audio.corpus import list_inputs
    for ext in ("wav", "flac"): sf.write(tmp_path / f"a.{ext}", np.zeros(1600, np.float32), 16000)
    with pytest.raises(ValueError, match=r"inputs .*a.flac and .*a.wav would both get the id 'a'"): list_inputs(str(tmp_path))


def test_encoding_a_folder_refuses_two_inputs_for_one_output(work, tmp_path):
    (tmp_path / "in").mkdir()
    for ext in ("wav", "flac"): sf.write(tmp_path / "in" / f"a.{ext}", np.zeros(1600, np.float32), 16000)
    one_line_error(*run("encode", tmp_path / "in", tmp_path / "out", "--model", work / "tiny")[::2], "would both be written to")
    assert not (tmp_path / "out" / "a.npz").exists()


@pytest.mark.parametrize("flag, value", [("--batch-size", "-1"), ("--batch-size", "0"), ("--shard-size", "0"), ("--num-workers", "-1")])
def test_tokenize_refuses_a_non_positive_size(work, corpus, tmp_path, flag, value):
    one_line_error(*run("tokenize", corpus / "clips", tmp_path / "t", "--model", work / "tiny", flag, value)[::2], "expected")
    assert not list((tmp_path / "t").glob("shard-*")) if (tmp_path / "t").exists() else True


def test_lm_export_refuses_an_offset_that_overflows_uint32(corpus, tmp_path):
    from rotvq_audio.corpus import lm_export
    with pytest.raises(ValueError, match="fit uint32"): lm_export(str(corpus / "tok"), str(tmp_path / "lm"), offset=2**32)
    with pytest.raises(ValueError, match="expected offset ≥ 0"): lm_export(str(corpus / "tok"), str(tmp_path / "lm"), offset=-1)


# 22-23. rotvq-eval and rotvq info ------------------------------------------------------------------------------------

def test_rotvq_eval_of_the_bundled_model_writes_to_the_working_directory(tmp_path, monkeypatch):
    from rotvq_audio.codec import bundled_model_dir
    from rotvq_audio.evaluate import main
    monkeypatch.chdir(tmp_path)
    speech = Path(os.environ.get("ROTVQ_SPEECH", Path(__file__).parents[1] / ".." / "shared" / "speech"))
    clip = next((speech / "dev").rglob("*.flac"))
    assert main(["default", str(clip), "--n-q", "3", "--workers", "1", "--quiet", "--no-mos"]) == 0
    assert (tmp_path / "eval-default" / "report.json").is_file() and not (bundled_model_dir() / "eval").exists()


@pytest.mark.parametrize("argv, needle", [(["--n-q", "0"], "n_q depths in [1, 12], got [0]"), (["--n-q", "99"], "got [99]"),
                                           (["--max-files", "0"], "max_files ≥ 1"), (["--max-files", "-1"], "max_files ≥ 1")])
def test_rotvq_eval_refuses_depths_and_counts_out_of_range(work, tmp_path, capsys, argv, needle):
    from rotvq_audio.evaluate import main
    assert main([str(work / "tiny"), str(work / "clip.wav"), "--out", str(tmp_path / "e"), "--quiet", *argv]) == 2
    assert needle in capsys.readouterr().err


def test_info_escapes_a_model_name_that_would_drive_the_terminal(work, tmp_path):
    with np.load(work / "clip.npz") as z: c, m = z["codes"], json.loads(str(z["meta"]))
    m["model"] = "evil\x1b]0;pwned\x07\x1b[2J"
    np.savez_compressed(tmp_path / "evil.npz", codes=c, meta=np.array(json.dumps(m)))
    code, out, _ = run("info", tmp_path / "evil.npz")
    assert code == 0 and "\x1b" not in out and "\x07" not in out and "\\x1b]0;pwned" in out


@pytest.mark.parametrize("argv, needle", [(["--jobs", "0"], "jobs ≥ 1, got 0"), (["--seeds", "-1"], "seeds ≥ 1, got -1")])
def test_rotvq_study_refuses_counts_out_of_range(tmp_path, capsys, argv, needle):
    from rotvq_audio.study import main
    assert main(["--out", str(tmp_path / "s"), *argv]) == 2
    assert needle in capsys.readouterr().err


# 9-10. a rerun of tokenize redoes any shard that is damaged or not made of its inputs ---------------------------------

def _tokenized(work, root, names, shard_size=1):
    from rotvq_audio.corpus import tokenize
    (root / "clips").mkdir(parents=True, exist_ok=True)
    for n in names: sf.write(root / "clips" / f"{n}.wav", sf.read(work / "clip.wav")[0][:8000 + 1000 * len(n)], 16000)
    tokenize(str(root / "clips"), str(root / "tok"), model=str(work / "tiny"), num_workers=0, progress=False, shard_size=shard_size)
    return root / "tok"


@pytest.mark.parametrize("damage", ["truncate", "empty", "foreign"])
def test_a_rerun_redoes_a_damaged_or_foreign_shard(work, tmp_path, damage):
    import pyarrow.parquet as pq
    from rotvq_audio.corpus import tokenize, lm_export
    tok = _tokenized(work, tmp_path / "a", ["c0", "c1"])
    good = pq.read_table(tok / "shard-00000.parquet").to_pylist()
    shard = tok / "shard-00000.parquet"
    if damage == "truncate": shard.write_bytes(shard.read_bytes()[:100])
    elif damage == "empty": shard.write_bytes(b"")
    else: shard.write_bytes((tok / "shard-00001.parquet").read_bytes())  # another shard's rows under this name
    tokenize(str(tmp_path / "a" / "clips"), str(tok), model=str(work / "tiny"), num_workers=0, progress=False, shard_size=1)
    assert pq.read_table(shard).to_pylist() == good
    meta = lm_export(str(tok), str(tmp_path / "lm"), val_fraction=0)
    assert meta["clips"]["train"]["ids"] == ["c0", "c1"]  # each clip once


# 21. one line that says what is wrong -------------------------------------------------------------------------------

def test_a_manifest_saved_with_a_byte_order_mark_reads(tmp_path):
    from rotvq_audio.corpus import list_inputs
    from rotvq_audio.data import read_manifest
    sf.write(tmp_path / "a.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "m.csv").write_text("path,duration\na.wav,0.1\n", encoding="utf-8-sig")
    assert [r["path"] for r in read_manifest(tmp_path / "m.csv")] == [str(tmp_path / "a.wav")]
    assert [i.id for i in list_inputs(str(tmp_path / "m.csv"))] == ["a"]


def test_a_pipe_is_named_as_a_pipe_not_as_an_empty_file(tmp_path):
    from rotvq_audio.data import AudioError, load_audio
    os.mkfifo(tmp_path / "fifo.wav")
    with pytest.raises(AudioError, match="pipes and devices are not read"): load_audio(tmp_path / "fifo.wav")


def test_encoding_a_missing_input_names_the_input(work, tmp_path):
    one_line_error(*run("encode", tmp_path / "missing_dir", tmp_path / "out", "--model", work / "tiny")[::2], "missing_dir does not exist")


def test_big_endian_codes_decode_like_native_ones(codec):
    codes = codec.encode(np.zeros(3200, np.float32), 16000).numpy()
    a = codec.decode(codes.astype(">i2")); b = codec.decode(codes)
    assert torch.equal(a, b)


def test_a_sample_rate_of_10_to_the_400_is_one_value_error(work, tmp_path):
    with np.load(work / "clip.npz") as z: c, m = z["codes"], json.loads(str(z["meta"]))
    m["sample_rate"] = 10**400
    np.savez(tmp_path / "t.npz", codes=c, meta=np.array(json.dumps(m)))
    with pytest.raises(ValueError, match=r"sample_rate an integer in \[1, 10000000\]"): load_tokens(tmp_path / "t.npz")


def test_metadata_nested_past_the_parsers_limit_is_one_value_error(work, tmp_path):
    with np.load(work / "clip.npz") as z: c = z["codes"]
    np.savez(tmp_path / "deep.npz", codes=c, meta=np.array('{"a": ' + "[" * 100000 + "]" * 100000 + "}"))
    with pytest.raises(ValueError, match="not a rotvq token file"): load_tokens(tmp_path / "deep.npz")


def test_codec_options_are_refused_in_one_line(work):
    with pytest.raises(ValueError, match="chunk_seconds a finite number > 0, got nan"):
        Codec(CodecModel(CodecConfig.tiny()), chunk_seconds=float("nan"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="expected a CUDA GPU for device='cuda'"): Codec.from_pretrained(work / "tiny", device="cuda")


def test_the_demo_on_a_one_sample_clip_reports_scores_as_not_available(work, tmp_path):
    sf.write(tmp_path / "one.wav", np.full(1, 0.1, np.float32), 16000)
    code, out, err = run("demo", tmp_path / "one.wav", "--model", work / "tiny", "--out", tmp_path / "d")
    assert code == 0 and "n/a" in out, err
    from rotvq_audio.metrics import stoi
    with pytest.raises(ValueError, match="STOI needs about 0.4 s"): stoi(np.full(100, 0.1), np.full(100, 0.1))


@pytest.mark.parametrize("device, needle", [("meta", "got 'meta'"), ("gpu0", "expected a device such as 'cpu' or 'cuda', got 'gpu0'")])
def test_a_device_that_cannot_hold_the_model_is_one_value_error(work, device, needle):
    with pytest.raises(ValueError, match=needle): Codec.from_pretrained(work / "tiny", device=device)


def test_a_file_name_that_is_not_utf8_goes_to_errors_csv_and_the_others_are_tokenized(work, tmp_path):
    import pyarrow.parquet as pq
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "a.wav", sf.read(work / "clip.wav")[0], 16000)
    (tmp_path / "in" / os.fsdecode(b"caf\xe9.wav")).write_bytes((tmp_path / "in" / "a.wav").read_bytes())
    code, out, err = run("tokenize", tmp_path / "in", tmp_path / "t", "--model", work / "tiny", "--num-workers", "0", "-q")
    assert code == 2 and "Traceback" not in err, err  # exit 2: an input could not be tokenized
    assert [r["id"] for r in pq.read_table(tmp_path / "t" / "shard-00000.parquet").to_pylist()] == ["a"]
    import csv
    (row,) = csv.DictReader(open(tmp_path / "t" / "errors.csv"))
    assert row["id"] == "caf\\xe9" and row["path"] == str(tmp_path / "in" / "caf\\xe9.wav") and "not UTF-8" in row["reason"]


@pytest.mark.parametrize("name, text, needle", [
    ("latin1.csv", "path\ncaf\xe9.wav\n".encode("latin-1"), "latin1.csv cannot be read"),
    ("short.csv", b"path,id\na.wav\n", "short.csv, row 1: expected one value per column"),
    ("long.csv", b"path\na.wav,b,c\n", "long.csv, row 1: expected one value per column"),
    ("big.csv", b"path\n" + b"x" * 200_000 + b"\n", "big.csv cannot be read"),
])
def test_a_malformed_manifest_is_named_in_one_line(tmp_path, name, text, needle):
    from rotvq_audio.corpus import list_inputs
    from rotvq_audio.data import read_manifest
    (tmp_path / name).write_bytes(text)
    for read in (read_manifest, lambda p: list_inputs(str(p))):
        with pytest.raises(ValueError, match=needle): read(tmp_path / name)


def test_a_non_numeric_duration_and_garbage_settings_are_named(work, corpus, tmp_path):
    import shutil
    from rotvq_audio.corpus import lm_export, tokenize
    from rotvq_audio.data import read_manifest
    (tmp_path / "m.csv").write_text("path,duration\na.wav,soon\n")
    with pytest.raises(ValueError, match="m.csv, row 1: duration: expected a number, got 'soon'"): read_manifest(tmp_path / "m.csv")
    shutil.copytree(corpus / "tok", tmp_path / "tok"); (tmp_path / "tok" / "tokenize.json").write_text("{garbage")
    with pytest.raises(ValueError, match="tokenize.json is not valid JSON"): lm_export(str(tmp_path / "tok"), str(tmp_path / "lm"))
    with pytest.raises(ValueError, match="tokenize.json is not valid JSON"):
        tokenize(str(corpus / "clips"), str(tmp_path / "tok"), model=str(work / "tiny"), num_workers=0, progress=False)


def test_rotvq_eval_on_a_folder_with_bad_files_scores_the_rest(work, tmp_path):
    from rotvq_audio.evaluate import main
    (tmp_path / "d").mkdir()
    sf.write(tmp_path / "d" / "good.wav", sf.read(work / "clip.wav")[0], 16000)
    sf.write(tmp_path / "d" / "one.wav", np.full(1, 0.1, np.float32), 16000)
    (tmp_path / "d" / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    err = io.StringIO()
    with __import__("contextlib").redirect_stderr(err):
        code = main([str(work / "tiny"), str(tmp_path / "d"), "--out", str(tmp_path / "e"), "--no-mos", "--quiet", "--n-q", "2"])
    assert code == 0 and err.getvalue().startswith("rotvq-eval: warning: skipped 1 unreadable file(s)"), err.getvalue()
    assert err.getvalue().count("\n") == 1
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["n_files"] == 2 and report["bitrates"][0]["failed"]["mel_distance"] == 1
