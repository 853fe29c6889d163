"""Offline tests of data_scripts/: the preparation stage (extract -> resample -> manifest) on small fake archives laid
out like the real ones, and the resumable, checksummed download against a loopback HTTP server."""
import hashlib, http.server, io, os, subprocess, sys, tarfile, threading, zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
sys.path.insert(0, str(SCRIPTS))
import _common, librispeech, libritts, local_folder, make_splits, vctk  # noqa: E402
from rotvq_audio.data import load_audio, read_manifest, speech_split  # noqa: E402


def tone(sr, seconds=1.0, channels=1, seed=0):
    "A quiet sine plus noise, `(frames, channels)`."
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    return np.repeat(x[:, None], channels, 1).astype(np.float32)


def make_tar(path, files):
    "Write `files` ({member name: bytes}) into a .tar.gz at `path`."
    with tarfile.open(path, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    return path


def audio_bytes(x, sr, fmt):
    buf = io.BytesIO(); sf.write(buf, x, sr, format=fmt); return buf.getvalue()


# ---------------------------------------------------------------- preparation stage

@pytest.fixture
def librispeech_archive(tmp_path):
    files = {}
    for spk, chap in [("84", "121123"), ("174", "50561")]:
        base = f"LibriSpeech/dev-clean/{spk}/{chap}"
        for u in range(2):
            files[f"{base}/{spk}-{chap}-{u:04d}.flac"] = audio_bytes(tone(16000, seed=u), 16000, "FLAC")
        files[f"{base}/{spk}-{chap}.trans.txt"] = f"{spk}-{chap}-0000 HELLO\n{spk}-{chap}-0001 WORLD\n".encode()
    files["LibriSpeech/README.TXT"] = b"fake"
    return make_tar(tmp_path / "dev-clean.tar.gz", files)


def test_librispeech_prepare(tmp_path, librispeech_archive):
    root = tmp_path / "ls"
    rows = librispeech.main(["--root", str(root), "--subset", "dev-clean", "--archive", str(librispeech_archive), "--quiet"])
    assert len(rows) == 4 and {r["speaker"] for r in rows} == {"84", "174"}
    assert {r["split"] for r in rows} == {"dev-clean"} and {r["source"] for r in rows} == {"librispeech"}
    out = root / "LibriSpeech-16k"
    assert (out / "dev-clean/84/121123/84-121123.trans.txt").read_text().startswith("84-121123-0000 HELLO")
    back = read_manifest(out / "dev-clean.csv")
    assert back[0]["path"].endswith(".flac") and back[0]["duration"] == pytest.approx(1.0)
    info = sf.info(back[0]["path"])
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    # a second run resumes: nothing is converted again
    mtimes = {r["path"]: os.stat(r["path"]).st_mtime_ns for r in back}
    librispeech.main(["--root", str(root), "--subset", "dev-clean", "--archive", str(librispeech_archive), "--quiet"])
    assert {p: os.stat(p).st_mtime_ns for p in mtimes} == mtimes


def test_make_splits_gives_rotvq_train_a_corpus(tmp_path, librispeech_archive):
    "Two prepared subsets become one manifest.csv with train/dev that `speech_split` (hence rotvq-train) reads."
    root = tmp_path / "ls"
    librispeech.main(["--root", str(root), "--subset", "dev-clean", "--archive", str(librispeech_archive), "--quiet"])
    out = root / "LibriSpeech-16k"
    rows = read_manifest(out / "dev-clean.csv")
    sub = lambda spk: [r | {"path": os.path.relpath(r["path"], out)} for r in rows if r["speaker"] == spk]
    from rotvq_audio.data import write_manifest
    write_manifest(sub("84"), out / "a.csv"); write_manifest(sub("174"), out / "b.csv")
    make_splits.main(["--train", str(out / "a.csv"), "--dev", str(out / "b.csv"), "--out", str(out / "manifest.csv")])
    train, dev = speech_split("train", out), speech_split("dev", out)
    assert ({r["speaker"] for r in train}, {r["speaker"] for r in dev}) == ({"84"}, {"174"})
    assert load_audio(train[0]["path"], 16000).shape == (16000,)
    with pytest.raises(SystemExit, match="in both train and dev"):
        make_splits.main(["--train", str(out / "a.csv"), "--dev", str(out / "a.csv"), "--out", str(out / "bad.csv")])
    assert not (out / "bad.csv").exists()


def test_librispeech_skip_download_and_clean(tmp_path, librispeech_archive):
    root = tmp_path / "ls"
    (root / "downloads").mkdir(parents=True)
    os.replace(librispeech_archive, root / "downloads" / "dev-clean.tar.gz")
    rows = librispeech.main(["--root", str(root), "--subset", "dev-clean", "--skip-download", "--clean", "--quiet"])
    assert len(rows) == 4 and not (root / "raw/LibriSpeech/dev-clean").exists()
    with pytest.raises(FileNotFoundError, match="test-other.tar.gz"):
        librispeech.main(["--root", str(root), "--subset", "test-other", "--skip-download", "--quiet"])


def test_librispeech_wrong_archive(tmp_path, librispeech_archive):
    with pytest.raises(FileNotFoundError, match="right archive"):
        librispeech.main(["--root", str(tmp_path / "x"), "--subset", "test-clean", "--archive", str(librispeech_archive), "--quiet"])


def test_libritts_prepare_resamples_24k(tmp_path):
    files = {}
    for spk, chap in [("19", "198"), ("26", "495")]:
        stem = f"{spk}_{chap}_000000_000001"
        base = f"LibriTTS/train-clean-100/{spk}/{chap}"
        files[f"{base}/{stem}.wav"] = audio_bytes(tone(24000), 24000, "WAV")
        files[f"{base}/{stem}.normalized.txt"] = b"Hello."
    arc = make_tar(tmp_path / "train-clean-100.tar.gz", files)
    rows = libritts.main(["--root", str(tmp_path / "tts"), "--archive", str(arc), "--quiet"])
    assert {r["speaker"] for r in rows} == {"19", "26"} and {r["source"] for r in rows} == {"libritts"}
    back = read_manifest(tmp_path / "tts/LibriTTS-16k/train-clean-100.csv")
    assert sf.info(back[0]["path"]).samplerate == 16000
    assert load_audio(back[0]["path"]).shape == (16000,)
    assert (tmp_path / "tts/LibriTTS-16k/train-clean-100/19/198/19_198_000000_000001.normalized.txt").exists()


@pytest.mark.parametrize("mic", ["mic1", "mic2"])
def test_vctk_prepare_keeps_one_mic(tmp_path, mic):
    arc = tmp_path / "VCTK-Corpus-0.92.zip"
    with zipfile.ZipFile(arc, "w") as z:  # the real zip has no top-level folder
        for spk in ("p225", "p226"):
            for m in ("mic1", "mic2"):
                z.writestr(f"wav48_silence_trimmed/{spk}/{spk}_001_{m}.flac", audio_bytes(tone(48000, 0.5), 48000, "FLAC"))
            z.writestr(f"txt/{spk}/{spk}_001.txt", "Please call Stella.")
        z.writestr("speaker-info.txt", "ID AGE GENDER")
    rows = vctk.main(["--root", str(tmp_path / "v"), "--archive", str(arc), "--mic", mic, "--quiet"])
    assert sorted(r["path"] for r in rows) == [f"{mic}/p225/p225_001_{mic}.flac", f"{mic}/p226/p226_001_{mic}.flac"]
    assert {r["speaker"] for r in rows} == {"p225", "p226"}
    p = tmp_path / f"v/VCTK-16k/{mic}/p225/p225_001_{mic}.flac"
    assert sf.info(p).samplerate == 16000 and sf.info(p).frames == 8000


def test_local_folder_resample_and_skip_bad(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "ann").mkdir(parents=True); (src / "ben").mkdir()
    sf.write(src / "ann/a.wav", tone(44100, channels=2), 44100)
    sf.write(src / "ben/b.ogg", tone(22050), 22050, format="OGG", subtype="VORBIS")
    (src / "ben/c.wav").write_text("not audio")
    rows = local_folder.main(["--src", str(src), "--resample-to", str(tmp_path / "16k"),
                              "--out", str(tmp_path / "m.jsonl"), "--source", "mine", "--quiet"])
    assert [(r["path"], r["speaker"], r["source"]) for r in rows] == [("16k/ann/a.flac", "ann", "mine"), ("16k/ben/b.flac", "ben", "mine")]
    assert "c.wav" in capsys.readouterr().err
    a = sf.info(tmp_path / "16k/ann/a.flac")
    assert (a.samplerate, a.channels, a.frames) == (16000, 1, 16000)


def test_local_folder_runs_as_a_script(tmp_path):
    (tmp_path / "spk").mkdir()
    sf.write(tmp_path / "spk/x.flac", tone(16000), 16000)
    r = subprocess.run([sys.executable, str(SCRIPTS / "local_folder.py"), "--src", str(tmp_path), "--out", str(tmp_path / "m.csv")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "1 files" in r.stdout and read_manifest(tmp_path / "m.csv")[0]["speaker"] == "spk"


def test_extract_rejects_escaping_members(tmp_path):
    arc = tmp_path / "evil.zip"
    with zipfile.ZipFile(arc, "w") as z: z.writestr("../evil.txt", "x")
    with pytest.raises(ValueError, match="escape"): _common.extract(arc, tmp_path / "out", progress=False)
    assert not (tmp_path / "evil.txt").exists()
    (tmp_path / "plain.bin").write_bytes(b"junk")
    with pytest.raises(ValueError, match="tar or zip"): _common.extract(tmp_path / "plain.bin", tmp_path / "o2", progress=False)


# ---------------------------------------------------------------- download: resume and checksum

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    "Serves PAYLOAD at any path, honouring `Range: bytes=N-` unless the server's `ranges` flag is off."
    def do_GET(self):
        srv, rng = self.server, self.headers.get("Range")
        srv.requests.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng and srv.ranges else 0
        if start >= len(srv.payload) and rng and srv.ranges:
            self.send_response(416); self.send_header("Content-Range", f"bytes */{len(srv.payload)}"); self.end_headers(); return
        body = srv.payload[start:]
        self.send_response(206 if start else 200)
        if start: self.send_header("Content-Range", f"bytes {start}-{len(srv.payload) - 1}/{len(srv.payload)}")
        self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a): pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.payload, srv.ranges, srv.requests = PAYLOAD, True, []
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/data.tar.gz"
    yield srv
    srv.shutdown(); srv.server_close()


def test_download_full(server, tmp_path):
    p = _common.download(server.url, tmp_path / "a.bin", sha256=SHA, timeout=10, progress=False)
    assert p.read_bytes() == PAYLOAD and server.requests == [None]
    _common.download(server.url, p, sha256=SHA, timeout=10, progress=False)  # verified file: no request
    assert len(server.requests) == 1


def test_download_resumes_with_range(server, tmp_path):
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:123_456])
    p = _common.download(server.url, tmp_path / "a.bin", sha256=SHA, timeout=10, progress=False)
    assert p.read_bytes() == PAYLOAD and server.requests == ["bytes=123456-"]
    assert not (tmp_path / "a.bin.part").exists()


def test_download_complete_part_gets_416(server, tmp_path):
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD)
    p = _common.download(server.url, tmp_path / "a.bin", md5=hashlib.md5(PAYLOAD).hexdigest(), timeout=10, progress=False)
    assert p.read_bytes() == PAYLOAD and server.requests == [f"bytes={len(PAYLOAD)}-"]


def test_download_server_without_range_restarts(server, tmp_path):
    server.ranges = False
    (tmp_path / "a.bin.part").write_bytes(PAYLOAD[:1000])
    p = _common.download(server.url, tmp_path / "a.bin", sha256=SHA, timeout=10, progress=False)
    assert p.read_bytes() == PAYLOAD


def test_download_corrupt_part_is_retried_from_scratch(server, tmp_path):
    (tmp_path / "a.bin.part").write_bytes(b"\0" * 5000)
    p = _common.download(server.url, tmp_path / "a.bin", sha256=SHA, timeout=10, progress=False)
    assert p.read_bytes() == PAYLOAD and server.requests == ["bytes=5000-", None]


def test_download_checksum_mismatch(server, tmp_path):
    with pytest.raises(ValueError, match="checksum mismatch.*expected 00"):
        _common.download(server.url, tmp_path / "a.bin", sha256="00" * 32, timeout=10, progress=False)
    assert not (tmp_path / "a.bin").exists() and not (tmp_path / "a.bin.part").exists()
    (tmp_path / "b.bin").write_bytes(b"stale")
    with pytest.raises(ValueError, match="does not match"):
        _common.download(server.url, tmp_path / "b.bin", sha256=SHA, timeout=10, progress=False)


def test_get_archive_downloads_into_root(server, tmp_path):
    args = _common.base_parser("x").parse_args(["--root", str(tmp_path), "--quiet"])
    p = _common.get_archive(args, server.url, sha256=SHA)
    assert p == tmp_path / "downloads/data.tar.gz" and p.read_bytes() == PAYLOAD


def test_published_checksums_are_well_formed():
    for table in (librispeech.SHA256, libritts.SHA256):
        assert set(table) == {"dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360", "train-other-500"}
    for h in [*librispeech.SHA256.values(), *libritts.SHA256.values(), vctk.SHA256]:
        assert len(h) == 64 and int(h, 16) >= 0
