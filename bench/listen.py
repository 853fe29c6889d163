"""The listening page's samples: seven dev clips through the bundled model at 1.5, 3 and 6 kbps and through Opus and
Codec2, each with its PESQ-WB and DNSMOS OVRL, written for nbs/listen.ipynb.

    .venv/bin/python bench/listen.py     # after every re-bundle (tests/test_listen.py refuses samples of other weights)

Writes nbs/listen/: one Ogg Opus file per sample (re-encoded at 32 kbps for the web, near-transparent for 16 kHz
speech: the scores are measured on the codec's own output before that), one spectrogram strip per clip, and
samples.json with the clips, the files and the scores. The peers run as in bench/classic_codecs.py (the same code:
opusenc, and Codec2 through sox at 8 kHz). Clips are cut to their first 8 s.
"""
import json, shutil, tempfile
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import soundfile as sf
import torch

from classic_codecs import codec2, opus, run  # bench/classic_codecs.py: one implementation of each peer
from rotvq_audio import Codec
from rotvq_audio.data import default_speech_dir, load_audio, read_rows
from rotvq_audio.metrics import dnsmos, pesq_wb

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "nbs" / "listen"
SR, SECONDS, WEB_KBPS = 16000, 8.0, 32
CLIPS = [  # (path under dev/, what it is): female and male readers, quiet and loud, and meeting speech
    ("librispeech/3331/3331-159605-0009.flac", "read speech, female (LibriSpeech test-other)"),
    ("librispeech/1098/1098-133695-0000.flac", "read speech, female (LibriSpeech)"),
    ("librispeech/367/367-130732-0002.flac", "read speech, female, quiet recording (LibriSpeech test-other)"),
    ("librispeech/2033/2033-164914-0000.flac", "read speech, male (LibriSpeech test-other)"),
    ("librispeech/3857/3857-180923-0000.flac", "read speech, male (LibriSpeech)"),
    ("ami/MEE009/dev00_001p24-013p15.flac", "meeting speech, distant and quiet (AMI)"),
    ("ami/MEE012/dev00_013p32-017p13.flac", "meeting speech, another participant (AMI)"),
]
LABELS = ["original", "rotvq 1.5 kbps", "rotvq 3 kbps", "rotvq 6 kbps", "Opus 6 kbps", "Codec2 3200", "Codec2 1600"]


def samples(codec: Codec, x: np.ndarray) -> list[np.ndarray]:
    "The clip `x` (T,) and its six codings, in LABELS' order, each (T,) at 16 kHz."
    ours = [codec.decode(codec.encode(x, SR, kbps=k), len(x))[0, 0].numpy() for k in (1.5, 3, 6)]
    peers = [ext(torch.from_numpy(x)[None, None])[0, 0].numpy() for ext in (opus(6), codec2("3200"), codec2("1600"))]
    return [x, *ours, *peers]


def write_web(y: np.ndarray, path: Path):
    "`y` as Ogg Opus at WEB_KBPS (opusenc, as the peers)."
    with tempfile.TemporaryDirectory() as d:
        sf.write(Path(d) / "s.wav", np.clip(y, -1, 1), SR, subtype="PCM_16")
        run("opusenc", "--quiet", "--bitrate", WEB_KBPS, Path(d) / "s.wav", path)


def strip(ys: list[np.ndarray], path: Path):
    "One row of log spectrograms, a panel per sample."
    fig, axes = plt.subplots(1, len(ys), figsize=(2.1 * len(ys), 1.6), sharey=True)
    for ax, y, label in zip(axes, ys, LABELS):
        ax.specgram(y + 1e-7, NFFT=512, Fs=SR, noverlap=384, cmap="magma", vmin=-130, vmax=-30)
        ax.set_title(label, fontsize=8); ax.set_xticks([]); ax.tick_params(labelsize=7)
    axes[0].set_ylabel("Hz", fontsize=7)
    fig.tight_layout(pad=0.3); fig.savefig(path, dpi=80); plt.close(fig)


def main():
    torch.set_num_threads(1)
    codec, dev = Codec.from_pretrained(), default_speech_dir() / "dev"
    manifest = {r["path"]: r for r in read_rows(default_speech_dir() / "manifest.csv")}
    shutil.rmtree(OUT, ignore_errors=True); OUT.mkdir(parents=True)
    clips = []
    for rel, what in CLIPS:
        x = load_audio(dev / rel, SR).numpy()[:int(SECONDS * SR)]
        ys, stem = samples(codec, x), Path(rel).stem
        rows = []
        for label, y in zip(LABELS, ys):
            name = f"{stem}_{label.lower().replace(' ', '_').replace('.', 'p')}.opus"
            write_web(y, OUT / name)
            pesq = None if label == "original" else round(pesq_wb(x, y, SR, on_error="nan"), 3)
            rows.append(dict(label=label, file=f"listen/{name}", pesq_wb=pesq, dnsmos_ovrl=round(dnsmos(y, SR, "nan").ovrl, 3)))
        strip(ys, OUT / f"{stem}.png")
        row = manifest[f"dev/{rel}"]
        clips.append(dict(id=stem, path=f"dev/{rel}", what=what, seconds=round(len(x) / SR, 2), license=row["license"],
                          spectrogram=f"listen/{stem}.png", samples=rows))
        print(f"{stem}: " + ", ".join(f"{r['label']} {r['pesq_wb']}/{r['dnsmos_ovrl']}" for r in rows), flush=True)
    (OUT / "samples.json").write_text(json.dumps(dict(model=codec.name, weights_hash=codec.weights_hash, web_kbps=WEB_KBPS,
                                                      made_by="bench/listen.py", clips=clips), indent=1) + "\n")
    print(f"{OUT}: {sum(f.stat().st_size for f in OUT.iterdir()) / 2**20:.2f} MiB")


if __name__ == "__main__": main()
