"""The package's module graph, read from the imports of rotvq_audio/*.py, and its picture for the docs.

    .venv/bin/python .ci/architecture.py           # redraw nbs/images/architecture.png (+ .json, the graph it shows)
    .venv/bin/python .ci/architecture.py --check   # exit 1 when the saved graph differs from the imports

tests/test_architecture.py checks the same graph against the data flow the docs describe (FLOW below)."""
import ast, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "rotvq_audio"
# The one-way data flow as (column, layer): a module may import only modules of a lower layer. The training side
# (config -> checkpoint -> train) and the API side (tokenizer -> cli, lm_tokens) both stand on the codec.
PLACE = {"core": (0, 0), "codebook": (-1, 1), "modules": (0.2, 1), "data": (1.2, 1), "quantize": (-1, 2),
         "metrics": (-1.6, 3), "codec": (-0.4, 3), "tokenfile": (0.7, 3), "streaming": (1.6, 3),
         "losses": (-1.6, 4), "evaluate": (-0.6, 4), "api": (1.1, 4), "config": (-1.6, 5), "lm_tokens": (1.6, 5), "corpus": (1.3, 6), "cli": (0.6, 7),
         "checkpoint": (-1.1, 6), "optim": (-2.0, 6), "trainer": (-1.5, 7), "train": (-1.5, 8), "study": (-1.5, 9)}
ROLE = {"core": "files, configs, processes", "codebook": "lookup, k-means, EMA", "quantize": "rotation trick, RVQ, codes", "modules": "conv blocks, STFT", "data": "audio, corpus",
        "metrics": "PESQ, STOI, ...", "codec": "encoder-RVQ-decoder", "losses": "mel, STFT, GAN", "evaluate": "rotvq-eval",
        "config": "TrainConfig", "checkpoint": "run store", "optim": "AdamW, schedule", "trainer": "the loop", "train": "rotvq-train",
        "api": "Codec API", "streaming": "CodecStream", "tokenfile": "token files",
        "lm_tokens": "LM token layouts", "corpus": "tokenize a corpus", "cli": "rotvq", "study": "rotvq-study"}


def modules() -> list[str]:
    "The package's modules (not `_modidx`, not `__init__`)."
    return sorted(p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_"))


def imports(name: str) -> list[tuple[str, str]]:
    "(module, name) of every package-internal import of module `name`; name is '*' for `from . import module`."
    out = []
    for node in ast.walk(ast.parse((PKG / f"{name}.py").read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module: out += [(node.module, a.name) for a in node.names]
            else: out += [(a.name, "*") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("rotvq_audio."):
            out += [(node.module.split(".", 1)[1], a.name) for a in node.names]
    return out


def import_graph() -> dict[str, list[str]]:
    "module -> the package modules it imports."
    return {m: sorted({dep for dep, _ in imports(m)}) for m in modules()}


def reachable(graph: dict, m: str) -> set:
    "Every module `m` imports, directly or through others."
    seen, todo = set(), list(graph[m])
    while todo:
        d = todo.pop()
        if d not in seen: seen.add(d); todo += graph[d]
    return seen


def reduced(graph: dict) -> dict:
    "The graph without the imports that a longer chain of imports already implies (what the picture draws)."
    return {m: [d for d in deps if not any(d in reachable(graph, e) for e in deps if e != d)] for m, deps in graph.items()}


def draw(graph: dict, path: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pos = {m: (x * 1.25, -y) for m, (x, y) in PLACE.items()}
    fig, ax = plt.subplots(figsize=(8.5, 9))
    for m, deps in reduced(graph).items():
        for d in deps:
            (x0, y0), (x1, y1) = pos[m], pos[d]
            ax.annotate("", xy=(x0, y0 + 0.22), xytext=(x1, y1 - 0.22),
                        arrowprops=dict(arrowstyle="->", color="0.55", lw=0.8, shrinkA=2, shrinkB=2, connectionstyle="arc3,rad=0.08"))
    for m, (x, y) in pos.items():
        ax.text(x, y, f"{m}\n{ROLE.get(m, '')}", ha="center", va="center", fontsize=8.5,
                bbox=dict(boxstyle="round,pad=0.35", fc="#eef3fb" if m not in ("api", "streaming", "tokenfile", "lm_tokens", "cli") else "#fbf1e6", ec="0.4"))
    ax.set_xlim(-2.9, 2.4); ax.set_ylim(-9.5, 0.5); ax.axis("off")
    ax.set_title("rotvq_audio: data flows down each arrow, from a module to those that import it\n"
                 "(imports that a longer chain implies are not drawn; blue: training side, orange: API side)", fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)


def main(argv):
    graph, saved = import_graph(), ROOT / "nbs" / "images" / "architecture.json"
    if "--check" in argv:
        if saved.exists() and json.loads(saved.read_text()) == graph: return 0
        print(f"{saved} is out of date: run .venv/bin/python .ci/architecture.py", file=sys.stderr); return 1
    saved.write_text(json.dumps(graph, indent=1) + "\n"); draw(graph, saved.with_suffix(".png"))
    print(f"wrote {saved} and {saved.with_suffix('.png')}"); return 0


if __name__ == "__main__": sys.exit(main(sys.argv[1:]))
