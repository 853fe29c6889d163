"""The long-horizon pair of the rotation-trick study: the winning recipe (`small`) trained twice from the same seed and
data order, once with the rotation trick and once with the straight-through estimator, each for 4 CPU-hours.

    .venv/bin/python bench/long_pair.py start       # start or resume both arms in the background (one thread each)
    .venv/bin/python bench/long_pair.py status      # step, CPU-hours and last validation of each arm
    .venv/bin/python bench/long_pair.py snapshot    # both arms' generator + discriminators at their newest common step
    .venv/bin/python bench/long_pair.py score       # both arms' newest common checkpoint on all of dev -> curve.json, curve.png

The arms differ in `codec.quantizer.grad` only (the trainer seeds every step from (seed, step), so both draw the same
crops in the same order). Run folders: ~/.cache/rotvq/pair/ARM (--root). On a fresh machine without them, both arms
continue from their committed snapshots (bench/results/long_pair/ARM/snapshot), which are always taken at the same
step, as fine-tunes with fresh optimisers: the two arms are treated alike, so the pair stays a pair. Scores and
the curve go to bench/results/long_pair/.
"""
import argparse, json, os, shutil, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe import continued_from, records, start  # where a run continued from; its log records; start in the background

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "long_pair"
ARMS = ("rotation", "ste")
COMMON = {"num_workers": 0, "val_every": 500, "ckpt_every": 250, "keep_ckpts": 12, "log_every": 50, "seed": 0}


def cpu_hours_at(run, step):
    "CPU-hours the arm had used at `step` (its own steps, not counting a snapshot it continued from), from its log."
    cpu = 0.0
    for r in records(run):
        if r.get("event") == "train" and r["step"] <= step: cpu = r["cpu_hours"]
    return cpu


def ckpt_steps(run):
    "Steps (the run's own) of the arm's complete checkpoints."
    from rotvq_audio.checkpoint import checkpoints
    return {int(c.name[5:]): c for c in checkpoints(run) if c.name.startswith("step-")}


def common_step(root):
    "The newest step (counted from scratch) at which both arms have a checkpoint, and those checkpoints."
    steps = {arm: {continued_from(root / arm)[1] + s: c for s, c in ckpt_steps(root / arm).items()} for arm in ARMS}
    both = set(steps[ARMS[0]]) & set(steps[ARMS[1]])
    if not both: sys.exit(f"long_pair.py: the arms have no checkpoint at a common step yet ({root})")
    s = max(both)
    return s, {arm: steps[arm][s] for arm in ARMS}


def cmd_start(a):
    for arm in ARMS:
        run, snap, budget, extra = a.root / arm, RESULTS / arm / "snapshot", a.cpu_minutes, []
        if not (run / "log.jsonl").exists() and (snap / "model.safetensors").exists():
            from rotvq_audio.config import load_config
            prog = json.loads((snap / "progress.json").read_text())
            run.mkdir(parents=True, exist_ok=True); (run / "continues.json").write_text(json.dumps(prog) + "\n")
            budget -= 60 * prog["cpu_hours_at_last_log"]
            extra = ["--init", str(snap), "--loss.adv_start_step", str(max(0, load_config("small").loss.adv_start_step - prog["step"]))]
            print(f"{arm}: continues {snap} at step {prog['step']} ({prog['cpu_hours_at_last_log']:.2f} CPU-h) with a fresh optimiser")
        cmd = [sys.executable, "-m", "rotvq_audio.train", "small", "--out", str(run), "--resume", "--threads", "1",
               "--max_cpu_minutes", str(max(0.0, budget)), "--codec.quantizer.grad", arm, *extra]
        for k, v in COMMON.items(): cmd += [f"--{k}", str(v)]
        start(cmd, run)


def cmd_status(a):
    for arm in ARMS:
        run = a.root / arm
        train = next((r for r in reversed(records(run)) if r.get("event") == "train"), None)
        val = next((r for r in reversed(records(run)) if r.get("event") == "val"), {})
        if train is None: print(f"{arm}: not started"); continue
        cpu0, step0 = continued_from(run)
        v = {k[4:]: round(x, 3) for k, x in val.items() if k.startswith("val_") and k.split("/")[1] in ("pesq_wb", "stoi")}
        print(f"{arm}: step {step0 + train['step']}, {cpu0 + train['cpu_hours']:.2f} CPU-h, mel {train.get('train/mel', float('nan')):.3f}, {v}")


def cmd_snapshot(a):
    "Both arms' generator + discriminators at their newest common step, for a fresh machine."
    from rotvq_audio.checkpoint import DISCRIMINATORS_NAME
    step, ckpts = common_step(a.root)
    for arm, ckpt in ckpts.items():
        cpu0, step0 = continued_from(a.root / arm)
        dst = RESULTS / arm / "snapshot"; shutil.rmtree(dst, ignore_errors=True); dst.mkdir(parents=True)
        for f in ("config.json", "model.safetensors"): shutil.copy2(ckpt / "generator" / f, dst / f)
        shutil.copy2(ckpt / DISCRIMINATORS_NAME, dst / DISCRIMINATORS_NAME); shutil.copy2(ckpt / "train_config.json", dst)
        prog = {"step": step, "cpu_hours_at_last_log": round(cpu0 + cpu_hours_at(a.root / arm, step - step0), 4)}
        (dst / "progress.json").write_text(json.dumps(prog) + "\n")
        print(f"{arm}: {ckpt} -> {dst} ({prog})")


def cmd_score(a):
    "Both arms at their newest common checkpoint, rotvq-eval on all of dev; the points go to curve.json, then the plot."
    from rotvq_audio.codec import CodecModel
    from rotvq_audio.evaluate import quantization_error, run_eval
    from rotvq_audio.study import dev_clips
    RESULTS.mkdir(parents=True, exist_ok=True)
    points = json.loads((RESULTS / "curve.json").read_text()) if (RESULTS / "curve.json").exists() else []
    if not a.plot_only:
        step, ckpts = common_step(a.root)
        clips = dev_clips()  # the study's: the first 3 s of every dev clip
        for arm, ckpt in ckpts.items():
            cpu0, step0 = continued_from(a.root / arm)
            rep = run_eval(str(ckpt / "generator"), "dev", out=str(a.root / "eval" / arm), max_files=a.max_files, workers=a.workers, quiet=True)
            by = {f"{b['kbps']:g}": {k: round(v, 4) for k, v in b["means"].items()} | {"effective_kbps": b["effective_kbps"],
                  "utilization": round(sum(b["codebook"]["utilization"]) / len(b["codebook"]["utilization"]), 4)} for b in rep["bitrates"]}
            qe = quantization_error(CodecModel.from_pretrained(ckpt / "generator"), clips)
            q = {k: [round(v, 5) for v in getattr(qe, k)] for k in ("absolute", "relative", "latent_residual")}
            points = [p for p in points if (p["arm"], p["step"]) != (arm, step)] + [
                {"arm": arm, "step": step, "cpu_hours": round(cpu0 + cpu_hours_at(a.root / arm, step - step0), 3), "n_files": rep["n_files"],
                 **by, "quant_error": q}]
            print(f"{arm} at step {step}: " + ", ".join(f"{k} kbps PESQ-WB {by[k]['pesq_wb']:.3f} STOI {by[k]['stoi']:.3f}" for k in ("1.5", "3", "6"))
                  + f"; stage 1 quantization error {q['absolute'][0]:.3f} ({q['relative'][0]:.3f} of its input's energy)", flush=True)
        points.sort(key=lambda p: (p["arm"], p["step"]))
        (RESULTS / "curve.json").write_text(json.dumps(points, indent=1) + "\n")
    plot(points, a.root)


def plot(points, root):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.2))
    for arm, color in zip(ARMS, ("tab:blue", "tab:orange")):
        ps = [p for p in points if p["arm"] == arm]
        for ax, (kbps, metric) in zip(axes[0], (("6", "pesq_wb"), ("1.5", "pesq_wb"), ("6", "si_sdr"))):
            ax.plot([p["step"] for p in ps], [p[kbps][metric] for p in ps], "o-", color=color, label=f"{arm}, all of dev")
            cpu0, step0 = continued_from(root / arm)
            val = [r for r in records(root / arm) if r.get("event") == "val"]
            if metric != "si_sdr":
                ax.plot([step0 + r["step"] for r in val], [r.get(f"val_{kbps}kbps/{metric}", float("nan")) for r in val], ":", color=color, alpha=0.6)
            ax.set(xlabel="step", ylabel=f"{metric} at {kbps} kbps", title=f"{metric} at {kbps} kbps (dots: 8-clip validation)")
        qs = [p for p in ps if "quant_error" in p]  # points scored before the quantization errors were recorded have none
        for ax, (y, label) in zip(axes[1], ((lambda p: p["6"]["utilization"], "codebook utilization at 6 kbps (mean of stages)"),
                                            (lambda p: p["quant_error"]["relative"][0], "stage-1 error / its input's energy"),
                                            (lambda p: p["quant_error"]["absolute"][0] / p["quant_error"]["relative"][0], "stage-1 input energy ‖z‖²"))):
            ax.plot([p["step"] for p in qs], [y(p) for p in qs], "o-", color=color, label=arm)
            ax.set(xlabel="step", title=label)
    for ax in axes.flat: ax.grid(alpha=0.3); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(RESULTS / "curve.png", dpi=110); plt.close(fig)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=Path, default=Path(os.environ.get("ROTVQ_PAIR_RUNS", Path.home() / ".cache" / "rotvq" / "pair")))
    p.add_argument("--cpu_minutes", type=float, default=240, help="CPU budget of each arm (default: 4 CPU-hours)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("start"); sub.add_parser("status"); sub.add_parser("snapshot")
    s = sub.add_parser("score"); s.add_argument("--workers", type=int, default=2); s.add_argument("--max_files", type=int, default=None)
    s.add_argument("--plot_only", action="store_true")
    a = p.parse_args()
    {"start": cmd_start, "status": cmd_status, "snapshot": cmd_snapshot, "score": cmd_score}[a.cmd](a)
