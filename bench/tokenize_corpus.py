"""Corpus tokenization throughput: the per-file loop (`rotvq encode DIR`) against `rotvq tokenize`, side by side in one run.

    .venv/bin/python bench/tokenize_corpus.py                     # the shared train set, the bundled model, CPU
    .venv/bin/python bench/tokenize_corpus.py --data DIR --repeats 3 --device cuda

Each command runs as a separate process, as a user runs it, into a fresh output folder, alternating, `--repeats`
times; the table gives the fastest wall-clock time of each (process start and model load included) and the hours of
audio per second. `tokenize` runs with its defaults (2 workers, batch 1 on the CPU, 32 on a GPU) and with
`--batch-size 8`. The codes each `tokenize` run wrote are compared, clip by clip, with the per-file loop's token
files: how many clips and codes are identical.

Then two figures that explain the speed-up on a small CPU. The thread scaling of the per-file loop: `Codec.encode`
throughput in one process with 1 and with all cores' threads, on the first clips; since `tokenize` on the CPU runs one
single-threaded encoder per core, its speed-up over the loop cannot exceed cores × (1-thread rate) / (all-thread rate).
And the memory check: `tokenize` on manifests listing the data once and 5 times (other ids, the same files), with the
peak resident memory of its largest process for each. Writes bench/results/tokenize_corpus.json and .md. Pause other
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


def compare_codes(data: Path, loop_out: Path, tok_out: Path) -> dict:
    "Clips and codes of `rotvq tokenize`'s shards against the per-file loop's token files of the same clips."
    import numpy as np, pyarrow.parquet as pq
    from rotvq_audio.tokenfile import load_tokens
    n = dict(clips=0, clips_equal=0, codes=0, codes_equal=0)
    for shard in sorted(tok_out.glob("shard-*.parquet")):
        for r in pq.read_table(shard, columns=["path", "codes"]).to_pylist():
            want = load_tokens(loop_out / Path(r["path"]).relative_to(data).with_suffix(".npz")).codes[0].numpy() # (n_q, N)
            got = np.array(r["codes"])
            same = got.shape == want.shape and bool((got == want).all())
            n["clips"] += 1; n["clips_equal"] += same
            n["codes"] += want.size; n["codes_equal"] += int((got == want).sum()) if got.shape == want.shape else 0
    return n


def thread_scaling(data: Path, n_clips: int = 150, repeats: int = 2) -> dict:
    "Seconds of audio per second of `Codec.encode`, one clip at a time, with 1 thread and with one thread per core."
    import soundfile as sf, torch
    from rotvq_audio.api import Codec
    from rotvq_audio.corpus import list_inputs
    codec = Codec.from_pretrained()
    clips = [torch.from_numpy(sf.read(i.path, dtype="float32")[0]) for i in list_inputs(str(data))[:n_clips]]
    seconds, rate = sum(len(c) for c in clips) / codec.sample_rate, {}
    for th in [1, os.cpu_count()] * repeats:
        torch.set_num_threads(th); t0 = time.perf_counter()
        for c in clips: codec.encode(c, codec.sample_rate)
        rate[th] = max(rate.get(th, 0), seconds / (time.perf_counter() - t0))
    return {f"{th}_threads": round(r, 1) for th, r in rate.items()}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(Path(os.environ.get("ROTVQ_SPEECH", ROOT.parent / "shared" / "speech")) / "train"))
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(RESULTS))
    a = p.parse_args()
    from rotvq_audio.corpus import list_inputs
    from rotvq_audio.data import audio_info
    data = Path(a.data).resolve()
    items = list_inputs(str(data))
    hours = sum(audio_info(i.path)[0] for i in items) / 3600
    rotvq = [sys.executable, "-m", "rotvq_audio.cli"]
    loop = "rotvq encode DIR (per file)"
    runs = {loop: lambda o: [*rotvq, "encode", data, o, "-q"],
            f"rotvq tokenize ({a.device})": lambda o: [*rotvq, "tokenize", data, o, "--device", a.device, "-q"],
            f"rotvq tokenize ({a.device}) --batch-size 8": lambda o: [*rotvq, "tokenize", data, o, "--device", a.device, "--batch-size", "8", "-q"]}
    times, equal = {k: [] for k in runs}, {}
    with tempfile.TemporaryDirectory(prefix="rotvq-bench-") as tmp:
        for r in range(a.repeats):
            for i, (name, cmd) in enumerate(runs.items()):
                out = Path(tmp) / f"{i}-{r}"
                times[name].append(timed(cmd(out)))
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
        for i, name in enumerate(list(runs)[1:], 1):
            equal[name] = compare_codes(data, Path(tmp) / "0-0", Path(tmp) / f"{i}-0")
            print(f"{name}: codes equal to the per-file loop's for {equal[name]['clips_equal']}/{equal[name]['clips']} clips", flush=True)
    best = {k: min(v) for k, v in times.items()}
    scaling = thread_scaling(data)
    t1, tn = scaling["1_threads"], scaling[f"{os.cpu_count()}_threads"]
    ceiling = round(os.cpu_count() * t1 / tn, 2)
    print(f"Codec.encode per clip: {t1} s/s with 1 thread, {tn} s/s with {os.cpu_count()}; ceiling of the speed-up {ceiling}", flush=True)
    memory = {}
    with tempfile.TemporaryDirectory(prefix="rotvq-bench-") as tmp:
        for k in (1, 5):
            with open(Path(tmp) / f"m{k}.csv", "w", newline="") as f:
                w = csv.writer(f); w.writerow(["path", "id"]); w.writerows([str(Path(i.path).resolve()), f"{r}/{i.id}"] for r in range(k) for i in items)
            memory[k * len(items)] = round(peak_rss_mib([*rotvq, "tokenize", Path(tmp) / f"m{k}.csv", Path(tmp) / f"o{k}", "--device", a.device, "-q"]))
            print(f"tokenize of {k * len(items)} inputs: peak RSS {memory[k * len(items)]} MiB", flush=True)
    base = best[loop]
    res = dict(data=str(data), clips=len(items), audio_hours=round(hours, 4), repeats=a.repeats, device=a.device,
               machine=dict(cpu=platform.processor() or platform.machine(), cores=os.cpu_count(), python=platform.python_version()),
               seconds={k: [round(t, 2) for t in v] for k, v in times.items()}, best=best,
               speedup={k: round(base / t, 2) for k, t in best.items()}, codes_equal=equal,
               encode_seconds_per_second=scaling, speedup_ceiling=ceiling, peak_rss_mib_by_inputs=memory)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / "tokenize_corpus.json").write_text(json.dumps(res, indent=1) + "\n")
    lines = [f"{len(items)} clips, {hours:.2f} h of audio ({data}), {os.cpu_count()} cores; fastest of {a.repeats} runs each, "
             "process start and model load included.", "",
             "| command | seconds | hours of audio per second | speed-up | clips with codes equal to the loop's |", "|---|---|---|---|---|"]
    for k, t in best.items():
        e = equal.get(k)
        lines.append(f"| {k} | {t:.1f} | {hours / t:.3f} | {base / t:.2f} | " +
                     (f"{e['clips_equal']}/{e['clips']} ({e['codes'] - e['codes_equal']} of {e['codes']} codes differ)" if e else "–") + " |")
    lines += ["", f"`Codec.encode`, one clip at a time in one process: {t1} s of audio per second with 1 thread, {tn} with "
              f"{os.cpu_count()} threads ({tn / t1:.2f}x). One single-threaded encoder per core can be at most "
              f"{os.cpu_count()} x {t1} / {tn} = **{ceiling}x** faster than the per-file loop on this machine.",
              "", "Peak resident memory of `rotvq tokenize`'s largest process: " +
              ", ".join(f"{n} inputs {m} MiB" for n, m in memory.items()) + "."]
    (out / "tokenize_corpus.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
