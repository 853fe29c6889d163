"""The token contract: a token file that the model bundled with rotvq-audio 0.1.0 made from a dev clip decodes with
every later bundled model, at least as well as 0.1.0 decoded it (PESQ-WB against the original clip).

The file was written once, by 0.1.0's model:  .venv/bin/python tests/test_token_contract.py --write
A release that breaks the contract on purpose (a new tokenizer that a pilot showed clearly better) sets
"broken_by" in contract.json to the reason its CHANGELOG gives; this test is then skipped with that reason."""
import json, os, sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "data" / "contract"
CONTRACT = HERE / "contract.json"
CLIP = "dev/librispeech/2033/2033-164914-0000.flac"  # 9.1 s, a dev speaker: never trained on
KBPS = (1.5, 3, 6)


def speech_dir() -> Path:
    return Path(os.environ.get("ROTVQ_SPEECH", Path(__file__).parents[1] / ".." / "shared" / "speech"))


def token_path(kbps) -> Path: return HERE / f"tokens_0.1.0_{kbps:g}kbps.npz"


def score(codec, kbps) -> float:
    "PESQ-WB of the committed tokens at `kbps` decoded by `codec`, against the original clip."
    from rotvq_audio.data import load_audio
    from rotvq_audio.metrics import pesq_wb
    ref = load_audio(speech_dir() / CLIP, codec.sample_rate)
    return pesq_wb(ref.numpy(), codec.decode_tokens(token_path(kbps))[0, 0].numpy(), codec.sample_rate)


def write():
    "Make the token files and contract.json with the bundled model (run once, by 0.1.0)."
    from rotvq_audio import Codec
    from rotvq_audio.data import load_audio
    from rotvq_audio.tokenfile import save_tokens
    codec = Codec.from_pretrained()
    audio = load_audio(speech_dir() / CLIP, codec.sample_rate)
    HERE.mkdir(parents=True, exist_ok=True)
    for kbps in KBPS: save_tokens(token_path(kbps), codec.tokens(codec.encode(audio, codec.sample_rate, kbps=kbps), len(audio)))
    made = {"clip": CLIP, "model": codec.name, "weights_hash": codec.weights_hash, "tokenizer_hash": codec.tokenizer_hash,
            "pesq_wb_at_0.1.0": {f"{k:g}": round(score(codec, k), 3) for k in KBPS}, "broken_by": None}
    CONTRACT.write_text(json.dumps(made, indent=1) + "\n")
    print(json.dumps(made, indent=1))


def contract() -> dict:
    c = json.loads(CONTRACT.read_text())
    if c["broken_by"]: pytest.skip(f"the token contract of 0.1.0 was broken on purpose: {c['broken_by']}")
    return c


@pytest.fixture(scope="module")
def codec():
    from rotvq_audio import Codec
    return Codec.from_pretrained()


def test_the_bundled_model_keeps_the_tokenizer_of_0_1_0(codec):
    assert codec.tokenizer_hash == contract()["tokenizer_hash"], "the bundled model's tokenizer changed: see this file's docstring"


@pytest.mark.parametrize("kbps", KBPS)
def test_the_bundled_model_decodes_0_1_0_tokens_at_least_as_well(codec, kbps):
    c = contract()
    if not (speech_dir() / CLIP).is_file(): pytest.skip(f"no {CLIP} under $ROTVQ_SPEECH ({speech_dir()})")
    assert score(codec, kbps) >= c["pesq_wb_at_0.1.0"][f"{kbps:g}"] - 0.02  # PESQ's own run-to-run noise is far smaller


def test_another_tokenizer_is_refused_in_one_line(tmp_path):
    from rotvq_audio import Codec
    from rotvq_audio.codec import CodecModel, CodecConfig
    other = Codec(CodecModel(CodecConfig.small()), name="untrained")
    with pytest.raises(ValueError, match=r"^tokens in .* were made by model 'rotvq-audio/default' \(tokenizer [0-9a-f]{12}\), "
                                         r"but this codec is 'untrained'[^\n]*$"):
        other.decode_tokens(token_path(6))


if __name__ == "__main__" and "--write" in sys.argv: write()
