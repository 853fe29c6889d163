"""Recipe pilots at equal CPU time: train candidate recipes of the `small` codec, then score them side by side.

    .venv/bin/python bench/recipe.py list                    # the candidates and their overrides
    .venv/bin/python bench/recipe.py train NAME [NAME ...]   # start or --resume each in the background (one thread each)
    .venv/bin/python bench/recipe.py status                  # step, CPU-hours and last validation of every run
    .venv/bin/python bench/recipe.py score [NAME ...]        # rotvq-eval on all of dev, table + plot in bench/results/recipe/
    .venv/bin/python bench/recipe.py snapshot NAME           # generator + discriminators into bench/results/recipe/NAME/snapshot
    .venv/bin/python bench/recipe.py long                    # the long run: the winner continued with no CPU cap (RUNS/long2)
    .venv/bin/python bench/recipe.py curve [--snapshot DIR]  # score the long run (or a snapshot) on all of dev, add to long2/curve.json + plot

Round one (pilots from scratch, table in bench/results/recipe/) chose `euclid`, whose long run (`long`) is the model
bundled with 0.1.0. Round two (issue 30; table in bench/results/recipe/round2/) starts every candidate from that
model and chose `joint`, continued as `long2`; its steps and CPU-hours count from the 0.1.0 model (17 250 steps,
5.85 CPU-hours before them).

Every candidate is `rotvq-train small` plus the overrides below, trained to the same CPU budget (`--max_cpu_minutes`,
counted in the training process over all resumes), one torch thread, no loader workers, run folder
~/.cache/rotvq/recipe/NAME (--root). `train` is safe to repeat: a finished run stops at once, a stopped one resumes. On a fresh machine without the run
folder, a committed snapshot continues as a fine-tune: `rotvq-train small --init bench/results/recipe/NAME/snapshot`
with the candidate's overrides (fresh optimiser; its progress.json says where it stood).
"""
import argparse, json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "recipe"
RUNS = Path(os.environ.get("ROTVQ_RECIPE_RUNS", Path.home() / ".cache" / "rotvq" / "recipe"))

# Fixes 1 (codebooks) and the float32 iSTFT head are in the code; each candidate names what it changes on top, and
# names the quantizer explicitly, so that a candidate means the same run whatever `small` is today (the pilots' winner,
# Euclidean codes, became `small` after them).
COSINE, EUCLID = {"grad": "rotation", "lookup": "cosine"}, {"grad": "rotation", "lookup": "euclidean"}
FIXED = {"loss.complex_stft": 45, "codec.quantizer": COSINE}
CANDIDATES = {
    "fixed": ("fixes 1+2: the learning codebooks, compressed-complex-STFT MSE x45", FIXED),
    "euclid": ("fixed + Euclidean codes (no unit-norm codes: lambda = |q|/|e| varies)", FIXED | {"codec.quantizer": EUCLID}),
    "euclid-ste": ("euclid with the straight-through estimator instead of the rotation trick",
                   FIXED | {"codec.quantizer": EUCLID | {"grad": "ste"}}),
    "gan1k": ("fixed + adversarial phase from step 1000 (not 4000)", FIXED | {"loss.adv_start_step": 1000}),
    "drop0": ("fixed + no quantizer dropout", FIXED | {"codec.quantizer_dropout": 0.0}),
    "wide": ("fixed + a wider decoder (384, 192), 4 + 4 blocks",
             FIXED | {"codec.decoder_dims": [384, 192], "codec.decoder_depths": [4, 4]}),
    "decay999": ("fixed + codebook EMA decay 0.999 (holds the codes better, follows the encoder 10x slower)",
                 FIXED | {"codec.quantizer": COSINE | {"decay": 0.999}}),
    "ste": ("fixed with the straight-through estimator instead of the rotation trick",
            FIXED | {"codec.quantizer": COSINE | {"grad": "ste"}}),
}
# Round two (issue 30): every candidate starts from the model bundled with 0.1.0 (5.85 CPU-h; its committed snapshot,
# so that a re-bundle does not change what they start from), trains on both corpora, with the discriminators from its
# first step and a cosine schedule sized to end near the 2 CPU-hour budget at each candidate's measured step rate.
BUNDLED_0_1 = "bench/results/recipe/long/snapshot"
MORE = {"data.extra_train": ["speech_extra"], "loss.adv_start_step": 0, "optim.lr": 2e-4}
FROZEN = MORE | {"freeze": "tokenizer"}
CANDIDATES |= {
    "joint": ("round 2: the whole codec trained on (encoder, codebooks, decoder), both corpora", MORE | {"steps": 6000}),
    "frozen": ("round 2: tokenizer frozen, today's decoder trained on, both corpora", FROZEN | {"steps": 6400}),
    "frozen-deep": ("round 2: tokenizer frozen, decoder grown from 3 + 3 to 6 + 6 ConvNeXt blocks (new ones start as identities)",
                    FROZEN | {"codec.decoder_depths": [6, 6], "steps": 5900}),
}
INIT = {name: BUNDLED_0_1 for name in ("joint", "frozen", "frozen-deep")}
# Round one's winner (`euclid`) went on as the run folder `long`, whose snapshot is the model bundled with 0.1.0. Round
# two's winner goes on as `long2`: its pilot folder copied and resumed with no CPU cap and a longer cosine schedule
# (LONG_STEPS: the learning rate rises again from the pilot's floor, a warm restart).
ROUND1_LONG = "long"
WINNER, LONG, LONG_STEPS = "joint", "long2", 16000
COMMON = {"num_workers": 0, "val_every": 500, "ckpt_every": 250, "log_every": 50}


def train_command(name, cpu_minutes, out=None, extra=()):
    "`rotvq-train small` with candidate `name`'s overrides into RUNS/name (or `out`); no CPU cap when `cpu_minutes` is None."
    _, over = CANDIDATES[name]
    cmd = [sys.executable, "-m", "rotvq_audio.train", "small", "--out", str(out or RUNS / name), "--resume", "--threads", "1"]
    if name in INIT and "--init" not in extra: cmd += ["--init", INIT[name]]
    if cpu_minutes is not None: cmd += ["--max_cpu_minutes", str(cpu_minutes)]
    for k, v in over.items(): cmd += [f"--{k}", json.dumps(v, separators=(",", ":"))]
    cmd += list(extra)
    for k, v in COMMON.items(): cmd += [f"--{k}", str(v)]
    return cmd


def start(cmd, run):
    "Run `cmd` in the background (nohup, one thread), appending its output to RUN/train.out."
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "train.out", "a") as out:
        p = subprocess.Popen(["nohup", *cmd], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                             env=os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    print(f"{run.name}: pid {p.pid}: {' '.join(cmd)}")


def records(run):
    "The records of a run's log (none before it starts)."
    from rotvq_audio.checkpoint import read_log
    return read_log(run / "log.jsonl") if (run / "log.jsonl").exists() else []


def last_records(run):
    "The newest train and val records of a run's log."
    train = val = None
    for r in records(run):
        if r.get("event") == "train": train = r
        if r.get("event") == "val": val = r
    return train, val


def cmd_train(a):
    """Start or resume each candidate. On a fresh machine without its run folder, a committed snapshot of it continues
    as a fine-tune (fresh optimiser) with the CPU budget that the snapshot had left."""
    for name in a.names:
        if name not in CANDIDATES: sys.exit(f"recipe.py: unknown candidate {name!r}; expected one of {sorted(CANDIDATES)}")
        run, snap, extra, budget = RUNS / name, RESULTS / name / "snapshot", (), a.cpu_minutes
        if not (run / "log.jsonl").exists() and (snap / "model.safetensors").exists():
            extra, done = continue_snapshot(name, snap, run)
            budget = max(0.0, a.cpu_minutes - 60 * done)
            print(f"{name}: continues {snap} ({done:.2f} CPU-h) as a fine-tune, {budget:.0f} CPU-minutes left")
        start(train_command(name, budget, extra=extra), run)


def continue_snapshot(name, snap, run):
    """The flags that continue candidate `name` from its committed snapshot as a fine-tune (fresh optimiser; the
    adversarial phase starts where the full run has it), and the snapshot's CPU-hours; RUN/continues.json records
    where it stood, so that status, score and curve count on from there."""
    from rotvq_audio.config import load_config
    prog = json.loads((snap / "progress.json").read_text())
    adv = CANDIDATES[name][1].get("loss.adv_start_step", load_config("small").loss.adv_start_step)
    run.mkdir(parents=True, exist_ok=True); (run / "continues.json").write_text(json.dumps(prog) + "\n")
    return ("--init", str(snap), "--loss.adv_start_step", str(max(0, adv - prog["step"]))), prog["cpu_hours_at_last_log"]


def cmd_long(a):
    """The long run: the winner's pilot run folder copied to RUNS/long2 and resumed with no CPU cap. On a fresh machine
    without either folder, the committed snapshot bench/results/recipe/long2/snapshot continues as a fine-tune (fresh
    optimiser). `long NAME` does the same for another candidate, into RUNS/long2-NAME: a runner-up trained on at the
    same pace, to see whether the gap closes with more CPU."""
    import shutil
    name = a.name or WINNER
    folder = LONG if name == WINNER else f"{LONG}-{name}"
    run, snap = RUNS / folder, RESULTS / folder / "snapshot"
    extra = ("--steps", str(LONG_STEPS))
    if not (run / "log.jsonl").exists():
        train, _ = last_records(RUNS / name)
        if train is not None and train["cpu_hours"] >= a.cpu_minutes / 60 - 0.05:
            shutil.copytree(RUNS / name, run, ignore=shutil.ignore_patterns(".lock", "train.out"), dirs_exist_ok=True)
            print(f"{folder}: continues {RUNS / name} at {train['cpu_hours']:.2f} CPU-h")
        elif (snap / "model.safetensors").exists():
            extra = continue_snapshot(name, snap, run)[0] + extra
            print(f"{folder}: continues {snap} as a fine-tune (fresh optimiser)")
        else: sys.exit(f"recipe.py: the long run needs {name}'s pilot finished ({a.cpu_minutes / 60:g} CPU-h) or {snap}")
    start(train_command(name, None, out=run, extra=extra), run)


def cmd_status(a):
    for name in [*CANDIDATES, ROUND1_LONG, LONG, *(f"{LONG}-{n}" for n in CANDIDATES)]:
        train, val = last_records(RUNS / name)
        if train is None: continue
        v = {k.split("/")[0][4:] + " " + k.split("/")[1]: round(x, 3) for k, x in (val or {}).items()
             if "/" in k and k.split("/")[1] in ("pesq_wb", "stoi")}
        cpu0, step0 = continued_from(RUNS / name)
        print(f"{name}: step {step0 + train['step']}, {cpu0 + train['cpu_hours']:.2f} CPU-h, mel {train.get('train/mel', float('nan')):.3f}, {v}")


def cmd_snapshot(a):
    "Copy a run's newest generator + discriminators (and where it stands) into bench/results/recipe/NAME/snapshot."
    import shutil
    from rotvq_audio.checkpoint import find_checkpoint, DISCRIMINATORS_NAME
    for name in a.names:
        ckpt, (train, _) = find_checkpoint(RUNS / name), last_records(RUNS / name)
        if ckpt is None: sys.exit(f"recipe.py: no checkpoint of {name} in {RUNS / name}")
        dst = RESULTS / name / "snapshot"; shutil.rmtree(dst, ignore_errors=True); dst.mkdir(parents=True)
        for f in ("config.json", "model.safetensors"): shutil.copy2(ckpt / "generator" / f, dst / f)
        shutil.copy2(ckpt / DISCRIMINATORS_NAME, dst / DISCRIMINATORS_NAME); shutil.copy2(ckpt / "train_config.json", dst)
        cpu0, step0 = continued_from(RUNS / name) # a run continued from a snapshot counts from where that stood
        (dst / "progress.json").write_text(json.dumps({"checkpoint": ckpt.name, "step": step0 + int(ckpt.name[5:]),
                                                       "cpu_hours_at_last_log": cpu0 + train["cpu_hours"] if train else None}) + "\n")
        print(f"{name}: {ckpt} -> {dst}")


def cmd_list(a):
    for name, (what, over) in CANDIDATES.items(): print(f"{name}: {what}\n    {' '.join(train_command(name, a.cpu_minutes)[2:])}")


def continued_from(run):
    "(CPU-hours, steps) a run continued from: a snapshot's progress.json copied there by `long`; (0, 0) otherwise."
    f = run / "continues.json"
    if not f.exists(): return 0.0, 0
    p = json.loads(f.read_text())
    return p["cpu_hours_at_last_log"], p["step"]


def val_curve(run):
    "(CPU-hours, {tag: value}) of every validation record of a run (the trainer's 8-clip validation subset)."
    out, cpu = [], 0.0
    cpu0, _ = continued_from(run)
    for r in records(run):
        if r.get("event") == "train": cpu = cpu0 + r["cpu_hours"]
        if r.get("event") == "val": out.append((cpu, r))
    return out


def row_of(name, rep, train, cpu_minutes):
    "One table row: the candidate, its training so far, and rotvq-eval's means at each bitrate."
    by = {b["kbps"]: b for b in rep["bitrates"]}
    row = {"candidate": name, "what": CANDIDATES[name][0], "n_files": rep["n_files"], "step": train["step"], "cpu_hours": round(train["cpu_hours"], 2),
           "original": rep.get("original", {}),
           "command": f".venv/bin/python bench/recipe.py --cpu_minutes {cpu_minutes:g} train {name}; "
                      f".venv/bin/python bench/recipe.py score {name}"}
    for kbps, b in by.items():
        m = b["means"]
        row[f"{kbps:g}"] = {k: round(v, 4) for k, v in m.items()} | {
            "effective_kbps": b["effective_kbps"], "utilization": round(sum(b["codebook"]["utilization"]) / b["n_q"], 4)}
    return row


def write_table(rows, out):
    "Markdown table of the scored candidates."
    head = ["candidate", "step", "CPU-h", "steps / CPU-h"] + [f"{k} kbps {m}" for k in ("1.5", "3", "6") for m in ("PESQ-WB", "STOI", "OVRL")] + [
        "6 kbps PESQ-NB", "6 kbps SI-SDR", "6 kbps mel", "6 kbps eff. kbps", "6 kbps util."]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in rows:
        cells = [r["candidate"], str(r["step"]), f"{r['cpu_hours']:.2f}", f"{r['step'] / r['cpu_hours']:.0f}"]
        cells += [f"{r[k][m]:.3f}" if m in r[k] else "n/a" for k in ("1.5", "3", "6") for m in ("pesq_wb", "stoi", "dnsmos_ovrl")]
        six = r["6"]
        cells += [f"{six['pesq_nb']:.3f}", f"{six['si_sdr']:.1f}", f"{six['mel_distance']:.3f}", f"{six['effective_kbps']:.2f}",
                  f"{six['utilization']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    cmds = "\n".join(f"- `{r['candidate']}`: {r['what']}; `{r['command']}`" + (f" ({r['note']})" if r.get("note") else "") for r in rows)
    (out / "table.md").write_text(f"rotvq-eval on dev ({rows[0]['n_files']} clips); each candidate trained with "
                                  f"`bench/recipe.py train NAME` (one thread, same CPU budget):\n\n" + "\n".join(lines) +
                                  "\n\nCandidates and the command each row comes from:\n" + cmds + "\n")


def plot(rows, runs, out):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 3.4))
    for r in rows:
        kb = [1.5, 3, 6]
        a1.plot(kb, [r[f"{k:g}"]["pesq_wb"] for k in kb], "o-", label=r["candidate"])
        curve = val_curve(runs[r["candidate"]])
        a2.plot([c for c, _ in curve], [v.get("val_6kbps/pesq_wb", float("nan")) for _, v in curve], ".-", label=r["candidate"])
        a3.plot([c for c, _ in curve], [v.get("val_6kbps/stoi", float("nan")) for _, v in curve], ".-", label=r["candidate"])
    a1.set(xlabel="kbps", ylabel="PESQ-WB", title="dev, all 69 clips", xticks=[1.5, 3, 6])
    a2.set(xlabel="CPU-hours", ylabel="PESQ-WB at 6 kbps", title="validation subset during training")
    a3.set(xlabel="CPU-hours", ylabel="STOI at 6 kbps", title="validation subset during training")
    for a in (a1, a2, a3): a.grid(alpha=0.3); a.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(out / "recipes.png", dpi=110); plt.close(fig)


def cmd_score(a):
    from rotvq_audio.evaluate import run_eval
    names = a.names or [n for n in CANDIDATES if (RUNS / n / "log.jsonl").exists()]
    a.out.mkdir(parents=True, exist_ok=True)
    rows, runs = [], {}
    for name in names:
        train, _ = last_records(RUNS / name)
        if train is None: print(f"{name}: no training yet, skipped"); continue
        rep = run_eval(str(RUNS / name), "dev", out=str(a.out / name), max_files=a.max_files, workers=a.workers, quiet=True)
        cpu0, step0 = continued_from(RUNS / name) # a run continued from a snapshot counts from where that stood
        train = train | {"step": step0 + train["step"], "cpu_hours": cpu0 + train["cpu_hours"]}
        rows.append(row_of(name, rep, train, a.cpu_minutes)); runs[name] = RUNS / name
        if step0: rows[-1]["note"] = (f"continued on a fresh machine from its committed snapshot at step {step0} ({cpu0:.2f} CPU-h), "
                                      "as a fine-tune with a fresh optimiser")
        print(f"{name}: step {train['step']}, {train['cpu_hours']:.2f} CPU-h: " +
              ", ".join(f"{k} kbps PESQ-WB {rows[-1][k]['pesq_wb']:.3f} STOI {rows[-1][k]['stoi']:.3f}" for k in ("1.5", "3", "6")), flush=True)
    old = json.loads((a.out / "results.json").read_text()) if (a.out / "results.json").exists() else []
    rows = [r for r in old if r["candidate"] not in {r["candidate"] for r in rows}] + rows # rows of earlier scorings are kept
    rows.sort(key=lambda r: list(CANDIDATES).index(r["candidate"]))
    runs = {r["candidate"]: RUNS / r["candidate"] for r in rows}
    (a.out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    write_table(rows, a.out); plot(rows, runs, a.out)
    print((a.out / "table.md").read_text())


def cmd_curve(a):
    """Score the long run's newest checkpoint on all of dev, add it to bench/results/recipe/long2/curve.json, and plot
    dev PESQ-WB / STOI / DNSMOS OVRL against CPU-hours: these full-dev points over the trainer's validation subset."""
    from rotvq_audio.evaluate import run_eval
    run, out = RUNS / LONG, RESULTS / LONG
    train, _ = last_records(run)
    if train is None and not (a.snapshot or a.plot_only): sys.exit(f"recipe.py: no long run in {run} (score a committed one with --snapshot DIR)")
    out.mkdir(parents=True, exist_ok=True)
    points = json.loads((out / "curve.json").read_text()) if (out / "curve.json").exists() else []
    if not a.plot_only:
        if a.snapshot: # a committed snapshot: its progress.json says where it stood; a rotvq-eval report of it is reused
            snap = Path(a.snapshot); prog = json.loads((snap / "progress.json").read_text())
            step, cpu, report = prog["step"], prog["cpu_hours_at_last_log"], snap / "eval" / "report.json"
            fresh = report.exists() and report.stat().st_mtime > (snap / "model.safetensors").stat().st_mtime
            rep = json.loads(report.read_text()) if fresh and a.max_files is None else \
                run_eval(str(snap), "dev", out=str(snap / "eval"), max_files=a.max_files, workers=a.workers, quiet=True)
        else:
            rep = run_eval(str(run), "dev", out=str(out / "eval"), max_files=a.max_files, workers=a.workers, quiet=True)
            cpu0, step0 = continued_from(run)
            step, cpu = step0 + train["step"], cpu0 + train["cpu_hours"]
        by = {f"{b['kbps']:g}": {k: round(v, 4) for k, v in b["means"].items()} for b in rep["bitrates"]}
        points = [p for p in points if p["step"] != step] + [{"step": step, "cpu_hours": round(cpu, 3),
                                                                         "n_files": rep["n_files"], **by}]
        points.sort(key=lambda p: p["cpu_hours"])
        (out / "curve.json").write_text(json.dumps(points, indent=1) + "\n")
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
    val = val_curve(run)
    for ax, metric, name in ((axes[0], "pesq_wb", "PESQ-WB"), (axes[1], "stoi", "STOI"), (axes[2], "dnsmos_ovrl", "DNSMOS OVRL")):
        for i, kbps in enumerate(("1.5", "3", "6")):
            ax.plot([c for c, _ in val], [v.get(f"val_{kbps}kbps/{metric}", float("nan")) for _, v in val], ":", color=f"C{i}", alpha=0.6)
            have = [p for p in points if metric in p[kbps]]  # DNSMOS is scored since round two
            ax.plot([p["cpu_hours"] for p in have], [p[kbps][metric] for p in have], "o-", color=f"C{i}", label=f"{kbps} kbps, all of dev")
        ax.set(xlabel="CPU-hours of training after the 0.1.0 model (one thread)", ylabel=name, title=f"{name}: dev (dots: 8-clip validation subset)")
        ax.grid(alpha=0.3); ax.legend(fontsize=7)
    fig.tight_layout(); fig.savefig(out / "curve.png", dpi=110); plt.close(fig)
    for p in points: print(f"{p['cpu_hours']:6.2f} CPU-h step {p['step']:6d}: " + ", ".join(
        f"{k} kbps PESQ-WB {p[k]['pesq_wb']:.3f} STOI {p[k]['stoi']:.3f}" for k in ("1.5", "3", "6")))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cpu_minutes", type=float, default=120, help="CPU budget of each candidate (default: 2 CPU-hours)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list"); sub.add_parser("status")
    sn = sub.add_parser("snapshot"); sn.add_argument("names", nargs="+")
    lg = sub.add_parser("long"); lg.add_argument("name", nargs="?", help=f"a candidate other than the winner ({WINNER})")
    c = sub.add_parser("curve"); c.add_argument("--workers", type=int, default=2); c.add_argument("--max_files", type=int, default=None)
    c.add_argument("--plot_only", action="store_true", help="redraw curve.png from curve.json")
    c.add_argument("--snapshot", help="score this snapshot folder (bench/recipe.py snapshot's layout) instead of the run's newest checkpoint")
    t = sub.add_parser("train"); t.add_argument("names", nargs="+")
    s = sub.add_parser("score"); s.add_argument("names", nargs="*"); s.add_argument("--workers", type=int, default=2)
    s.add_argument("--max_files", type=int, default=None, help="score only the first N dev clips (smoke tests)")
    s.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    {"list": cmd_list, "train": cmd_train, "status": cmd_status, "score": cmd_score, "snapshot": cmd_snapshot, "long": cmd_long,
     "curve": cmd_curve}[a.cmd](a)
