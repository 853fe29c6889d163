"""Encode and decode a long (default 1-hour) speech file through the public `Codec` API: wall time, real-time
factor and peak resident memory of each stage, each stage in its own process so its peak RSS is its own.
Also measures how often chunked codes agree with a whole-file encode on a shorter excerpt.

    .venv/bin/python bench/long_audio.py                 # bundled model, 60 minutes, 6 kbps
    .venv/bin/python bench/long_audio.py --minutes 10 --model runs/small/model --out /tmp/long_audio.json

The long input is real dev speech from $ROTVQ_SPEECH (default ../shared/speech) tiled to length.
Without a bundled model or --model, an untrained model of the small config is used: speed and memory
depend on the architecture, not the weights.
Prints its figures and writes them as JSON to --out (default bench/results/long_audio.json): the machine, the
arguments and each stage's measurements under "encode", "decode" and "agreement" (null with --agreement-minutes 0).
"""
import argparse, json, os, platform, re, resource, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    "Peak resident set size of this process so far, MiB (Linux reports KiB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def long_speech(minutes: float) -> np.ndarray:
    "`minutes` of 16 kHz float32 dev speech, the dev clips concatenated and tiled."
    from rotvq_audio.data import load_audio
    root = Path(os.environ.get("ROTVQ_SPEECH", ROOT.parent / "shared" / "speech"))
    files = sorted((root / "dev").rglob("*.flac"))
    if not files: sys.exit(f"no dev speech under {root}; set ROTVQ_SPEECH")
    out, i = np.empty(int(minutes * 60 * 16000), np.float32), 0 # filled in place: no transient copies in the peak
    while i < len(out):
        for f in files:
            x = load_audio(f).numpy()[:len(out) - i]
            out[i:i + len(x)] = x; i += len(x)
            if i == len(out): break
    return out


def load_codec(model):
    from rotvq_audio import Codec
    from rotvq_audio.api import bundled_model_dir
    if model is None and not (bundled_model_dir() / "config.json").is_file():
        from rotvq_audio.codec import CodecModel, CodecConfig
        import torch
        torch.manual_seed(0)
        return Codec(CodecModel(CodecConfig.small()), name="untrained-small")
    return Codec.from_pretrained(model)


def stage(args) -> dict:
    "One measurement, run in a fresh process."
    import torch
    torch.set_num_threads(args.threads)
    from rotvq_audio.api import save_tokens, load_tokens
    codec = load_codec(args.model)
    rss0 = peak_rss_mb()
    if args.stage == "encode":
        x = long_speech(args.minutes)
        rss_input = peak_rss_mb()
        t0 = time.perf_counter(); codes = codec.encode(x, 16000, kbps=args.kbps); dt = time.perf_counter() - t0
        save_tokens(args.tokens, codec.tokens(codes, len(x)))
        return dict(stage="encode", model=codec.name, seconds=dt, rtf=dt / (len(x) / 16000), codes=list(codes.shape),
                    rss_after_load_mb=rss0, rss_with_input_mb=rss_input, peak_rss_mb=peak_rss_mb(), input_mb=x.nbytes / 2**20)
    if args.stage == "decode":
        t = load_tokens(args.tokens)
        t0 = time.perf_counter(); audio = codec.decode_tokens(t); dt = time.perf_counter() - t0
        return dict(stage="decode", seconds=dt, rtf=dt / (audio.shape[-1] / 16000), samples=audio.shape[-1],
                    rss_after_load_mb=rss0, peak_rss_mb=peak_rss_mb(), output_mb=audio.numel() * 4 / 2**20)
    if args.stage == "agreement":
        x = long_speech(args.agreement_minutes)
        whole = type(codec)(codec.model, chunk_seconds=1e9)
        a, b = whole.encode(x, 16000, kbps=args.kbps), codec.encode(x, 16000, kbps=args.kbps)
        diff = (whole.decode(a) - codec.decode(a)).abs().max().item()
        seams = a.shape[-1] // codec.chunk_frames
        return dict(stage="agreement", minutes=args.agreement_minutes, seams=seams, chunk_seconds=codec.chunk_frames / codec.frame_rate,
                    codes_agree=(a == b).float().mean().item(), frames_all_stages_agree=(a == b).all(1).float().mean().item(),
                    decode_max_abs_diff=diff)
    raise ValueError(args.stage)


def run_stage(name, args, tokens) -> dict:
    cmd = [sys.executable, __file__, "--stage", name, "--tokens", str(tokens), "--minutes", str(args.minutes), "--kbps", str(args.kbps),
           "--threads", str(args.threads), "--agreement-minutes", str(args.agreement_minutes)] + (["--model", args.model] if args.model else [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode: sys.exit(f"stage {name} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def machine(threads) -> dict:
    "CPU, core count, thread count and package versions of this run."
    from importlib import metadata
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()) if Path("/proc/cpuinfo").is_file() else None
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return dict(cpu=cpu.group(1).strip() if cpu else platform.processor(), cores=os.cpu_count(), threads=threads,
                python=platform.python_version(), torch=metadata.version("torch"), git=git or None,
                load_avg_at_start=[round(l, 2) for l in os.getloadavg()])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the long input")
    ap.add_argument("--agreement-minutes", type=float, default=5.0, help="excerpt encoded whole and chunked (0: skip)")
    ap.add_argument("--kbps", type=float, default=6.0)
    ap.add_argument("--model", help="model folder (default: bundled, else an untrained small model)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "long_audio.json"), help="JSON file for the results")
    ap.add_argument("--stage", choices=["encode", "decode", "agreement"], help=argparse.SUPPRESS)
    ap.add_argument("--tokens", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        print(json.dumps(stage(args))); return
    info, ag = machine(args.threads), None
    with tempfile.TemporaryDirectory() as d:
        tokens = Path(d) / "long.npz"
        enc = run_stage("encode", args, tokens)
        print(f"model {enc['model']}, {args.minutes:g} min of speech at {args.kbps:g} kbps, {args.threads} threads, "
              f"tokens {enc['codes']} ({tokens.stat().st_size / 2**20:.1f} MiB)")
        print(f"encode: {enc['seconds']:.1f} s, RTF {enc['rtf']:.3f}, peak RSS {enc['peak_rss_mb']:.0f} MiB "
              f"(after model load {enc['rss_after_load_mb']:.0f} MiB, with the {enc['input_mb']:.0f} MiB input {enc['rss_with_input_mb']:.0f} MiB)")
        dec = run_stage("decode", args, tokens)
        print(f"decode: {dec['seconds']:.1f} s, RTF {dec['rtf']:.3f}, peak RSS {dec['peak_rss_mb']:.0f} MiB "
              f"(after model load {dec['rss_after_load_mb']:.0f} MiB, {dec['output_mb']:.0f} MiB output)")
        if args.agreement_minutes > 0:
            ag = run_stage("agreement", args, tokens)
            print(f"chunked vs whole on {ag['minutes']:g} min ({ag['seams']} seams of {ag['chunk_seconds']:g} s chunks): "
                  f"{ag['codes_agree']:.4%} of codes, {ag['frames_all_stages_agree']:.4%} of frames agree; "
                  f"decode max |diff| {ag['decode_max_abs_diff']:.2e}")
        enc["tokens_mib"] = tokens.stat().st_size / 2**20
    out = Path(args.out); out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(machine=info, minutes=args.minutes, kbps=args.kbps, threads=args.threads, model=enc["model"],
                                   encode=enc, decode=dec, agreement=ag), indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
