"""Training throughput (steps/s, clips/s, audio-seconds/s) of `rotvq_audio.train.Trainer.train_step`.

    .venv/bin/python bench/train_throughput.py               # CPU small; on a CUDA machine also GPU base
    .venv/bin/python bench/train_throughput.py --steps 5 --warmup 2 --devices cpu

CPU: the `small` config with --threads threads, before the adversarial phase (loss.adv_start_step = 1e9: generator
only) and with it active (adv_start_step = 0: discriminators updated and used in the generator loss).
CUDA (when available): the `base` config in bf16 autocast, eager and with `torch.compile(trainer.model)`, in both
phases; a compile failure is reported in the results and the other variants go on.
Batches (the config's batch size of 1 s crops) are read before timing, so data loading is not counted; each timed
step is synchronized on CUDA; --warmup steps run first untimed. Median and mean step times over --steps steps.
Writes bench/results/train_throughput.json (--out).
"""
import argparse, json, os, platform, re, statistics, sys, tempfile, time, traceback
from pathlib import Path

import torch
from rotvq_audio.trainer import Trainer
from rotvq_audio.config import load_config
from rotvq_audio.core import override

ROOT = Path(__file__).resolve().parents[1]


def make_trainer(config, adv, device, out_dir, max_clips):
    cfg = load_config(config)
    for k, v in dict(steps=10**6, out_dir=out_dir, val_every=0, val_clips=0, ckpt_every=0, num_workers=0,
                     max_train_clips=max_clips, adv_start_step=0 if adv else 10**9).items():
        cfg = override(cfg, k, v)
    return Trainer(cfg, device=device, quiet=True)


def run(config, adv, device, compile_model, args) -> dict:
    "Time `args.steps` training steps after `args.warmup` untimed ones."
    with tempfile.TemporaryDirectory() as d:
        tr = make_trainer(config, adv, device, d, args.max_clips)
        if compile_model: tr.model = torch.compile(tr.model)
        tr.model.train(); tr.discs.train()
        batches, loader = [], iter(tr.loader())
        for _ in range(args.warmup + args.steps): batches.append(next(loader))  # (B, 1, segment) each
        del loader
        cuda = tr.device.type == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        if cuda: torch.cuda.reset_peak_memory_stats(tr.device)
        times, nonfinite = [], 0
        for i, x in enumerate(batches):
            sync(); t0 = time.perf_counter()
            rec = tr.train_step(x); sync()
            dt = time.perf_counter() - t0
            tr.step += 1; nonfinite += not rec["finite"]
            if i >= args.warmup: times.append(dt)
        c = tr.cfg
        step_s = statistics.median(times)
        clip_s = c.data.segment / c.codec.sample_rate
        out = dict(config=config, device=tr.device.type, adversarial=adv, bf16=tr.use_bf16, compiled=compile_model,
                   batch_size=c.data.batch_size, segment_s=clip_s, step_s_median=step_s, step_s_mean=statistics.mean(times),
                   steps_per_s=1 / step_s, clips_per_s=c.data.batch_size / step_s, audio_s_per_s=c.data.batch_size * clip_s / step_s,
                   nonfinite_steps=nonfinite, params_m=sum(p.numel() for p in tr.model.parameters()) / 1e6,
                   disc_params_m=sum(p.numel() for p in tr.discs.parameters()) / 1e6)
        if cuda: out["peak_gpu_gib"] = torch.cuda.max_memory_allocated(tr.device) / 2**30
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--devices", default="cpu,cuda", help="cpu (small config) and/or cuda (base config, when available)")
    ap.add_argument("--max-clips", type=int, default=64, help="training clips loaded (batches are crops of these)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = [d.strip() for d in args.devices.split(",")]
    variants = [("small", adv, "cpu", False) for adv in (False, True)] if "cpu" in devices else []
    if "cuda" in devices and torch.cuda.is_available():
        variants += [("base", adv, "cuda", comp) for comp in (False, True) for adv in (False, True)]
    elif "cuda" in devices: print("no CUDA device: GPU variants skipped")
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    info = dict(cpu=cpu.group(1).strip() if cpu else platform.processor(), cores=os.cpu_count(), threads=args.threads,
                torch=torch.__version__, python=platform.python_version(), load_avg_at_start=[round(l, 2) for l in os.getloadavg()],
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)
    print(f"{info['cpu']}, {info['cores']} cores, {args.threads} threads, torch {info['torch']}, gpu {info['gpu']}; "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    print(f"{'config':<7}{'device':<7}{'phase':<12}{'compile':<9}{'s/step':>8}{'steps/s':>9}{'clips/s':>9}{'audio s/s':>11}")
    rows = []
    for config, adv, device, comp in variants:
        phase = "adversarial" if adv else "pre-adv"
        try: r = run(config, adv, device, comp, args)
        except Exception as e:
            r = dict(config=config, device=device, adversarial=adv, compiled=comp, error=f"{type(e).__name__}: {e}"[:500])
            traceback.print_exc(limit=2)
        rows.append(r)
        head = f"{config:<7}{device:<7}{phase:<12}{str(comp):<9}"
        print(head + (f"  error: {r['error']}" if "error" in r else
                      f"{r['step_s_median']:>8.3f}{r['steps_per_s']:>9.2f}{r['clips_per_s']:>9.1f}{r['audio_s_per_s']:>11.1f}"), flush=True)
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(machine=info, steps=args.steps, warmup=args.warmup, rows=rows), indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
