#!/usr/bin/env python
"""Combine prepared manifests into the `manifest.csv` with `train`/`dev` splits that `rotvq-train` reads.

    python data_scripts/make_splits.py --train /data/librispeech/LibriSpeech-16k/train-clean-100.csv \\
        --dev /data/librispeech/LibriSpeech-16k/dev-clean.csv --out /data/librispeech/LibriSpeech-16k/manifest.csv
    rotvq-train small --data.root /data/librispeech/LibriSpeech-16k

Rows keep their columns; `split` becomes `train` or `dev` and `path` is rewritten relative to the output folder,
so the folder can move as a whole. A clip listed in both splits, or a speaker in both, is an error: dev must hold
out whole speakers."""
import argparse, os, sys
from pathlib import Path
from rotvq_audio.data import read_manifest, write_manifest


def make_splits(train: list, dev: list, out) -> list[dict]:
    "Rows of the `train` and `dev` manifests, relabelled and written to `out` with paths relative to its folder."
    out = Path(out).resolve()
    rows = [r | {"split": split} for split, files in (("train", train), ("dev", dev)) for f in files for r in read_manifest(f)]
    if not any(r["split"] == "train" for r in rows) or not any(r["split"] == "dev" for r in rows):
        raise ValueError("expected at least one clip in each of train and dev")
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "dev")}
    if both := {r["path"] for r in by_split["train"]} & {r["path"] for r in by_split["dev"]}:
        raise ValueError(f"{len(both)} clips are in both train and dev, e.g. {sorted(both)[0]}")
    spk = lambda s: {r.get("speaker") for r in by_split[s] if r.get("speaker")}
    if shared := spk("train") & spk("dev"):
        raise ValueError(f"{len(shared)} speakers are in both train and dev (dev must hold out whole speakers), e.g. {sorted(shared)[:3]}")
    for r in rows: r["path"] = os.path.relpath(r["path"], out.parent)
    write_manifest(rows, out)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", nargs="+", required=True, help="manifests whose clips train")
    p.add_argument("--dev", nargs="+", required=True, help="manifests whose clips validate (other speakers)")
    p.add_argument("--out", required=True, help="the manifest.csv to write; its folder becomes --data.root")
    a = p.parse_args(argv)
    try: rows = make_splits(a.train, a.dev, a.out)
    except (ValueError, FileNotFoundError) as e: sys.exit(f"make_splits: {e}")
    n = {s: sum(r["split"] == s for r in rows) for s in ("train", "dev")}
    print(f"wrote {a.out}: {n['train']} train clips, {n['dev']} dev clips; train with --data.root {Path(a.out).parent}")


if __name__ == "__main__": main()
