#!/usr/bin/env python
"""Download LibriSpeech (openslr.org/12, CC BY 4.0) and prepare one subset as 16 kHz mono FLAC with a manifest.

    python data_scripts/librispeech.py --root /data/librispeech --subset train-clean-100

Output: ROOT/LibriSpeech-16k/<subset>/<speaker>/<chapter>/<id>.flac (+ .trans.txt) and
ROOT/LibriSpeech-16k/<subset>.csv (path, duration, speaker, split, source)."""
from _common import base_parser, get_archive, prepare

URL = "https://www.openslr.org/resources/12/{}.tar.gz"
# sha256 of each archive, as published in torchaudio.datasets.librispeech._CHECKSUMS
SHA256 = {
    "dev-clean": "76f87d090650617fca0cac8f88b9416e0ebf80350acb97b343a85fa903728ab3",
    "dev-other": "12661c48e8c3fe1de2c1caa4c3e135193bfb1811584f11f569dd12645aa84365",
    "test-clean": "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
    "test-other": "d09c181bba5cf717b3dee7d4d592af11a3ee3a09e08ae025c5506f6ebe961c29",
    "train-clean-100": "d4ddd1d5a6ab303066f14971d768ee43278a5f2a0aa43dc716b0e64ecbbbf6e2",
    "train-clean-360": "146a56496217e96c14334a160df97fffedd6e0a04e66b9c5af0d40be3c792ecf",
    "train-other-500": "ddb22f27f96ec163645d53215559df6aa36515f26e01dd70798188350adcb6d2",
}


def main(argv=None):
    args = base_parser(__doc__.splitlines()[0], SHA256, "train-clean-100").parse_args(argv)
    archive = get_archive(args, URL.format(args.subset), sha256=SHA256[args.subset])
    out = args.root / "LibriSpeech-16k"
    return prepare(args, archive, lambda raw: raw / "LibriSpeech" / args.subset, out / args.subset,
                   out / f"{args.subset}.csv", speaker_from="grandparent", split=args.subset, source="librispeech")


if __name__ == "__main__": main()
