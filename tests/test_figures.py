"""One source for every figure of the bundled model (issue 32): the README, the docs pages and the model card render
them from bench/results/classic_codecs.json through `bench/figures.py`; these tests fail when a copy drifts."""
import json, re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import figures  # noqa: E402  (bench/figures.py)


@pytest.fixture(scope="module")
def fig(): return figures.load_figures()


def test_the_results_are_of_the_bundled_weights_and_every_page_matches_them():
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "figures.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_a_figure_edited_by_hand_is_caught(fig, tmp_path):
    card = tmp_path / "card.md"
    card.write_text(figures.CARD.read_text())
    assert figures.stale_regions(card, fig) == []
    ours = f"{fig.ours(6.0)['means']['pesq_wb']:.3f}"
    text = card.read_text(); i = text.index("<!-- figures:eval-table -->")
    card.write_text(text[:i] + text[i:].replace(ours, f"{float(ours) + 0.1:.3f}", 1))  # one copied figure, edited
    assert figures.stale_regions(card, fig) == [f"{card}: region 'eval-table' differs from bench/results/classic_codecs.json"]


def test_no_page_quotes_the_bundled_models_figures_outside_a_region(fig):
    """A figure typed into prose outside a region would not follow a re-bundle: each must sit in a rendered region, or
    name the release it belongs to ("the model bundled with 0.1.0 ..."), which stays true. Every notebook's markdown
    and the card are read. (README.md is made from nbs/index.ipynb, whose table cell reads the card:
    `.ci/readme.py --check` keeps it in sync.)"""
    ours = {f"{fig.ours(k)['means'][m]:.{d}f}" for k in figures.BITRATES for m in ("pesq_wb", "stoi", "dnsmos_ovrl") for d in (2, 3)}
    ours |= {f"{fig.training['cpu_hours']:.2f}", f"{fig.training['steps']:,}".replace(",", " ")}
    pages = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts) + [figures.CARD]
    found = []
    for page in pages:
        text = figures.REGION.sub("", figures.page_text(page))
        for n in sorted(ours):
            for m in re.finditer(rf"(?<![\d.]){re.escape(n)}(?!\d)", text):
                if not re.search(r"\b0\.\d+\.\d+\b", text[max(0, m.start() - 200):m.end() + 50]):
                    found.append(f"{page.relative_to(ROOT)}: {n} in ...{text[max(0, m.start() - 60):m.end() + 20]!r}...")
    assert not found, "\n".join(found)


def test_a_rebundle_without_a_new_benchmark_run_is_refused(tmp_path):
    r = json.loads(figures.RESULTS.read_text()); r["weights_hash"] = "0" * 64
    (tmp_path / "r.json").write_text(json.dumps(r))
    with pytest.raises(SystemExit, match="the bundled model is"): figures.load_figures(tmp_path / "r.json")


def test_the_listening_samples_are_of_the_bundled_weights_and_small():
    "nbs/listen/ is made by bench/listen.py from the bundled model: after a re-bundle it must be made again."
    from rotvq_audio import Codec
    folder = ROOT / "nbs" / "listen"
    s = json.loads((folder / "samples.json").read_text())
    assert s["weights_hash"] == Codec.from_pretrained().weights_hash, "run `.venv/bin/python bench/listen.py`"
    files = {x["file"] for c in s["clips"] for x in c["samples"]} | {c["spectrogram"] for c in s["clips"]}
    assert files == {f"listen/{p.name}" for p in folder.iterdir() if p.name != "samples.json"}, "files and samples.json differ"
    assert 6 <= len(s["clips"]) <= 8 and sum(p.stat().st_size for p in folder.iterdir()) < 5 * 2**20


def test_the_saved_outputs_that_show_the_card_show_todays_card():
    "index and pretrained print the card's tables in their saved outputs: `bench/figures.py` re-runs them."
    card_rows = {l for l in figures.CARD.read_text().splitlines() if l.startswith("| ") and re.search(r"\d\.\d{3}", l)}
    for nb in figures.SHOW_CARD:
        shown = {l.rstrip("\n") for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])
                 for l in "".join(o.get("data", {}).get("text/markdown", o.get("text", ""))).splitlines()
                 if l.startswith("| ") and re.search(r"\d\.\d{3}", l)}
        assert shown and shown <= card_rows, f"{nb.name}: saved tables differ from the card: {sorted(shown - card_rows)[:3]}"
