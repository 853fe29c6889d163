"""The classic codecs as quality peers: Opus and Codec2 from Debian beside a rotvq model, same dev clips, same metrics.

    .venv/bin/python bench/classic_codecs.py                      # the bundled model, all dev clips
    .venv/bin/python bench/classic_codecs.py --model RUN_OR_MODEL --max_files 10 --out /tmp/peers

Opus (opus-tools: `opusenc --bitrate B`, decoded by `opusdec --rate 16000`) works on the 16 kHz input directly;
Codec2 (`c2enc`/`c2dec` at 3200 and 1600 bit/s) is narrowband, so sox resamples to 8 kHz and back (without dither,
so that two runs give the same figures). The measured
kbps of a peer is the size of its coded file (Ogg framing included for Opus, the raw bit stream for Codec2) over the
clip's duration; ours is the nominal rate (10 bits per stage per 50 Hz frame) with the entropy (effective) rate
beside it. A peer's output is shifted back by its delay (the lag of the best cross-correlation, at most 50 ms,
Codec2's is about 9 ms) so that STOI and SI-SDR judge the coding, not the latency. Every codec is scored by `rotvq_audio.metrics.evaluate` on the same clips: PESQ-WB/NB, STOI, SI-SDR,
mel distance and DNSMOS P.835 SIG/BAK/OVRL; the uncoded clips get their DNSMOS too (the "original" row), which is
what a codec's DNSMOS is read against, and the run times DNSMOS per clip. Writes OUT/classic_codecs.json and .md
(default bench/results/), with the model's weights hash and the training facts of its `training.json`: the one source
of the bundled model's figures on every page (`bench/figures.py` renders them). `bash .ci/setup` installs the tools and
the mos extra.

    .venv/bin/python bench/classic_codecs.py --reuse_peers       # after a re-bundle: score only ours, keep the peers' rows

`--reuse_peers` keeps the original and peer rows of OUT/classic_codecs.json when they were measured on the same data
and clip count with the same tool versions (the peers do not change when our weights do).
"""
import argparse, json, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from rotvq_audio.codec import CodecModel, bundled_model_dir
from rotvq_audio.evaluate import data_items, model_dir, reconstruct_fn, EVAL_METRICS
from rotvq_audio.metrics import evaluate, dnsmos, dnsmos_available, load_item, DNSMOS_METRICS
from rotvq_audio.api import Codec

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
TOOLS = {"opusenc": "opus-tools", "opusdec": "opus-tools", "c2enc": "codec2", "c2dec": "codec2", "sox": "sox"}


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode: raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr.strip()[-300:]}")


def delay(x, y, max_lag=800): # reference and decoded (T,) at 16 kHz -> samples by which y lags x
    "The lag in [0, max_lag] that maximises the cross-correlation of `x` and `y`."
    n = min(len(x), len(y)) - max_lag
    if n <= 0: return 0
    return int(np.argmax([np.dot(x[:n], y[k:k + n]) for k in range(max_lag + 1)]))


class External:
    "A command-line codec as a `metrics.evaluate` reconstruct function that counts the coded bytes and undoes its delay."
    def __init__(self, name, encode_decode):
        self.name, self.encode_decode, self.bits, self.seconds, self.lags = name, encode_decode, 0, 0.0, []

    def __call__(self, audio): # (1, 1, T) at 16 kHz -> (1, 1, T')
        x = audio.view(-1).numpy()
        with tempfile.TemporaryDirectory() as d:
            d = Path(d); sf.write(d / "in.wav", x, SR, subtype="PCM_16")
            self.bits += self.encode_decode(d).stat().st_size * 8
            y, sr = sf.read(d / "out.wav", dtype="float32")
        assert sr == SR, sr
        self.seconds += len(x) / SR
        y = y.reshape(-1); lag = delay(x, y); self.lags.append(lag)
        y = np.pad(y[lag:], (0, max(0, len(x) - len(y) + lag)))[:len(x)]  # aligned, same length as the input
        return torch.from_numpy(np.ascontiguousarray(y))[None, None]

    @property
    def kbps(self): return self.bits / max(self.seconds, 1e-9) / 1000


def opus(bitrate):
    def f(d):
        run("opusenc", "--quiet", "--bitrate", bitrate, d / "in.wav", d / "c.opus")
        run("opusdec", "--quiet", "--rate", SR, d / "c.opus", d / "out.wav")
        return d / "c.opus"
    return External(f"Opus {bitrate} (opusenc --bitrate {bitrate})", f)


def codec2(mode):
    def f(d):
        raw = ["-t", "raw", "-e", "signed-integer", "-b", "16", "-c", "1", "-r", "8000"]
        run("sox", "-D", d / "in.wav", *raw, d / "in8k.raw") # -D: no dither, so that every run gives the same bits
        run("c2enc", mode, d / "in8k.raw", d / "c.bit")
        run("c2dec", mode, d / "c.bit", d / "out8k.raw")
        run("sox", "-D", *raw, d / "out8k.raw", "-r", SR, "-b", "16", d / "out.wav")
        return d / "c.bit"
    return External(f"Codec2 {mode} (8 kHz via sox)", f)


def original_row(items):
    "DNSMOS of the uncoded clips, scored here on one thread and timed: the row every codec's DNSMOS is read against."
    t0, scores, audio = time.perf_counter(), [], 0.0
    for i, item in enumerate(items):
        x = load_item(item, SR, name=f"#{i}")[0]  # (1, 1, T)
        scores.append(dnsmos(x, SR, on_error="nan")); audio += x.shape[-1] / SR
    seconds = time.perf_counter() - t0
    means = {f"dnsmos_{k}": float(np.nanmean([getattr(s, k) for s in scores])) for k in ("sig", "bak", "ovrl")}
    cost = dict(seconds_per_clip=round(seconds / len(items), 3), seconds_per_audio_second=round(seconds / audio, 4))
    return dict(codec="original (uncoded)", kbps=None, effective_kbps=None, means=means, failed={}, cost=cost)


def tool_versions() -> dict:
    return {t: subprocess.run(["dpkg-query", "-W", "-f=${Version}", t], capture_output=True, text=True).stdout
            for t in ("opus-tools", "libopus0", "codec2", "sox")}


def reused_peers(path: Path, data: str, n_files: int, tools: dict) -> list:
    "The original and peer rows of an earlier run on the same clips and tools, or [] (then they are measured anew)."
    if not path.is_file(): return []
    old = json.loads(path.read_text())
    if (old["data"], old["n_files"], old["tools"]) != (data, n_files, tools): return []
    rows = [r for r in old["rows"] if not r["codec"].startswith("rotvq")]
    rows[0]["cost"] = old["dnsmos_cost"]
    print(f"reusing the original and {len(rows) - 1} peer rows of {path}", flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model folder or training run (default: the bundled model)")
    p.add_argument("--data", default="dev")
    p.add_argument("--max_files", type=int, default=None)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "bench" / "results"))
    p.add_argument("--reuse_peers", action="store_true", help="keep the original and peer rows of OUT/classic_codecs.json")
    a = p.parse_args()
    if missing := sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}):
        sys.exit(f"classic_codecs.py: missing {', '.join(missing)}: run `bash .ci/setup` (or apt-get install {' '.join(missing)})")
    if not dnsmos_available(): sys.exit("classic_codecs.py: DNSMOS needs the mos extra: run `bash .ci/setup`")
    torch.set_num_threads(1)
    items = data_items(a.data, a.max_files)
    model = (CodecModel.from_pretrained(model_dir(a.model)) if a.model else Codec.from_pretrained().model).eval()
    metrics, tools, t0 = EVAL_METRICS + DNSMOS_METRICS, tool_versions(), time.time()
    rows = reused_peers(Path(a.out) / "classic_codecs.json", a.data, len(items), tools) if a.reuse_peers else []
    if not rows: rows = [original_row(items)]; print(f"original: DNSMOS {rows[0]['means']}, {rows[0]['cost']}", flush=True)
    for ext in () if len(rows) > 1 else (opus(6), opus(12), codec2("3200"), codec2("1600")):
        r = evaluate(ext, items, SR, n_workers=a.workers, metrics=metrics, progress=False)
        rows.append(dict(codec=ext.name, kbps=round(ext.kbps, 2), effective_kbps=None, means=r.means, failed=r.failed,
                         median_delay_ms=float(np.median(ext.lags)) / SR * 1000))
        print(f"{ext.name}: {ext.kbps:.2f} kbps, " + ", ".join(f"{k} {v:.3f}" for k, v in r.means.items()), flush=True)
    for n_q in (3, 6, 12):
        fn = reconstruct_fn(model, n_q)
        r = evaluate(fn, items, SR, n_workers=a.workers, metrics=metrics, progress=False,
                     codebook_size=model.codebook_size, frame_rate=model.frame_rate)
        name = f"rotvq {a.model or 'bundled'} ({n_q} stages)"
        rows.append(dict(codec=name, kbps=model.bitrate(n_q) / 1000, effective_kbps=round(r.codebook.effective_bitrate / 1000, 2),
                         means=r.means, failed=r.failed))
        print(f"{name}: {model.bitrate(n_q) / 1000:g} kbps, " + ", ".join(f"{k} {v:.3f}" for k, v in r.means.items()), flush=True)
    folder = model_dir(a.model) if a.model else bundled_model_dir()
    training = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else None
    rep = dict(data=a.data, n_files=len(items), model=a.model or "bundled", seconds=round(time.time() - t0, 1),
               dnsmos_cost=rows[0].pop("cost"), tools=tools, weights_hash=Codec(model).weights_hash, training=training, rows=rows)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / "classic_codecs.json").write_text(json.dumps(rep, indent=1) + "\n")
    head = ("| codec | kbps (measured) | effective kbps | PESQ-WB | PESQ-NB | STOI | SI-SDR | mel distance | DNSMOS SIG | "
            "DNSMOS BAK | DNSMOS OVRL |\n" + "|---" * 11 + "|\n")
    fmt = lambda v, d=3: "n/a" if v is None or v != v else f"{v:.{d}f}"
    md = head + "".join(f"| {r['codec']} | {fmt(r['kbps'], 2) if r['kbps'] else 'n/a'} | {fmt(r['effective_kbps'], 2)} | " + " | ".join(
        fmt(r["means"].get(k), 1 if k == "si_sdr" else 3) for k in metrics) + " |\n" for r in rows)
    cost = rep["dnsmos_cost"]
    (out / "classic_codecs.md").write_text(f"{len(items)} clips of `{a.data}`, one run ({rep['seconds']:.0f} s); "
                                           f"tools {rep['tools']}. DNSMOS costs {cost['seconds_per_clip']:.2f} s per clip "
                                           f"({cost['seconds_per_audio_second']:.3f} s per second of audio, one thread).\n\n" + md)
    print(md)


if __name__ == "__main__": main()
