"""Side by side CPU speed and memory of our codec and its peers (EnCodec, DAC, SNAC, Mimi) on one speech clip.

    .venv/bin/python bench/codecs.py                      # all models, 5 timed runs after 1 warm-up, 2 threads
    .venv/bin/python bench/codecs.py --only ours-small,dac --repeats 1 --warmup 0

Every model runs with RANDOM weights (the peers' pretrained weights cannot be downloaded here; speed and memory
depend on the architecture, not the weights), except "ours small", which is the bundled trained model when the
package ships one (same architecture as CodecConfig.small()). The input is the first dev clip of the shared corpus
($ROTVQ_SPEECH, default ../shared/speech) that lasts --seconds, cut to --seconds and resampled with torchaudio to each
model's rate. Each (model, bitrate) runs in a fresh subprocess under torch.inference_mode with --threads threads:
encode (audio -> codes) and decode (codes -> audio) are timed separately, median of --repeats runs after --warmup.
Peak RSS is the process's resident-set high-water mark (VmHWM) during the warm-up and timed runs, reset after the
model is built and the input loaded; "+RSS" is that peak minus the RSS just before the first encode.
The ratio column is (encode + decode time of ours small at the nearest bitrate) / (same for the peer): < 1, ours faster.
A peer that fails to import or run gets its error in the table; the others go on.
Writes <out>/codecs.json and <out>/codecs.md (default bench/results).

Peers need `pip install -e .[bench]` plus, for DAC (its audiotools pins protobuf<3.20, so no dependency resolution):
    pip install --no-deps descript-audio-codec==1.0.0 descript-audiotools==0.7.2
"""
import argparse, json, os, platform, re, statistics, subprocess, sys, time, warnings
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Published architectures, instantiated with random weights.
DAC_16KHZ = dict(sample_rate=16000, encoder_dim=64, encoder_rates=[2, 4, 5, 8], decoder_dim=1536, decoder_rates=[8, 5, 4, 2],
                 n_codebooks=12, codebook_size=1024, codebook_dim=8)  # descript-audio-codec conf/final/16khz.yml
SNAC_24KHZ = dict(sampling_rate=24000, encoder_dim=48, encoder_rates=[2, 4, 8, 8], decoder_dim=1024, decoder_rates=[8, 8, 4, 2],
                  attn_window_size=None, codebook_size=4096, codebook_dim=8, vq_strides=[4, 2, 1], noise=True,
                  depthwise=True)  # hubertsiuzdak/snac_24khz config.json
INSTALL = {"dac": "pip install --no-deps descript-audio-codec==1.0.0 descript-audiotools==0.7.2",
           "encodec": "pip install encodec==0.1.1", "snac": "pip install snac==1.2.1", "transformers": "pip install transformers==5.24.0"}


def ours(size, kbps):
    from rotvq_audio.codec import CodecModel, CodecConfig
    from rotvq_audio.api import bundled_model_dir
    bundled = bundled_model_dir()
    if size == "small" and (bundled / "config.json").is_file():
        m, weights = CodecModel.from_pretrained(bundled), "bundled"
        assert not m.config.diff(CodecConfig.small()), "bundled model is not the small config"
    else: m, weights = CodecModel(getattr(CodecConfig, size)()), "random"
    n_q = m.n_q_for_kbps(kbps)
    return m, (lambda x: m.encode(x, n_q=n_q)), (lambda c, T: m.decode(c, length=T)), weights  # (1, n_q, T/320)


def encodec(kbps):
    from encodec import EncodecModel
    m = EncodecModel.encodec_model_24khz(pretrained=False); m.set_target_bandwidth(kbps)
    return m, m.encode, (lambda frames, T: m.decode(frames)[..., :T]), "random"  # [((1, n_q, T/320), scale)]


def dac16():
    import dac
    m = dac.DAC(**DAC_16KHZ)
    enc = lambda x: m.encode(m.preprocess(x, 16000), n_quantizers=12)[1]  # (1, 12, T/320)
    return m, enc, (lambda c, T: m.decode(m.quantizer.from_codes(c)[0])[..., :T]), "random"


def snac24():
    from snac import SNAC
    m = SNAC(**SNAC_24KHZ)
    return m, m.encode, (lambda c, T: m.decode(c)[..., :T]), "random"  # [(1, T/2048), (1, T/1024), (1, T/512)]


def mimi():
    from transformers import MimiConfig, MimiModel
    m = MimiModel(MimiConfig())  # defaults: the kyutai/mimi architecture (32 quantizers, 8 used here)
    enc = lambda x: m.encode(x, num_quantizers=8).audio_codes  # (1, 8, T/1920)
    return m, enc, (lambda c, T: m.decode(c).audio_values[..., :T]), "random"


# name -> model label, sample rate, kbps, codebooks (stages of the code stream), builder
MODELS = {f"ours-{s}-{k:g}": (f"ours {s}", 16000, k, n, lambda s=s, k=k: ours(s, k))
          for s in ("small", "base") for k, n in ((1.5, 3), (3.0, 6), (6.0, 12))}
MODELS |= {f"encodec-{k:g}": ("EnCodec 24 kHz", 24000, k, n, lambda k=k: encodec(k)) for k, n in ((1.5, 2), (6.0, 8))}
MODELS |= {"dac": ("DAC 16 kHz", 16000, 6.0, 12, dac16),  # 50 Hz x 12 x 10 bits
           "snac": ("SNAC 24 kHz", 24000, 0.98, 3, snac24),  # 12 bits at 11.7 + 23.4 + 46.9 Hz
           "mimi": ("Mimi", 24000, 1.1, 8, mimi)}  # 12.5 Hz x 8 x 11 bits


def clip_rows(seconds: float) -> list[dict]:
    "The first dev clip of at least `seconds`, else all the dev clips (to be concatenated)."
    from rotvq_audio.data import speech_split
    rows = speech_split("dev")
    return next(([r] for r in rows if r["duration"] >= seconds), rows)


def speech_clip(seconds: float):
    "(T,) float32 16 kHz speech, `seconds` long."
    import torch
    from rotvq_audio.data import load_audio
    x = torch.cat([load_audio(r["path"]) for r in clip_rows(seconds)])[:int(seconds * 16000)]
    assert len(x) == int(seconds * 16000), f"the dev set has only {len(x) / 16000:.1f} s of speech"
    return x


def rss_mb(key="VmRSS") -> float:
    "Current (VmRSS) or peak (VmHWM) resident set size of this process, MiB."
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def reset_peak_rss() -> bool:
    "Reset VmHWM to the current RSS (Linux >= 4.0); False where not allowed."
    try: Path("/proc/self/clear_refs").write_text("5"); return True
    except OSError: return False


def measure(name, args) -> dict:
    "Build one model and time it; runs in its own process."
    import torch, torchaudio.functional as AF
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads); torch.manual_seed(0)
    _, sr, *_ , build = MODELS[name]
    x = speech_clip(args.seconds)
    x = (AF.resample(x, 16000, sr) if sr != 16000 else x).view(1, 1, -1)  # (1, 1, T)
    T = x.shape[-1]
    model, enc, dec, weights = build()
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    reset = reset_peak_rss(); rss0 = rss_mb()
    te, td = [], []
    with torch.inference_mode():
        for i in range(args.warmup + args.repeats):
            t0 = time.perf_counter(); codes = enc(x); t1 = time.perf_counter(); y = dec(codes, T); t2 = time.perf_counter()
            if i >= args.warmup: te.append(t1 - t0); td.append(t2 - t1)
    assert 0 <= T - y.shape[-1] < 2048, f"decoded {y.shape[-1]} samples from {T}"  # DAC drops a few at the end
    peak = rss_mb("VmHWM")
    return dict(params_m=params / 1e6, weights=weights, encode_s=statistics.median(te), decode_s=statistics.median(td),
                encode_runs=te, decode_runs=td, peak_rss_mb=peak, rss_before_mb=rss0, rss_increase_mb=peak - rss0,
                peak_reset=reset, samples=T, decoded_samples=y.shape[-1])


def run_one(name, args) -> dict:
    "`measure` in a fresh process; a failure becomes an `error` entry."
    cmd = [sys.executable, __file__, "--one", name, "--seconds", str(args.seconds), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--warmup", str(args.warmup)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    lines = r.stdout.strip().splitlines()
    if r.returncode == 0 and lines: return json.loads(lines[-1])
    err = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
    return dict(error=err[:300])


def child(name, args):
    try: out = measure(name, args)
    except Exception as e:
        out = dict(error=f"{type(e).__name__}: {e}"[:300])
        if isinstance(e, ImportError):
            pkg = next((p for p in INSTALL if p in str(e) or p in name), None)
            if pkg: out["error"] += f" (install: {INSTALL[pkg]})"
    print(json.dumps(out))


def machine(args) -> dict:
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    def version(p):
        try: return metadata.version(p)
        except metadata.PackageNotFoundError: return None
    pkgs = ["rotvq-audio", "torch", "torchaudio", "encodec", "descript-audio-codec", "descript-audiotools", "snac", "transformers"]
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return dict(cpu=cpu.group(1).strip() if cpu else platform.processor(), cores=os.cpu_count(), threads=args.threads,
                python=platform.python_version(), packages={p: version(p) for p in pkgs}, git=git or None,
                load_avg_at_start=[round(l, 2) for l in os.getloadavg()])


def add_ratios(rows):
    "Ratio of ours small's encode+decode time at the nearest bitrate to each peer's."
    ref = [r for r in rows if r["model"] == "ours small" and "error" not in r]
    for r in rows:
        if r["model"].startswith("ours") or "error" in r or not ref: continue
        o = min(ref, key=lambda o: abs(o["kbps"] - r["kbps"]))
        r["ratio"] = (o["encode_s"] + o["decode_s"]) / (r["encode_s"] + r["decode_s"]); r["ratio_vs_kbps"] = o["kbps"]


def table(rows) -> str:
    head = ["model", "sample rate", "kbps", "codebooks", "params (M)", "encode s", "decode s", "RTF enc", "RTF dec",
            "peak RSS MiB", "+RSS MiB", "ours/peer (enc+dec)", "error"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        f = lambda k, fmt: format(r[k], fmt) if k in r else ""
        ratio = f"{r['ratio']:.3g} (vs {r['ratio_vs_kbps']:g} kbps)" if "ratio" in r else ""
        model = r["model"] + (" (bundled weights)" if r.get("weights") == "bundled" else "")
        cells = [model, f"{r['sample_rate'] // 1000} kHz", f"{r['kbps']:g}", str(r["codebooks"]), f("params_m", ".2f"),
                 f("encode_s", ".3f"), f("decode_s", ".3f"), f("rtf_encode", ".4f"), f("rtf_decode", ".4f"),
                 f("peak_rss_mb", ".0f"), f("rss_increase_mb", ".0f"), ratio, r.get("error", "").replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"), help="folder for codecs.json and codecs.md")
    ap.add_argument("--repeats", type=int, default=5); ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=10.0); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", help=f"comma-separated names or prefixes among {', '.join(MODELS)} "
                                       "(ratios need the ours-small rows in the same run)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one: return child(args.one, args)
    names = list(MODELS)
    if args.only:
        want = [w.strip() for w in args.only.split(",") if w.strip()]
        names = [n for n in names if any(n == w or n.startswith(w) for w in want)]
        if not names: sys.exit(f"--only {args.only} matches none of {', '.join(MODELS)}")
    info = machine(args)
    from rotvq_audio.data import default_speech_dir
    info["clip"] = [os.path.relpath(r["path"], default_speech_dir()) for r in clip_rows(args.seconds)]
    print(f"{info['cpu']}, {info['cores']} cores, {args.threads} threads, python {info['python']}, "
          f"load {info['load_avg_at_start']}\n" + ", ".join(f"{k} {v}" for k, v in info["packages"].items()), flush=True)
    rows = []
    for n in names:
        label, sr, kbps, codebooks, _ = MODELS[n]
        r = dict(name=n, model=label, sample_rate=sr, kbps=kbps, codebooks=codebooks) | run_one(n, args)
        if "error" not in r: r |= dict(rtf_encode=r["encode_s"] / args.seconds, rtf_decode=r["decode_s"] / args.seconds)
        rows.append(r)
        print(f"  {n}: " + (r["error"] if "error" in r else f"encode {r['encode_s']:.3f} s, decode {r['decode_s']:.3f} s, "
                                                           f"peak RSS {r['peak_rss_mb']:.0f} MiB"), flush=True)
    add_ratios(rows)
    md = (f"{args.seconds:g} s of dev speech ({', '.join(info['clip'])}), CPU {info['cpu']} ({info['cores']} cores), {args.threads} threads, "
          f"torch {info['packages']['torch']}, median of {args.repeats} runs after {args.warmup} warm-up, "
          f"load average {info['load_avg_at_start'][0]} at start.\n\n" + table(rows) +
          "\n\nRandom weights except where marked; params count nn.Parameters (EMA codebooks held in buffers, as in ours, "
          "EnCodec and Mimi, are not counted). RTF = seconds per second of audio. Peak RSS: the whole process's "
          "high-water mark during encode+decode (Python, torch, model and activations); +RSS: that peak minus the RSS "
          "before the first encode (activation memory). Ratio < 1: ours small is faster.\n")
    print("\n" + md)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    (out / "codecs.md").write_text(md)
    configs = dict(dac=DAC_16KHZ, snac=SNAC_24KHZ, mimi="transformers MimiConfig() defaults; encode(num_quantizers=8)",
                   encodec="EncodecModel.encodec_model_24khz(pretrained=False); set_target_bandwidth(kbps)")
    (out / "codecs.json").write_text(json.dumps(dict(machine=info, seconds=args.seconds, repeats=args.repeats, warmup=args.warmup,
                                                     configs=configs, rows=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
