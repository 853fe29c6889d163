"""Recipe pilots at equal CPU time: train candidate recipes of the `small` codec, then score them side by side.

    .venv/bin/python bench/recipe.py list                    # the candidates and their overrides
    .venv/bin/python bench/recipe.py train NAME [NAME ...]   # start or --resume each in the background (one thread each)
    .venv/bin/python bench/recipe.py status                  # step, CPU-hours and last validation of every run
    .venv/bin/python bench/recipe.py score [NAME ...]        # rotvq-eval on all of dev, table + plot in bench/results/recipe/

Every candidate is `rotvq-train small` plus the overrides below, trained to the same CPU budget (`--max_cpu_minutes`,
counted in the training process over all resumes), one torch thread, no loader workers, run folder
~/.cache/rotvq/recipe/NAME (--root). `train` is safe to repeat: a finished run stops at once, a stopped one resumes.
"""
import argparse, json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "recipe"
RUNS = Path(os.environ.get("ROTVQ_RECIPE_RUNS", Path.home() / ".cache" / "rotvq" / "recipe"))

# Fixes 1 (codebooks) and the float32 iSTFT head are in the code; each candidate names what it changes on top.
FIXED = {"loss.complex_stft": 45}
CANDIDATES = {
    "fixed": ("fixes 1+2: the learning codebooks, compressed-complex-STFT MSE x45", FIXED),
    "euclid": ("fixed + Euclidean codes (no unit-norm codes: lambda = |q|/|e| varies)",
               FIXED | {"codec.quantizer": {"grad": "rotation", "lookup": "euclidean"}}),
    "gan1k": ("fixed + adversarial phase from step 1000 (not 4000)", FIXED | {"loss.adv_start_step": 1000}),
    "drop0": ("fixed + no quantizer dropout", FIXED | {"codec.quantizer_dropout": 0.0}),
    "wide": ("fixed + a wider decoder (384, 192), 4 + 4 blocks",
             FIXED | {"codec.decoder_dims": [384, 192], "codec.decoder_depths": [4, 4]}),
    "ste": ("fixed with the straight-through estimator instead of the rotation trick",
            FIXED | {"codec.quantizer": {"grad": "ste", "lookup": "cosine"}}),
}
COMMON = {"num_workers": 0, "val_every": 500, "ckpt_every": 250, "log_every": 50}


def train_command(name, cpu_minutes):
    _, over = CANDIDATES[name]
    opts = " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in over.items())
    cmd = [sys.executable, "-m", "rotvq_audio.train", "small", "--out", str(RUNS / name), "--resume", "--threads", "1",
           "--max_cpu_minutes", str(cpu_minutes), "--opts", opts]
    for k, v in COMMON.items(): cmd += [f"--{k}", str(v)]
    return cmd


def last_records(run):
    "The newest train and val records of a run's log."
    train = val = None
    log = run / "log.jsonl"
    if log.exists():
        for line in log.read_text().splitlines():
            try: r = json.loads(line)
            except json.JSONDecodeError: continue
            if r.get("event") == "train": train = r
            if r.get("event") == "val": val = r
    return train, val


def cmd_train(a):
    for name in a.names:
        if name not in CANDIDATES: sys.exit(f"recipe.py: unknown candidate {name!r}; expected one of {sorted(CANDIDATES)}")
        (RUNS / name).mkdir(parents=True, exist_ok=True)
        cmd = train_command(name, a.cpu_minutes)
        with open(RUNS / name / "train.out", "a") as out:
            p = subprocess.Popen(["nohup", *cmd], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                 env=os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        print(f"{name}: pid {p.pid}: {' '.join(cmd)}")


def cmd_status(a):
    for name in CANDIDATES:
        train, val = last_records(RUNS / name)
        if train is None: continue
        v = {k.split("/")[0][4:] + " " + k.split("/")[1]: round(x, 3) for k, x in (val or {}).items()
             if "/" in k and k.split("/")[1] in ("pesq_wb", "stoi")}
        print(f"{name}: step {train['step']}, {train['cpu_hours']:.2f} CPU-h, mel {train.get('train/mel', float('nan')):.3f}, {v}")


def cmd_list(a):
    for name, (what, over) in CANDIDATES.items(): print(f"{name}: {what}\n    {' '.join(train_command(name, a.cpu_minutes)[2:])}")


def cmd_score(a):
    from rotvq_audio.evaluate import evaluate_model  # noqa: imported late so `list`/`train` start fast
    raise NotImplementedError


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu_minutes", type=float, default=120, help="CPU budget of each candidate (default: 2 CPU-hours)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list"); sub.add_parser("status")
    t = sub.add_parser("train"); t.add_argument("names", nargs="+")
    s = sub.add_parser("score"); s.add_argument("names", nargs="*")
    a = p.parse_args()
    {"list": cmd_list, "train": cmd_train, "status": cmd_status, "score": cmd_score}[a.cmd](a)
