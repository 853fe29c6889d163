"""`rotvq tokenize` / `rotvq lm-export`: exact codes, resumable shards, 2 torchrun ranks = 1, bad input, readers."""
import errno, json, os, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from conftest import run_rotvq as run  # `rotvq ARGS` in-process: (status, stdout, stderr)
from rotvq_audio import corpus as C
from rotvq_audio.api import Codec
from rotvq_audio.codec import CodecConfig, CodecModel
from rotvq_audio.data import load_audio

torch.set_num_threads(2)
SPEECH = Path(os.environ.get("ROTVQ_SPEECH", Path(__file__).resolve().parents[1].parent / "shared" / "speech"))


def speech_files(n):
    files = sorted((SPEECH / "dev").rglob("*.flac"))
    if not files: pytest.skip(f"no shared speech under {SPEECH}")
    return files[:n]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    "A tiny model and a corpus of real dev speech with the awkward files a real corpus has."
    d = tmp_path_factory.mktemp("corpus")
    torch.manual_seed(0)
    CodecModel(CodecConfig.tiny(n_q=4, codebook_size=64)).save_pretrained(d / "tiny")
    CodecModel(CodecConfig.tiny(n_q=4, codebook_size=64, causal=True)).save_pretrained(d / "other")
    src = d / "in"
    for i, f in enumerate(speech_files(10)):
        (src / f"spk{i % 3}").mkdir(parents=True, exist_ok=True); shutil.copy(f, src / f"spk{i % 3}" / f.name)
    rng = np.random.default_rng(0)
    odd = src / "odd dir ü"; odd.mkdir()
    sf.write(odd / "six channels.wav", (0.1 * rng.standard_normal((8000, 6))).astype(np.float32), 16000)
    sf.write(odd / "narrow 8k.wav", (0.1 * rng.standard_normal(12000)).astype(np.float32), 8000)
    sf.write(odd / "nan.wav", np.full(4000, np.nan, np.float32), 16000, subtype="FLOAT")
    sf.write(odd / "zero length.wav", np.zeros(0, np.float32), 16000)
    (odd / "empty.wav").write_bytes(b"")
    (odd / "garbage.flac").write_bytes(b"fLaC not really")
    return d


def tok(work, out, *extra):
    return run("tokenize", work / "in", out, "--model", work / "tiny", "--shard-size", 4, "-q", *extra)


def rows(out):
    return [r for p in sorted(Path(out).glob("shard-*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def t1(work):
    "The corpus tokenized by 2 worker processes, one clip at a time (the CPU default; exit 2: unreadable inputs exist)."
    code, _, err = tok(work, work / "t1", "--num-workers", 2)
    assert code == 2 and "Traceback" not in err
    return work / "t1"


def test_every_clip_equals_codec_encode_alone(work, t1):
    "Each clip's codes are `Codec.encode` of it alone (exactly here: the untrained tiny model has no near-ties)."
    codec = Codec.from_pretrained(work / "tiny")
    got = rows(work / "t1")
    assert len(got) == 12  # 10 speech clips + 6 channels + 8 kHz
    for r in got:
        want = codec.encode(load_audio(r["path"]), 16000)[0].numpy()
        assert np.array_equal(np.array(r["codes"]), want), r["id"]
    by_id = {r["id"]: r for r in got}
    assert by_id["odd dir ü/narrow 8k"]["sample_rate"] == 8000 and by_id["odd dir ü/narrow 8k"]["n_samples"] == 12000
    errors = (work / "t1" / "errors.csv").read_text().splitlines()
    assert errors[0] == "id,path,reason" and sorted(l.split(",")[0] for l in errors[1:]) == [
        "odd dir ü/empty", "odd dir ü/garbage", "odd dir ü/nan", "odd dir ü/zero length"]
    settings = json.loads((work / "t1" / "tokenize.json").read_text())
    assert settings["n_q"] == 4 and settings["n_items"] == 16 and settings["model_hash"] == codec.weights_hash


def test_a_second_run_recomputes_nothing_and_a_missing_shard_is_redone(work, t1):
    out = work / "t2"
    tok(work, out, "--num-workers", 0)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("shard-*.parquet")}
    code, _, _ = tok(work, out, "--num-workers", 0)
    assert code == 2 and {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.glob("shard-*.parquet")} == before
    (out / "shard-00001.parquet").unlink()
    summary = C.tokenize(str(work / "in"), str(out), model=str(work / "tiny"), shard_size=4, num_workers=0, progress=False)
    assert (summary.written, summary.skipped) == (1, 3)
    assert pq.read_table(out / "shard-00001.parquet").column("codes") == pq.read_table(work / "t1" / "shard-00001.parquet").column("codes")


def test_output_does_not_depend_on_workers(work, t1):
    tok(work, work / "t3", "--num-workers", 1)
    for k in range(4):
        a, b = (pq.read_table(d / f"shard-{k:05d}.parquet") for d in (work / "t1", work / "t3"))
        assert a.select(["id", "path", "n_samples", "sample_rate", "codes"]).equals(b.select(["id", "path", "n_samples", "sample_rate", "codes"]))


@pytest.mark.parametrize("batch", [3, 8])
def test_batches_give_the_codes_of_each_clip_alone_to_float_rounding(work, t1, batch):
    "Padded, length-bucketed batches: every clip's codes as alone, except where rounding flips a near-tie (none here)."
    out = work / f"b{batch}"
    tok(work, out, "--num-workers", 1, "--batch-size", batch)
    got, want = ({r["id"]: r for r in rows(d)} for d in (out, work / "t1"))
    assert got.keys() == want.keys()
    for i, r in got.items():
        a, b = np.array(r["codes"]), np.array(want[i]["codes"])
        assert a.shape == b.shape and (a == b).mean() >= 0.99, i
        assert (r["n_samples"], r["sample_rate"], r["path"]) == (want[i]["n_samples"], want[i]["sample_rate"], want[i]["path"])


def test_two_torchrun_ranks_write_what_one_process_writes(work, t1):
    out = work / "t4"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "rotvq_audio.cli", "tokenize", str(work / "in"), str(out), "--model", str(work / "tiny"),
                        "--shard-size", "4", "--num-workers", "0", "--device", "cpu", "-q"],
                       capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert r.returncode in (0, 1, 2) and sorted(p.name for p in out.glob("shard-*.parquet")) == [f"shard-{k:05d}.parquet" for k in range(4)], r.stderr[-2000:]
    for k in range(4):
        a, b = (pq.read_table(d / f"shard-{k:05d}.parquet") for d in (work / "t1", out))
        assert a.column("codes") == b.column("codes") and a.column("id") == b.column("id")
    assert (out / "errors.csv").read_text() == (work / "t1" / "errors.csv").read_text()


def test_a_folder_of_another_model_is_refused(work, t1):
    code, _, err = run("tokenize", work / "in", work / "t1", "--model", work / "other", "--shard-size", 4, "-q")
    assert code == 2 and err.count("\n") == 1 and "holds tokens of other settings (model 'tiny' there, 'other' here, model_hash" in err, err
    code, _, err = tok(work, work / "t1", "--kbps", 0.6)
    assert code == 2 and "n_q 4 there, 2 here" in err, err
    if not torch.cuda.is_available():
        code, _, err = tok(work, work / "t8", "--device", "cuda")
        assert code == 2 and "no CUDA device is available" in err and err.count("\n") == 1, err


def test_a_manifest_with_ids_and_missing_paths(work):
    m = work / "m.csv"
    first = next((work / "in").rglob("*.flac"))
    m.write_text(f"path,id\n{first.relative_to(work)},one\nin/nope.flac,missing\n")
    code, _, err = run("tokenize", m, work / "t5", "--model", work / "tiny", "--num-workers", 0, "-q")
    assert code == 2 and "Traceback" not in err
    assert [r["id"] for r in rows(work / "t5")] == ["one"] and "missing" in (work / "t5" / "errors.csv").read_text()
    (work / "bad.csv").write_text("file\nx.wav\n")
    code, _, err = run("tokenize", work / "bad.csv", work / "t6", "--model", work / "tiny", "-q")
    assert code == 2 and "expected a `path` column" in err


def test_a_full_disk_mid_shard_leaves_no_half_shard(work, monkeypatch):
    out, real, calls = work / "t7", pq.write_table, []
    def write_table(table, where, **kw):
        calls.append(where)
        if len(calls) == 2:
            Path(where).write_bytes(b"PAR1 half")  # a partial write, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kw)
    monkeypatch.setattr(C.pq, "write_table", write_table)
    code, _, err = tok(work, out, "--num-workers", 0)
    assert code == 2 and "No space left on device" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in out.iterdir()) == ["shard-00000.parquet", "tokenize.json"]  # no temp file, no half shard
    monkeypatch.setattr(C.pq, "write_table", real)
    s = C.tokenize(str(work / "in"), str(out), model=str(work / "tiny"), shard_size=4, num_workers=0, progress=False)
    assert (s.written, s.skipped) == (3, 1)


def test_pyarrow_and_datasets_read_the_shards_and_lm_export_round_trips(work, t1):
    files = sorted(str(p) for p in (work / "t1").glob("shard-*.parquet"))
    assert pq.read_table(files).num_rows == 12
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(work / "hf"))
    assert len(ds) == 12 and ds[0]["id"] == rows(work / "t1")[0]["id"] and len(ds[0]["codes"]) == 4
    code, out, err = run("lm-export", work / "t1", work / "lm", "--pattern", "delay", "--val-fraction", 0.25)
    assert code == 0, err
    meta = json.loads((work / "lm" / "meta.json").read_text())
    from rotvq_audio.lm_tokens import AudioTokenizer
    t = AudioTokenizer(64, 4, "delay")
    by_id = {r["id"]: r["codes"] for r in rows(work / "t1")}
    for split in ("train", "val"):
        ids = np.fromfile(work / "lm" / f"{split}.bin", dtype=np.uint16)
        c = meta["clips"][split]
        assert len(ids) == meta["tokens"][split] == sum(c["lengths"])
        for name, o, n in zip(c["ids"], c["offsets"], c["lengths"]):
            codes, lengths = t.ids_to_codes(torch.from_numpy(ids[o:o + n].astype(np.int64))[None])
            assert codes[0, :, :lengths[0]].tolist() == by_id[name]
    assert 0 < len(meta["clips"]["val"]["ids"]) < 12
    code, _, err = run("lm-export", work / "t7" / "nowhere", work / "lm2")
    assert code == 2 and "no tokenized corpus" in err
