#!/usr/bin/env python
"""Download LibriTTS (openslr.org/60, CC BY 4.0, 24 kHz) and prepare one subset as 16 kHz mono FLAC with a manifest.

    python data_scripts/libritts.py --root /data/libritts --subset train-clean-100

Output: ROOT/LibriTTS-16k/<subset>/<speaker>/<chapter>/<id>.flac (+ .normalized.txt/.original.txt) and
ROOT/LibriTTS-16k/<subset>.csv (path, duration, speaker, split, source)."""
from _common import base_parser, get_archive, prepare

URL = "https://www.openslr.org/resources/60/{}.tar.gz"
# sha256 of each archive, as published in torchaudio.datasets.libritts._CHECKSUMS
SHA256 = {
    "dev-clean": "da0864e1bd26debed35da8a869dd5c04dfc27682921936de7cff9c8a254dbe1a",
    "dev-other": "d413eda26f3a152ac7c9cf3658ef85504dfb1b625296e5fa83727f5186cca79c",
    "test-clean": "234ea5b25859102a87024a4b9b86641f5b5aaaf1197335c95090cde04fe9a4f5",
    "test-other": "33a5342094f3bba7ccc2e0500b9e72d558f72eb99328ac8debe1d9080402f10d",
    "train-clean-100": "c5608bf1ef74bb621935382b8399c5cdd51cd3ee47cec51f00f885a64c6c7f6b",
    "train-clean-360": "ce7cff44dcac46009d18379f37ef36551123a1dc4e5c8e4eb73ae57260de4886",
    "train-other-500": "e35f7e34deeb2e2bdfe4403d88c8fdd5fbf64865cae41f027a185a6965f0a5df",
}


def main(argv=None):
    args = base_parser(__doc__.splitlines()[0], SHA256, "train-clean-100").parse_args(argv)
    archive = get_archive(args, URL.format(args.subset), sha256=SHA256[args.subset])
    out = args.root / "LibriTTS-16k"
    return prepare(args, archive, lambda raw: raw / "LibriTTS" / args.subset, out / args.subset,
                   out / f"{args.subset}.csv", speaker_from="grandparent", split=args.subset, source="libritts")


if __name__ == "__main__": main()
