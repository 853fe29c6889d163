"""The long-horizon pair of the rotation-trick study: the winning recipe (`small`) trained twice from the same seed and
data order, once with the rotation trick and once with the straight-through estimator, each for 4 CPU-hours.

    .venv/bin/python bench/long_pair.py start       # start or resume both arms in the background (one thread each)
    .venv/bin/python bench/long_pair.py finish      # once both have stopped: the arm behind trains on to the other's last step
    .venv/bin/python bench/long_pair.py status      # step, CPU-hours and last validation of each arm
    .venv/bin/python bench/long_pair.py snapshot    # both arms' generator + discriminators at their newest common step
    .venv/bin/python bench/long_pair.py score       # both arms' newest common checkpoint on all of dev -> curve.json, curve.png
    .venv/bin/python bench/long_pair.py score --history --every 1000   # and the committed snapshots, and kept checkpoints

The arms differ in `codec.quantizer.grad` only (the trainer seeds every step from (seed, step), so both draw the same
crops in the same order). Run folders: ~/.cache/rotvq/pair/ARM (--root). On a fresh machine without them, both arms
continue from their committed snapshots (bench/results/long_pair/ARM/snapshot), which are always taken at the same
step, as fine-tunes with fresh optimisers: the two arms are treated alike, so the pair stays a pair. Scores and
the curve go to bench/results/long_pair/.
"""
import argparse, json, os, shutil, subprocess, sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recipe import continued_from, records, start  # where a run continued from; its log records; start in the background

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "long_pair"
ARMS = ("rotation", "ste")
PER_CLIP = ("pesq_wb", "stoi", "si_sdr")  # the per-clip scores a point keeps, clips in the order of their paths
COMMON = {"num_workers": 0, "val_every": 500, "ckpt_every": 250, "keep_ckpts": 12, "log_every": 50, "seed": 0}


def cpu_hours_at(run, ckpt):
    "CPU-hours of an arm at its checkpoint `ckpt`, the snapshot it continued from included (the trainer's own count)."
    import torch
    return continued_from(run)[0] + torch.load(ckpt / "state.pt", weights_only=True, map_location="cpu")["cpu_seconds"] / 3600


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
        run, snap, config, extra = a.root / arm, RESULTS / arm / "snapshot", "small", []
        if not (run / "log.jsonl").exists() and (snap / "model.safetensors").exists():
            from rotvq_audio.config import load_config
            prog = json.loads((snap / "progress.json").read_text())
            run.mkdir(parents=True, exist_ok=True); (run / "continues.json").write_text(json.dumps(prog) + "\n")
            extra = ["--init", str(snap), "--loss.adv_start_step", str(max(0, load_config("small").loss.adv_start_step - prog["step"]))]
            print(f"{arm}: continues {snap} at step {prog['step']} ({prog['cpu_hours_at_last_log']:.2f} CPU-h) with a fresh optimiser")
        elif (run / "continues.json").exists(): config = str(run)  # a continuation resumes with its own config, not `small`'s
        budget = a.cpu_minutes - 60 * continued_from(run)[0]
        cmd = [sys.executable, "-m", "rotvq_audio.train", config, "--out", str(run), "--resume", "--threads", "1",
               "--max_cpu_minutes", str(max(0.0, budget)), "--codec.quantizer.grad", arm, *extra]
        for k, v in COMMON.items(): cmd += [f"--{k}", str(v)]
        start(cmd, run)


def cmd_finish(a):
    "Once both arms have stopped on their CPU budget: the one behind trains on to the other's final step (`--stop_at`)."
    from rotvq_audio.checkpoint import RunLocked, lock_run
    for arm in ARMS:
        try: lock_run(a.root / arm).close()
        except RunLocked: sys.exit(f"long_pair.py: {arm} is still training; finish once both arms have stopped")
    ends = {arm: continued_from(a.root / arm)[1] + max(ckpt_steps(a.root / arm)) for arm in ARMS}
    last = max(ends.values())
    for arm in (arm for arm in ARMS if ends[arm] < last):
        run = a.root / arm
        start([sys.executable, "-m", "rotvq_audio.train", str(run), "--out", str(run), "--resume", "--threads", "1",
               "--stop_at", str(last - continued_from(run)[1])], run)
    print(f"the pair ends at step {last}: " + ", ".join(f"{arm} from step {ends[arm]}" for arm in ARMS))


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
        dst = RESULTS / arm / "snapshot"; shutil.rmtree(dst, ignore_errors=True); dst.mkdir(parents=True)
        for f in ("config.json", "model.safetensors"): shutil.copy2(ckpt / "generator" / f, dst / f)
        shutil.copy2(ckpt / DISCRIMINATORS_NAME, dst / DISCRIMINATORS_NAME); shutil.copy2(ckpt / "train_config.json", dst)
        prog = {"step": step, "cpu_hours_at_last_log": round(cpu_hours_at(a.root / arm, ckpt), 4)}
        (dst / "progress.json").write_text(json.dumps(prog) + "\n")
        print(f"{arm}: {ckpt} -> {dst} ({prog})")


def snapshot_history(arm):
    "(revision, step, CPU-hours) of every committed snapshot of an arm, from git history, oldest first."
    rel = (RESULTS / arm / "snapshot" / "progress.json").relative_to(ROOT)
    git = lambda *args: subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True).stdout
    out = []
    for rev in git("log", "--format=%H", "--", str(rel)).split():
        try: prog = json.loads(git("show", f"{rev}:{rel}"))
        except subprocess.CalledProcessError: continue  # the commit that removed it
        out.append((rev, prog["step"], prog["cpu_hours_at_last_log"]))
    return out[::-1]


def checkout_snapshot(rev, arm, dst):
    "The generator of an arm's snapshot at git revision `rev`, written to `dst` (a save_pretrained folder)."
    dst.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "model.safetensors"):
        rel = (RESULTS / arm / "snapshot" / f).relative_to(ROOT)
        (dst / f).write_bytes(subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{rel}"], check=True, capture_output=True).stdout)
    return dst


def score_point(arm, gen, step, cpu_hours, a, qclips):
    "One point of the curve: the generator folder `gen` on all of dev at 1.5 / 3 / 6 kbps, and its quantization errors."
    from rotvq_audio.codec import CodecModel
    from rotvq_audio.evaluate import quantization_error, run_eval
    rep = run_eval(str(gen), "dev", out=str(a.root / "eval" / arm), max_files=a.max_files, workers=a.workers, quiet=True)
    by = {f"{b['kbps']:g}": {k: round(v, 4) for k, v in b["means"].items()} | {"effective_kbps": b["effective_kbps"],
          "utilization": round(sum(b["codebook"]["utilization"]) / len(b["codebook"]["utilization"]), 4)} for b in rep["bitrates"]}
    qe = quantization_error(CodecModel.from_pretrained(gen), qclips)
    q = {k: [round(v, 5) for v in getattr(qe, k)] for k in ("absolute", "relative", "latent_residual")}
    print(f"{arm} at step {step}: " + ", ".join(f"{k} kbps PESQ-WB {by[k]['pesq_wb']:.3f} STOI {by[k]['stoi']:.3f}" for k in ("1.5", "3", "6"))
          + f"; stage 1 quantization error {q['absolute'][0]:.3f} ({q['relative'][0]:.3f} of its input's energy)", flush=True)
    clips = {f"{b['kbps']:g}": {m: [round(r[m], 4) for r in sorted(b["rows"], key=lambda r: r["item"])] for m in PER_CLIP}
             for b in rep["bitrates"]}  # for paired differences over the dev clips
    return {"arm": arm, "step": step, "cpu_hours": round(cpu_hours, 3), "n_files": rep["n_files"], **by, "quant_error": q,
            "per_clip": clips}


def to_score(a, points):
    "(arm, step, CPU-hours, generator folder or git revision) of each point `score` was asked for and has not scored yet."
    done = {(p["arm"], p["step"]) for p in points}
    todo = []
    if a.history:  # the committed snapshots: points from sessions whose run folders are gone
        todo += [(arm, step, cpu, rev) for arm in ARMS for rev, step, cpu in snapshot_history(arm)]
    newest, _ = common_step(a.root)
    for arm in ARMS:
        step0 = continued_from(a.root / arm)[1]
        for s, ckpt in ckpt_steps(a.root / arm).items():
            step = step0 + s
            if step == newest or (a.every and step % a.every == 0):
                todo.append((arm, step, cpu_hours_at(a.root / arm, ckpt), ckpt / "generator"))
    return [t for t in dict(((arm, step), (arm, step, cpu, src)) for arm, step, cpu, src in todo).values() if (t[0], t[1]) not in done]


def cmd_score(a):
    "Points of the curve on all of dev (rotvq-eval) -> curve.json, then the plot: by default both arms' newest common checkpoint."
    import tempfile
    from rotvq_audio.study import dev_clips
    RESULTS.mkdir(parents=True, exist_ok=True)
    points = json.loads((RESULTS / "curve.json").read_text()) if (RESULTS / "curve.json").exists() else []
    if not a.plot_only:
        clips = dev_clips()  # the study's: the first 3 s of every dev clip
        for arm, step, cpu, src in sorted(to_score(a, points), key=lambda t: (t[1], t[0])):
            with tempfile.TemporaryDirectory() as tmp:
                gen = checkout_snapshot(src, arm, Path(tmp)) if isinstance(src, str) else src
                points.append(score_point(arm, gen, step, cpu, a, clips))
            points.sort(key=lambda p: (p["arm"], p["step"]))
            (RESULTS / "curve.json").write_text(json.dumps(points, indent=1) + "\n")  # after each point: an interrupted score keeps the rest
    plot(points, a.root)


def plot(points, root):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.2))
    for arm, color in zip(ARMS, ("tab:blue", "tab:orange")):
        ps = [p for p in points if p["arm"] == arm]
        step0 = continued_from(root / arm)[1]
        val = [r for r in records(root / arm) if r.get("event") == "val"]  # the training log's validation: PESQ and STOI only
        for ax, (kbps, metric) in zip(axes[0], (("6", "pesq_wb"), ("1.5", "pesq_wb"), ("6", "si_sdr"))):
            ax.plot([p["step"] for p in ps], [p[kbps][metric] for p in ps], "o-", color=color, label=f"{arm}, all of dev")
            title = f"{metric} at {kbps} kbps"
            if metric != "si_sdr":
                ax.plot([step0 + r["step"] for r in val], [r.get(f"val_{kbps}kbps/{metric}", float("nan")) for r in val], ":", color=color, alpha=0.6)
                title += " (dotted: 8-clip validation)"
            ax.set(xlabel="step", ylabel=f"{metric} at {kbps} kbps", title=title)
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
    sub.add_parser("start"); sub.add_parser("finish"); sub.add_parser("status"); sub.add_parser("snapshot")
    s = sub.add_parser("score"); s.add_argument("--workers", type=int, default=2); s.add_argument("--max_files", type=int, default=None)
    s.add_argument("--plot_only", action="store_true")
    s.add_argument("--every", type=int, default=0, help="also every kept checkpoint whose step is a multiple of this")
    s.add_argument("--history", action="store_true", help="also every committed snapshot (git history) not scored yet")
    a = p.parse_args()
    {"start": cmd_start, "finish": cmd_finish, "status": cmd_status, "snapshot": cmd_snapshot, "score": cmd_score}[a.cmd](a)
