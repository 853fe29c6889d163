"""Saved notebook outputs are what the docs site shows (issue 32): no warning a user should not see, and no path of
the machine that ran them (the checkout, the home folder, the virtual environment). Temporary folders of a lesson
(`/tmp/tmp...`) are allowed: they name nothing about the machine."""
import json, re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MACHINE = [re.escape(str(ROOT)), re.escape(str(Path.home())), "site-packages", r"/work/", r"/home/\w+"]
WARNING = re.compile(r"\b\w*Warning\b: |^\s*warnings\.warn\(", re.M)


def outputs():
    "(notebook, cell index, output text) of every saved output of every notebook in nbs/."
    for nb in sorted((ROOT / "nbs").rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb.parts: continue
        for i, c in enumerate(json.loads(nb.read_text())["cells"]):
            for o in c.get("outputs", []):
                text = "".join(o.get("text", "")) + "".join(o.get("traceback", []))
                text += "".join("".join(v) if isinstance(v, list) else "" for k, v in o.get("data", {}).items()
                                if k.startswith("text/"))
                yield nb.relative_to(ROOT), i, text


def test_no_saved_output_shows_a_warning():
    bad = [f"{nb} cell {i}: {WARNING.search(t).group(0).strip()}" for nb, i, t in outputs() if WARNING.search(t)]
    assert not bad, "\n".join(bad)


def test_no_saved_output_names_a_path_of_the_machine_that_ran_it():
    pat = re.compile("|".join(MACHINE))
    bad = [f"{nb} cell {i}: ...{t[max(0, m.start() - 40):m.end() + 40]!r}..." for nb, i, t in outputs() if (m := pat.search(t))]
    assert not bad, "\n".join(bad)
