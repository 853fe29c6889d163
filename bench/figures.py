"""Every figure of the bundled model on the docs pages, in the README and in the model card, rendered from one results
file: bench/results/classic_codecs.json, which `bench/classic_codecs.py` writes (dev scores of the bundled model and
of Opus and Codec2, measured in one run, and the model's training facts from its `training.json`).

    .venv/bin/python bench/figures.py           # rewrite every figures region, re-run the pages showing the card, README
    .venv/bin/python bench/figures.py --check   # exit 1 naming each region that differs (tests/test_figures.py)

A region is `<!-- figures:NAME -->` ... `<!-- /figures -->` in a markdown cell of a notebook or in a markdown file;
NAME is a key of RENDER, and only the text between the markers is rewritten. The results must be of the bundled
weights: a re-bundle without a new benchmark run is refused, so no page can show the old model's figures.
"""
import argparse, json, re, subprocess, sys, textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "classic_codecs.json"
CARD = ROOT / "rotvq_audio" / "pretrained" / "default" / "MODEL_CARD.md"
PAGES = [ROOT / "nbs" / "index.ipynb", ROOT / "nbs" / "pretrained.ipynb", ROOT / "nbs" / "tutorials" / "quickstart.ipynb", CARD]
SHOW_CARD = [ROOT / "nbs" / "index.ipynb", ROOT / "nbs" / "pretrained.ipynb"]  # their outputs hold the card's tables
REGION = re.compile(r"(<!-- figures:([a-z-]+) -->\n)(.*?)(<!-- /figures -->)", re.S)
BITRATES = (1.5, 3.0, 6.0)


class Figures:
    "The results file, read by what the pages need: our row at a bitrate, a peer's row, the originals, training facts."
    def __init__(self, results: dict):
        self.r, self.rows = results, results["rows"]
        self.training = results["training"]

    def ours(self, kbps): return next(r for r in self.rows if r["codec"].startswith("rotvq") and r["kbps"] == kbps)
    def peer(self, prefix): return next(r for r in self.rows if r["codec"].startswith(prefix))
    @property
    def original(self): return self.peer("original")


def f3(v): return "n/a" if v is None or v != v else f"{v:.3f}"
def f1(v): return "n/a" if v is None or v != v else f"{v:.1f}"
def slash(fig, key, fmt=f3): return " / ".join(fmt(fig.ours(k)["means"][key]) for k in BITRATES)


def headline(fig: Figures) -> str:
    t, op, c32, c16 = fig.training, fig.peer("Opus 6"), fig.peer("Codec2 3200"), fig.peer("Codec2 1600")
    m = lambda r, k: f3(r["means"][k])
    steps = f"{t['steps']:,}".replace(",", " ")
    return textwrap.fill(f"The bundled model trained for {t['cpu_hours']:.2f} CPU-hours ({steps} steps, recipe `{t['recipe']}`) on "
            f"{t['train_minutes']:.0f} minutes of speech. On the {fig.r['n_files']} clips of the shared dev set (speakers "
            f"it never trained on) it scores PESQ-WB {slash(fig, 'pesq_wb')} at 1.5 / 3 / 6 kbps, STOI "
            f"{slash(fig, 'stoi')} and DNSMOS OVRL {slash(fig, 'dnsmos_ovrl')} (the uncoded clips: "
            f"{m(fig.original, 'dnsmos_ovrl')}). In the same run, Opus asked for 6 kbps ({op['kbps']:g} kbps measured) "
            f"scores PESQ-WB {m(op, 'pesq_wb')} and OVRL {m(op, 'dnsmos_ovrl')}, Codec2 3200 {m(c32, 'pesq_wb')} and "
            f"{m(c32, 'dnsmos_ovrl')}, Codec2 1600 {m(c16, 'pesq_wb')} and {m(c16, 'dnsmos_ovrl')} "
            f"(`bench/classic_codecs.py`).", 115) + "\n"


def eval_table(fig: Figures) -> str:
    rows = ["| kbps | stages | effective kbps | PESQ-WB | PESQ-NB | STOI | SI-SDR | mel distance | DNSMOS OVRL |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| uncoded | | | | | | | | {f3(fig.original['means']['dnsmos_ovrl'])} |"]
    for k in BITRATES:
        r, m = fig.ours(k), fig.ours(k)["means"]
        rows.append(f"| {k:g} | {int(k * 2)} | {r['effective_kbps']:.2f} | {f3(m['pesq_wb'])} | {f3(m['pesq_nb'])} | "
                    f"{f3(m['stoi'])} | {f1(m['si_sdr'])} | {f3(m['mel_distance'])} | {f3(m['dnsmos_ovrl'])} |")
    return "\n".join(rows) + "\n"


def peers_table(fig: Figures) -> str:
    rows = ["| codec | kbps | PESQ-WB | PESQ-NB | STOI | SI-SDR | DNSMOS OVRL |", "|---|---|---|---|---|---|---|"]
    for r in fig.rows:
        if r["kbps"] is None or r["codec"].startswith("rotvq"): continue
        name = re.sub(r" \((opusenc[^)]*)\)", r" (`\1`)", r["codec"]).replace(" (8 kHz via sox)", "")
        m = r["means"]
        rows.append(f"| {name} | {r['kbps']:g} | {f3(m['pesq_wb'])} | {f3(m['pesq_nb'])} | {f3(m['stoi'])} | "
                    f"{f1(m['si_sdr'])} | {f3(m['dnsmos_ovrl'])} |")
    col = lambda key, fmt=f3: " / ".join(fmt(fig.ours(k)["means"][key]) for k in reversed(BITRATES))
    rows.append(f"| this model, 6 / 3 / 1.5 kbps | 6 / 3 / 1.5 | {col('pesq_wb')} | {col('pesq_nb')} | {col('stoi')} | "
                f"{col('si_sdr', f1)} | {col('dnsmos_ovrl')} |")
    return "\n".join(rows) + "\n"


RENDER = {"headline": headline, "eval-table": eval_table, "peers-table": peers_table}


def load_figures(results=RESULTS) -> Figures:
    "The results, refused unless they are of the bundled weights."
    from rotvq_audio import Codec
    r = json.loads(Path(results).read_text())
    bundled = Codec.from_pretrained().weights_hash
    if r.get("weights_hash") != bundled:
        raise SystemExit(f"figures.py: {results} is of weights {str(r.get('weights_hash'))[:12]}, the bundled model is "
                         f"{bundled[:12]}: run `.venv/bin/python bench/classic_codecs.py --reuse_peers` first")
    return Figures(r)


def render_text(text: str, fig: Figures) -> str:
    "`text` with every figures region rendered afresh."
    def one(m):
        if m.group(2) not in RENDER: raise SystemExit(f"figures.py: unknown region {m.group(2)!r}; known: {list(RENDER)}")
        return m.group(1) + RENDER[m.group(2)](fig) + m.group(4)
    return REGION.sub(one, text)


def regions(text: str) -> list[tuple[str, str]]:
    "(name, body) of every figures region of `text`."
    return [(m.group(2), m.group(3)) for m in REGION.finditer(text)]


def page_text(path: Path) -> str:
    "A markdown file's text, or a notebook's markdown cells joined."
    if path.suffix != ".ipynb": return path.read_text()
    return "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")


def render_page(path: Path, fig: Figures):
    "Rewrite the regions of a markdown file, or of a notebook's markdown cells."
    if path.suffix != ".ipynb": path.write_text(render_text(path.read_text(), fig)); return
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "markdown": c["source"] = render_text("".join(c["source"]), fig).splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def rel(path: Path) -> str: return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def stale_regions(path: Path, fig: Figures) -> list[str]:
    "What is wrong with the regions of `path`: none at all, or each region that differs from its rendering."
    text = page_text(path)
    if not regions(text): return [f"{rel(path)}: no figures region"]
    return [f"{rel(path)}: region {n!r} differs from {rel(RESULTS)}"
            for (n, body), (_, want) in zip(regions(text), regions(render_text(text, fig))) if body != want]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 naming each region that differs")
    a = p.parse_args()
    fig = load_figures()
    if a.check:
        if stale := [s for page in PAGES for s in stale_regions(page, fig)]:
            sys.exit("figures.py --check:\n  " + "\n  ".join(stale) + "\nrun `.venv/bin/python bench/figures.py`")
        return
    for page in PAGES: render_page(page, fig)
    bin = Path(sys.executable).parent  # the pages that show the card's tables in their saved outputs are re-run
    for nb in SHOW_CARD: subprocess.run([str(bin / "nbdev-test"), "--save", str(nb)], cwd=ROOT, check=True)
    subprocess.run([str(bin / "nbdev-clean")], cwd=ROOT, check=True)
    subprocess.run([sys.executable, str(ROOT / ".ci" / "readme.py")], check=True)


if __name__ == "__main__": main()
