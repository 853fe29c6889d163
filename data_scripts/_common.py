"""Shared steps of the dataset preparation scripts: download (resumable, checksummed), extract,
resample a folder to 16 kHz mono FLAC, and write a manifest with `rotvq_audio.data`."""
from __future__ import annotations

import argparse, hashlib, os, shutil, sys, tarfile, urllib.error, urllib.request, zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from rotvq_audio.data import AUDIO_EXTS, AudioError, audio_info, build_manifest, load_audio, manifest_summary
from rotvq_audio.data import write_manifest as write_rows

CHUNK = 1 << 20


def file_hash(path: str | os.PathLike, algo: str = "sha256") -> str:
    "Hex digest of the file at `path`."
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""): h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, sha256: str | None = None, md5: str | None = None) -> bool:
    "True if `path` matches every checksum given (True when none is given)."
    return all(file_hash(path, algo) == want.lower() for algo, want in (("sha256", sha256), ("md5", md5)) if want)


def _fetch(url: str, part: Path, timeout: float, progress: bool) -> None:
    "Append the missing tail of `url` to `part`, restarting from zero when the server ignores Range."
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416: return  # nothing after `have`: the partial file is already complete
        raise
    with resp:
        if have and resp.status != 206: have = 0  # server sent the whole file, not the tail
        total = resp.headers.get("Content-Length")
        total = int(total) + have if total is not None else None
        with open(part, "ab" if have else "wb") as f, \
             tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=part.name[:-5], disable=not progress) as bar:
            for block in iter(lambda: resp.read(CHUNK), b""):
                f.write(block); bar.update(len(block))


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
             timeout: float = 60, progress: bool = True) -> Path:
    """Download `url` to `dest`, resuming a previous `dest.part` with an HTTP Range request, and verify the checksum.

    A finished `dest` that matches is kept. If a resumed download fails the checksum (the partial file was
    corrupt), it is retried once from scratch; a second mismatch raises `ValueError` and leaves no file behind."""
    dest = Path(dest); dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if verify(dest, sha256, md5): return dest
        raise ValueError(f"{dest} exists but does not match the published checksum; delete it to download again")
    part = dest.with_name(dest.name + ".part")
    for attempt in range(2):
        resumed = part.exists() and part.stat().st_size > 0
        _fetch(url, part, timeout, progress)
        if verify(part, sha256, md5):
            os.replace(part, dest); return dest
        got = file_hash(part, "sha256" if sha256 else "md5")
        part.unlink()
        if not resumed: break
    raise ValueError(f"checksum mismatch for {url}: expected {sha256 or md5}, got {got}")


def _safe_target(dest: Path, name: str) -> Path:
    target = (dest / name).resolve()
    if not target.is_relative_to(dest.resolve()): raise ValueError(f"archive member {name!r} would escape {dest}")
    return target


def extract(archive: str | os.PathLike, dest: str | os.PathLike, progress: bool = True) -> Path:
    "Unpack a .tar(.gz/.bz2/.xz) or .zip `archive` into `dest` (skipped if done before), with a progress bar."
    archive, dest = Path(archive), Path(dest)
    done = dest / f".extracted-{archive.name}"
    if done.exists(): return dest
    if not archive.is_file(): raise FileNotFoundError(f"expected an archive, but {archive} does not exist")
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for m in tqdm(z.infolist(), desc=f"extract {archive.name}", unit="file", disable=not progress):
                _safe_target(dest, m.filename); z.extract(m, dest)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t, tqdm(desc=f"extract {archive.name}", unit="file", disable=not progress) as bar:
            for m in t:  # streaming: never lists a multi-GB archive up front
                _safe_target(dest, m.name)
                t.extract(m, dest, filter="data"); bar.update()
    else:
        raise ValueError(f"expected a tar or zip archive, got {archive}")
    done.touch()
    return dest


def _convert_one(job: tuple[Path, Path, int]) -> str | None:
    "Write `src` as 16-bit mono FLAC `dst` at `sr`; returns an error message instead of raising."
    src, dst, sr = job
    try:
        dur, rate, ch = audio_info(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".tmp.flac")
        if rate == sr and ch == 1 and src.suffix.lower() == ".flac": shutil.copyfile(src, tmp)  # already in shape
        else:
            wav = load_audio(src, sr).clamp(-1, 1).numpy()  # resampling can overshoot full scale slightly
            sf.write(tmp, wav, sr, subtype="PCM_16", format="FLAC")
        os.replace(tmp, dst)  # an interrupted run never leaves a half-written FLAC behind
    except AudioError as e:
        return str(e)
    return None


def resample_folder(src: str | os.PathLike, dst: str | os.PathLike, sample_rate: int = 16000,
                    keep: Callable[[Path], bool] | None = None, copy_exts: Iterable[str] = (".txt",),
                    jobs: int = 1, progress: bool = True) -> list[Path]:
    """Mirror every audio file under `src` (for which `keep(relpath)` holds) as mono FLAC at `sample_rate`
    under `dst`, copying side files such as transcripts. Files already converted are skipped (resumable).
    Unreadable files are reported and skipped. Returns the FLAC files written or found."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir(): raise FileNotFoundError(f"expected a folder of audio, but {src} does not exist")
    todo, out, copy_exts = [], [], {e.lower() for e in copy_exts}
    for p in sorted(src.rglob("*")):
        if not p.is_file(): continue
        rel = p.relative_to(src)
        if p.suffix.lower() in AUDIO_EXTS and (keep is None or keep(rel)):
            target = (dst / rel).with_suffix(".flac"); out.append(target)
            if not target.exists(): todo.append((p, target, sample_rate))
        elif p.suffix.lower() in copy_exts and not (dst / rel).exists():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True); shutil.copyfile(p, dst / rel)
    bar = dict(total=len(todo), desc=f"resample to {sample_rate} Hz", unit="file", disable=not progress)
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as ex: errors = list(tqdm(ex.map(_convert_one, todo, chunksize=16), **bar))
    else:
        errors = [_convert_one(j) for j in tqdm(todo, **bar)]
    bad = [e for e in errors if e]
    if bad:
        print(f"skipped {len(bad)} unreadable file(s); first: {bad[0]}", file=sys.stderr)
        bad_targets = {j[1] for j, e in zip(todo, errors) if e}
        out = [p for p in out if p not in bad_targets]
    return out


def make_manifest(root: str | os.PathLike, out: str | os.PathLike, speaker_from="parent", **extra) -> list[dict]:
    "Manifest of the audio under `root` written to `out` (paths relative to its folder), plus constant columns `extra`."
    rows = build_manifest(root, None, speaker_from)
    rel = lambda p: Path(os.path.relpath(Path(root).resolve() / p, Path(out).resolve().parent)).as_posix()
    rows = [{**r, "path": rel(r["path"]), **extra} for r in rows]
    write_rows(rows, out)
    print(f"wrote {out}: {manifest_summary(rows)}")
    return rows


def base_parser(description: str, subsets: Iterable[str] | None = None, default_subset: str | None = None):
    "Argument parser with the options every preparation script shares."
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--root", type=Path, required=True, help="working folder: downloads/, raw/ and the 16 kHz output")
    if subsets:
        ap.add_argument("--subset", choices=list(subsets), default=default_subset,
                        help=f"subset to prepare (default {default_subset}); run once per subset")
    ap.add_argument("--archive", type=Path, help="prepare from this existing archive instead of downloading")
    ap.add_argument("--skip-download", action="store_true", help="use the archive already in ROOT/downloads")
    ap.add_argument("--sample-rate", type=int, default=16000, help="output sample rate")
    ap.add_argument("--jobs", type=int, default=1, help="parallel conversion processes")
    ap.add_argument("--clean", action="store_true", help="delete the extracted originals after conversion")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    return ap


def get_archive(args, url: str, sha256: str | None = None, md5: str | None = None) -> Path:
    "Archive for `url`: `--archive`, else ROOT/downloads/<name>, downloaded unless `--skip-download`."
    if args.archive is not None:
        if not args.archive.is_file(): raise FileNotFoundError(f"--archive {args.archive} does not exist")
        return args.archive
    dest = args.root / "downloads" / url.rsplit("/", 1)[-1]
    if args.skip_download:
        if not dest.is_file(): raise FileNotFoundError(f"--skip-download given but {dest} does not exist")
        return dest
    return download(url, dest, sha256=sha256, md5=md5, progress=not args.quiet)


def prepare(args, archive: Path, find_src: Callable[[Path], Path], out_dir: Path, manifest: Path,
            speaker_from="parent", keep: Callable[[Path], bool] | None = None, **extra) -> list[dict]:
    """Extract `archive` under ROOT/raw, convert the folder `find_src(raw)` into `out_dir`, write `manifest`.
    Each step resumes: extraction is skipped when done, converted files are not redone."""
    raw = extract(archive, args.root / "raw", progress=not args.quiet)
    src = find_src(raw)
    if not src.is_dir(): raise FileNotFoundError(f"expected {src} inside {archive}; is it the right archive?")
    resample_folder(src, out_dir, args.sample_rate, keep=keep, jobs=args.jobs, progress=not args.quiet)
    rows = make_manifest(out_dir, manifest, speaker_from, **extra)
    if args.clean:
        shutil.rmtree(src); (raw / f".extracted-{archive.name}").unlink(missing_ok=True)
    return rows
