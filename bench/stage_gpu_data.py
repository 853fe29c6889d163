"""Copy a size-bounded subset of the shared speech corpus into `.gpu/speech` (gitignored) for a GPU session.

The device tool carries at most 64 MiB of working tree, so the GPU machine cannot see `../shared/speech`.
This keeps every non-LibriSpeech train clip (few and small) and as many LibriSpeech clips as fit, one per
speaker first, so speaker variety survives the cut. Sources in EXCLUDE (band-limited G.722) are left out.

    python bench/stage_gpu_data.py --mib 44 --dev_clips 8     # then run with ROTVQ_SPEECH=.gpu/speech
"""
import csv, os, random, shutil
from pathlib import Path
from fastcore.script import call_parse

EXCLUDE = {"asterisk_g722"}

@call_parse
def main(src:str=None,        # corpus folder; default $ROTVQ_SPEECH or ../shared/speech
         dst:str=".gpu/speech", # where the subset goes
         mib:float=44.0,      # size budget for the train clips, MiB
         dev_clips:int=8,     # dev clips to copy (for a quick validation there)
         seed:int=0):
    "Stage a speaker-diverse train subset (and a few dev clips) of the corpus under `dst`."
    from rotvq_audio.data import default_speech_dir
    src = Path(src) if src else default_speech_dir()
    rows = list(csv.DictReader(open(src / "manifest.csv")))
    train = [r for r in rows if r["split"] == "train" and r["source"] not in EXCLUDE]
    rng = random.Random(seed); rng.shuffle(train)
    seen, first, rest = set(), [], []
    for r in sorted(train, key=lambda r: r["source"] == "librispeech"):  # small sources first
        (rest if r["speaker"] in seen else first).append(r); seen.add(r["speaker"])
    budget, picked = mib * 2**20, []
    for r in first + rest:
        size = (src / r["path"]).stat().st_size
        if size > budget: continue
        budget -= size; picked.append(r)
    dev = [r for r in rows if r["split"] == "dev"][:dev_clips]
    dst = Path(dst)
    if dst.exists(): shutil.rmtree(dst)
    for r in picked + dev:
        (dst / r["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / r["path"], dst / r["path"])
    with open(dst / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(picked + dev)
    mins = sum(float(r["duration_s"]) for r in picked) / 60
    print(f"staged {len(picked)}/{len(train)} train clips ({mins:.1f} min, {len({r['speaker'] for r in picked})} speakers, "
          f"{(mib * 2**20 - budget) / 2**20:.1f} MiB) and {len(dev)} dev clips in {dst}")
