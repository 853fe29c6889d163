#!/usr/bin/env python
"""Download VCTK 0.92 (datashare.ed.ac.uk/handle/10283/3443, CC BY 4.0, 48 kHz) and prepare one microphone as
16 kHz mono FLAC with a manifest.

    python data_scripts/vctk.py --root /data/vctk --mic mic1

Output: ROOT/VCTK-16k/<mic>/<speaker>/<id>_<mic>.flac and ROOT/VCTK-16k/<mic>.csv (path, duration, speaker, source)."""
from pathlib import Path

from _common import base_parser, get_archive, prepare

URL = "https://datashare.ed.ac.uk/bitstream/handle/10283/3443/VCTK-Corpus-0.92.zip"
# as published in torchaudio.datasets.vctk._CHECKSUMS (for the same file at datashare.is.ed.ac.uk)
SHA256 = "f96258be9fdc2cbff6559541aae7ea4f59df3fcaf5cf963aae5ca647357e359c"


def find_wav48(raw: Path) -> Path:
    "The `wav48_silence_trimmed` folder, whether the zip had a top-level folder or not."
    for cand in (raw / "wav48_silence_trimmed", raw / "VCTK-Corpus-0.92" / "wav48_silence_trimmed"):
        if cand.is_dir(): return cand
    return next(raw.rglob("wav48_silence_trimmed"), raw / "wav48_silence_trimmed")


def main(argv=None):
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--mic", choices=["mic1", "mic2"], default="mic1", help="microphone to keep (mic1: omni DPA 4035)")
    args = ap.parse_args(argv)
    archive = get_archive(args, URL, sha256=SHA256)
    out = args.root / "VCTK-16k"
    return prepare(args, archive, find_wav48, out / args.mic, out / f"{args.mic}.csv", speaker_from="parent",
                   keep=lambda rel: rel.stem.endswith("_" + args.mic), source="vctk")


if __name__ == "__main__": main()
