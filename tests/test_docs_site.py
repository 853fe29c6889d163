"""The docs site, checked offline: `.ci/docs` stages the notebooks (nbdev-proc-nbs) and renders every page with
`jupyter nbconvert` into _docs_html/; these tests check that no notebook is left out, that every local link and image
resolves, and open the landing page and two tutorials in headless Chromium: the page loads, its code cells and images
render, its links point at files that exist. Screenshots go to screenshots/ (not committed)."""
import html.parser, json, posixpath, re, subprocess, time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from browser import ROOT, SCREENSHOTS, Chromium, chromium_path

NBS, SITE = ROOT / "nbs", ROOT / "_docs_html"
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif")  # nbconvert shows these as <img>; svg goes inline


def doc_notebooks():
    "The notebooks in nbs/ that nbdev makes pages of (it skips files and folders whose names start with _ or .)"
    return sorted(p.relative_to(NBS).as_posix() for p in NBS.rglob("*.ipynb")
                  if not any(s.startswith(("_", ".")) for s in p.relative_to(NBS).parts))


def pages_to_open():
    "The landing page and two tutorials (tutorials/speech_lm first); the pretrained-model page if tutorials are short"
    nbs = doc_notebooks()
    tuts = sorted((p for p in nbs if p.startswith("tutorials/")), key=lambda p: p != "tutorials/speech_lm.ipynb")
    picks = (tuts + [p for p in ("pretrained.ipynb", "00_quantize.ipynb") if p in nbs])[:2]
    return ["index.ipynb"] + picks


@pytest.fixture(scope="session")
def site():
    "Build the site once per session with .ci/docs; returns {notebook (relative to nbs/): page (relative to SITE)}"
    t0 = time.monotonic()
    r = subprocess.run([str(ROOT / ".ci" / "docs")], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if r.returncode:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-40:])
        pytest.fail(f".ci/docs failed (the end of its output):\n{tail}", pytrace=False)
    print(f"\n{r.stdout.strip()} [{time.monotonic() - t0:.0f} s]")
    return json.loads((SITE / "_pages.json").read_text())


class _Refs(html.parser.HTMLParser):
    "The URLs a page refers to: links, images, scripts, stylesheets, media"
    ATTRS = {"a": "href", "link": "href", "img": "src", "script": "src", "source": "src", "iframe": "src",
             "audio": "src", "video": "src", "embed": "src"}
    def __init__(self):
        super().__init__(); self.refs = []
    def handle_starttag(self, tag, attrs):
        if (a := self.ATTRS.get(tag)) and (v := dict(attrs).get(a)): self.refs.append((tag, v))


def local_target(page, url):
    "The path (relative to SITE) a URL on `page` points at, or None for external, data: and in-page URLs"
    if re.match(r"^[a-z][a-z0-9+.-]*:|^//|^#", url.strip(), re.I): return None
    path = unquote(urlsplit(url.strip()).path)
    if not path: return None
    return posixpath.normpath(posixpath.join(posixpath.dirname(page), path))


def broken_refs(page):
    p = _Refs(); p.feed((SITE / page).read_text(encoding="utf-8"))
    bad = []
    for tag, url in p.refs:
        t = local_target(page, url)
        if t is not None and (t.startswith("../") or not (SITE / t).is_file()): bad.append(f"{page}: <{tag}> {url}")
    return bad


def test_every_notebook_has_a_page(site):
    assert sorted(site) == doc_notebooks(), "pages and notebooks differ: a notebook was dropped or a page is stale"
    small = [p for p in site.values() if (SITE / p).stat().st_size < 10_000]
    assert not small, f"suspiciously small pages: {small}"
    htmls = sorted(p.relative_to(SITE).as_posix() for p in SITE.rglob("*.html"))
    assert htmls == sorted(site.values()), "_docs_html/ holds pages that no notebook made"


def test_local_links_and_images_resolve(site):
    "Every relative href/src of every page points at a file of the site (links to notebooks were made links to pages)"
    bad = [b for page in sorted(site.values()) for b in broken_refs(page)]
    assert not bad, "broken local links or images:\n" + "\n".join(bad)


@pytest.fixture(scope="module")
def browser():
    with Chromium(chromium_path()) as b: yield b


def saved_images(nb):
    "How many <img> a page of this staged notebook needs at least: image outputs plus markdown images"
    n = 0
    for c in nb["cells"]:
        src = "".join(c.get("source", ""))
        if c["cell_type"] == "markdown": n += len(re.findall(r"!\[[^\]]*\]\(|<img\b", src))
        n += sum(any(m in o.get("data", {}) for m in IMAGE_MIMES) for o in c.get("outputs", []))
    return n


PAGE_STATE = """(() => {
  const cells = [...document.querySelectorAll('.jp-Cell.jp-CodeCell')];
  return {
    title: document.title,
    h1: (document.querySelector('h1') || {}).textContent || '',
    code_cells: cells.length,
    highlighted: cells.filter(c => c.querySelector('.jp-InputArea .highlight pre span')).length,
    code_text: cells.map(c => (c.querySelector('.jp-InputArea pre') || {}).textContent || '').join('\\n').length,
    outputs: document.querySelectorAll('.jp-OutputArea-output').length,
    images: [...document.images].map(i => ({src: i.getAttribute('src').slice(0, 60), ok: i.complete && i.naturalWidth > 0,
                                           w: i.naturalWidth, h: i.naturalHeight})),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => h.startsWith('file:')),
  };
})()"""


@pytest.mark.parametrize("nb", pages_to_open())
def test_page_in_chromium(site, browser, nb):
    page = site[nb]
    staged = json.loads((ROOT / "_proc" / nb).read_text())
    t0 = time.monotonic()
    browser.goto((SITE / page).as_uri())
    s = browser.js(PAGE_STATE)
    shot = SCREENSHOTS / f"docs_{page[:-5].replace('/', '_')}.png"
    browser.screenshot(shot)
    if s["images"]:  # a second shot with the first image in view
        browser.js("document.images[0].scrollIntoView({block: 'center'})")
        browser.screenshot(shot.with_name(shot.stem + "_image.png"))
    print(f"\n{page}: loaded in {time.monotonic() - t0:.1f} s, title {s['title']!r}, {s['code_cells']} code cells, "
          f"{s['outputs']} outputs, {len(s['images'])} images, {len(s['links'])} local links; screenshot {shot}")

    assert s["title"].strip() and s["h1"].strip(), f"{page}: no title or heading"
    n_code = sum(c["cell_type"] == "code" for c in staged["cells"])
    n_src = sum(c["cell_type"] == "code" and "".join(c.get("source", "")).strip() != "" for c in staged["cells"])
    assert s["code_cells"] == n_code, f"{page}: {s['code_cells']} code cells rendered, the notebook has {n_code}"
    assert s["highlighted"] >= n_src and (n_src == 0 or s["code_text"] > 0), f"{page}: code cells without highlighted code"
    bad = [i for i in s["images"] if not i["ok"]]
    assert not bad, f"{page}: images that did not render: {bad}"
    need = saved_images(staged)
    assert len(s["images"]) >= need, f"{page}: {len(s['images'])} images rendered, the notebook has {need}"
    missing = [u for u in s["links"] if not Path(unquote(urlsplit(u).path)).is_file()]
    assert not missing, f"{page}: links to files that do not exist: {missing}"


AUDIO_STATE = """[...document.querySelectorAll('audio')].map(a => ({src: a.getAttribute('src'), ready: a.readyState,
  duration: a.duration, error: a.error && a.error.code}))"""


def test_every_player_of_the_listening_page_loads_audio(site, browser):
    "The listening page (issue 32): every <audio> has loaded its file's metadata, with a duration above zero."
    page = site["listen.ipynb"]
    browser.goto((SITE / page).as_uri())
    browser.wait_for("[...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)", timeout=60,
                     what="the players' metadata")
    players = browser.js(AUDIO_STATE)
    browser.screenshot(SCREENSHOTS / "docs_listen.png")
    samples = json.loads((NBS / "listen" / "samples.json").read_text())
    assert len(players) == sum(len(c["samples"]) for c in samples["clips"]) > 0
    bad = [p for p in players if p["error"] or not p["duration"] > 0]
    assert not bad, f"players without audio: {bad}"
