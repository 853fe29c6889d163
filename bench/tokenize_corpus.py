"""Corpus tokenization throughput: the per-file loop (`rotvq encode DIR`) against `rotvq tokenize`, side by side in one run.

    .venv/bin/python bench/tokenize_corpus.py                     # the shared train set, the bundled model, CPU
    .venv/bin/python bench/tokenize_corpus.py --data DIR --repeats 3 --device cuda

Each command runs as a separate process, as a user runs it, into a fresh output folder, alternating, `--repeats`
times; the table gives the fastest wall-clock time of each (process start and model load included) and the hours of
audio per second. `tokenize` runs with its defaults (2 workers, batch 1 on the CPU, 32 on a GPU). Then the memory
check: `tokenize` on manifests listing the data once and 5 times (other ids, the same files), with the peak
resident memory of its largest process for each. Writes bench/results/tokenize_corpus.json and .md. Pause other
work on the machine while it runs.
"""
import argparse, csv, json, os, platform, shutil, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def timed(cmd) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode not in (0, 2): raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}): {r.stderr[-500:]}")
    return time.perf_counter() - t0


def peak_rss_mib(cmd) -> float:
    "Peak resident memory (MiB) of the largest process `cmd` starts, measured from a fresh wrapper process."
    probe = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    return int(subprocess.run([sys.executable, "-c", probe, *map(str, cmd)], capture_output=True, text=True).stdout) / 1024


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(Path(os.environ.get("ROTVQ_SPEECH", ROOT.parent / "shared" / "speech")) / "train"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args()
    from rotvq_audio.corpus import list_inputs
    from rotvq_audio.data import audio_info
    items = list_inputs(a.data)
    hours = sum(audio_info(i.path)[0] for i in items) / 3600
    rotvq = [sys.executable, "-m", "rotvq_audio.cli"]
    runs = {"rotvq encode DIR (per file)": lambda o: [*rotvq, "encode", a.data, o, "-q"],
            f"rotvq tokenize ({a.device})": lambda o: [*rotvq, "tokenize", a.data, o, "--device", a.device, "-q"]}
    times = {k: [] for k in runs}
    for _ in range(a.repeats):
        for name, cmd in runs.items():
            out = Path(tempfile.mkdtemp(prefix="rotvq-bench-"))
            try: times[name].append(timed(cmd(str(out / "o"))))
            finally: shutil.rmtree(out, ignore_errors=True)
            print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    memory = {}
    with tempfile.TemporaryDirectory(prefix="rotvq-bench-") as tmp:
        for k in (1, 5):
            with open(Path(tmp) / f"m{k}.csv", "w", newline="") as f:
                w = csv.writer(f); w.writerow(["path", "id"]); w.writerows([str(Path(i.path).resolve()), f"{r}/{i.id}"] for r in range(k) for i in items)
            memory[k * len(items)] = round(peak_rss_mib([*rotvq, "tokenize", Path(tmp) / f"m{k}.csv", Path(tmp) / f"o{k}", "--device", a.device, "-q"]))
            print(f"tokenize of {k * len(items)} inputs: peak RSS {memory[k * len(items)]} MiB", flush=True)
    loop, tok = best.values()
    res = dict(data=a.data, clips=len(items), audio_hours=round(hours, 4), repeats=a.repeats, device=a.device,
               machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), python=platform.python_version()),
               seconds={k: [round(t, 2) for t in v] for k, v in times.items()}, best=best, speedup=round(loop / tok, 2),
               peak_rss_mib_by_inputs=memory)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / "tokenize_corpus.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"{len(items)} clips, {hours:.2f} h of audio ({a.data}), {os.cpu_count()} cores; fastest of {a.repeats} runs each, "
             "process start and model load included.", "", "| command | seconds | hours of audio per second | speed-up |", "|---|---|---|---|"]
    for k, t in best.items(): lines.append(f"| {k} | {t:.1f} | {hours / t:.3f} | {loop / t:.2f} |")
    lines += ["", "Peak resident memory of `rotvq tokenize`'s largest process: " +
              ", ".join(f"{n} inputs {m} MiB" for n, m in memory.items()) + "."]
    (out / "tokenize_corpus.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
