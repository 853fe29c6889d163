"""Write README.md from nbs/index.ipynb (nbdev's own README step needs Quarto), or check that it is in sync.

    .venv/bin/python .ci/readme.py           # regenerate README.md
    .venv/bin/python .ci/readme.py --check   # exit 1, with a diff, when README.md differs

Cells flagged `#| hide` are dropped; `#| echo: false` keeps a cell's output without its code; other `#|`
directive lines are removed. Outputs are the saved ones (the notebook is not executed). README.md is also the
package's description on PyPI, where relative links break, so links to notebooks become absolute links into the
repository on GitHub and images become raw.githubusercontent.com URLs."""
import difflib, posixpath, re, sys, tomllib
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

ROOT = Path(__file__).resolve().parents[1]
REPO = tomllib.loads((ROOT/"pyproject.toml").read_text())["project"]["urls"]["Repository"]  # https://github.com/OWNER/NAME
BLOB, RAW = f"{REPO}/blob/main/", REPO.replace("//github.com/", "//raw.githubusercontent.com/") + "/main/"
DIRECTIVE = re.compile(r"^#\|\s*(.*)$", re.M)


def readme_text(nb_path=ROOT/"nbs"/"index.ipynb") -> str:
    "The README's markdown, from the notebook at `nb_path`."
    nb = nbformat.read(nb_path, as_version=4)
    cells = []
    for c in nb.cells:
        flags = [d.strip() for d in DIRECTIVE.findall(c.source)] if c.cell_type == "code" else []
        if "hide" in flags: continue
        c.source = DIRECTIVE.sub("", c.source).strip("\n")
        if "echo: false" in flags:
            c.source = ""
            c.outputs = [o for o in c.outputs if o.get("output_type") in ("display_data", "execute_result")]
        cells.append(c)
    nb.cells = cells
    nb.metadata["language_info"] = {"name": "python"}  # fenced code blocks say python (nbdev-clean drops this)
    md, _ = MarkdownExporter(exclude_input_prompt=True, exclude_output_prompt=True).from_notebook_node(nb)
    md = re.sub(r"```python\s*```\n", "", md)  # inputs emptied by `echo: false`
    md = re.sub(r"!\[([^\]]*)\]\(images/", lambda m: f"![{m.group(1)}]({RAW}nbs/images/", md)
    # links in the notebook are relative to nbs/
    md = re.sub(r"\]\(((?!https?:|#)[\w./-]+)\)", lambda m: f"]({BLOB}{posixpath.normpath('nbs/' + m.group(1))})", md)
    md = re.sub(r"\n{3,}", "\n\n", md).strip() + "\n"
    return "<!-- Generated from nbs/index.ipynb by .ci/readme.py: edit the notebook, not this file. -->\n\n" + md


def main(argv):
    new, path = readme_text(), ROOT/"README.md"
    if "--check" in argv:
        old = path.read_text() if path.exists() else ""
        if old == new: return 0
        sys.stderr.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "README.md", "from nbs/index.ipynb"))
        print("README.md is out of sync with nbs/index.ipynb: run .venv/bin/python .ci/readme.py", file=sys.stderr)
        return 1
    path.write_text(new)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__": sys.exit(main(sys.argv[1:]))
