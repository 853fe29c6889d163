#!/usr/bin/env python
"""Manifest for any local folder of audio (wav, flac, ogg), optionally with a 16 kHz mono FLAC copy.

    python data_scripts/local_folder.py --src /data/my_speech --out /data/my_speech.csv
    python data_scripts/local_folder.py --src /data/my_speech --resample-to /data/my_speech_16k --out /data/my_16k.csv

Speakers come from each file's parent folder unless --speaker-from says otherwise."""
import argparse
from pathlib import Path

from _common import make_manifest, resample_folder


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, required=True, help="folder searched recursively for audio")
    ap.add_argument("--out", type=Path, required=True, help="manifest to write (.csv or .jsonl)")
    ap.add_argument("--resample-to", type=Path, help="write a mono FLAC copy at --sample-rate here and list that instead")
    ap.add_argument("--sample-rate", type=int, default=16000, help="rate of the copy")
    ap.add_argument("--speaker-from", default="parent", choices=["parent", "grandparent", "top", "stem"])
    ap.add_argument("--source", help="value of a constant `source` column")
    ap.add_argument("--jobs", type=int, default=1, help="parallel conversion processes")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    root = args.src
    if args.resample_to is not None:
        resample_folder(args.src, args.resample_to, args.sample_rate, jobs=args.jobs, progress=not args.quiet)
        root = args.resample_to
    extra = {"source": args.source} if args.source else {}
    return make_manifest(root, args.out, args.speaker_from, **extra)


if __name__ == "__main__": main()
