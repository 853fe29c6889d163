"""The release: the sdist and wheel that `python -m build` makes, what they hold, their metadata, and the wheel
installed on its own into a fresh virtual environment and used from a folder outside the checkout.

The fresh environment gets the wheel with `pip install --no-deps --no-index` and then sees this environment's
installed packages (torch and the rest) through a `.pth` line, without its editable rotvq-audio: `.pth` files
inside a directory added that way are not run, so the only rotvq_audio it can import is the wheel's. The
build needs the package index (for setuptools in build's isolated environment); everything else is offline.
Skip these with `pytest -m "not package"`; they take about a minute on 2 cores."""
import ast, email.parser, importlib.metadata as md, os, re, subprocess, sys, sysconfig, tarfile, tomllib, zipfile
from pathlib import Path
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
import rotvq_audio

pytestmark = pytest.mark.package
ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "rotvq_audio"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = PYPROJECT["project"]["scripts"]  # {"rotvq": "rotvq_audio.cli:main", ...}
DATA = ["pretrained/default/config.json", "pretrained/default/model.safetensors", "pretrained/default/discriminators.safetensors",
        "pretrained/default/MODEL_CARD.md", "pretrained/default/training.json",
        "assets/demo.flac", "configs/tiny.json", "configs/small.json", "configs/base.json"]
NOT_SHIPPED = ("nbs/", "tests/", "bench/", "data_scripts/", ".ci/", ".github/", "shared/", "speech/", "_proc/", "_docs")


def _tracked_modules() -> set[str]:
    "The package's .py files that git tracks (what nbdev-export wrote, plus __init__.py)."
    out = subprocess.run(["git", "ls-files", "rotvq_audio/*.py"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    "(wheel, sdist) built from the checkout by `python -m build` (sdist first, then the wheel from the sdist)."
    out = tmp_path_factory.mktemp("dist")
    r = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"python -m build failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    (whl,), (sdist,) = list(out.glob("*.whl")), list(out.glob("*.tar.gz"))
    return whl, sdist


def test_wheel_holds_the_package_and_nothing_else(dist):
    whl, _ = dist
    version = rotvq_audio.__version__
    expected = f"rotvq_audio-{version}-py3-none-any.whl"
    assert whl.name == expected, f"expected {expected}, got {whl.name}"
    info = f"rotvq_audio-{version}.dist-info/"
    with zipfile.ZipFile(whl) as z:
        names = z.namelist()
        # the bundled weights are the committed ones, byte for byte
        assert z.read("rotvq_audio/pretrained/default/model.safetensors") == (PKG / "pretrained/default/model.safetensors").read_bytes()
        eps = z.read(info + "entry_points.txt").decode()
    stray = [n for n in names if not (n.startswith("rotvq_audio/") or n.startswith(info))]
    assert not stray, f"files outside the package in the wheel: {stray}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.endswith(".ipynb")]
    modules = _tracked_modules()
    assert modules <= set(names), f"modules missing from the wheel: {modules - set(names)}"
    missing = [d for d in DATA if f"rotvq_audio/{d}" not in names]
    assert not missing, f"package data missing from the wheel: {missing}"
    assert {info + "licenses/LICENSE", info + "licenses/NOTICE"} <= set(names)
    for name, target in SCRIPTS.items(): assert f"{name} = {target}" in eps, f"entry point {name} missing: {eps}"
    print(f"\nwheel {whl.name}: {whl.stat().st_size / 2**20:.1f} MiB, {len(names)} files")


def test_sdist_holds_what_builds_the_wheel_and_nothing_else(dist):
    _, sdist = dist
    top = f"rotvq_audio-{rotvq_audio.__version__}/"
    names = [n.removeprefix(top) for n in tarfile.open(sdist).getnames()]
    for f in ("pyproject.toml", "README.md", "LICENSE", "NOTICE", "CHANGELOG.md", "CITATION.cff"): assert f in names, f
    assert _tracked_modules() <= set(names)
    assert all(f"rotvq_audio/{d}" in names for d in DATA)
    leaked = [n for n in names if n.startswith(NOT_SHIPPED)]
    assert not leaked, f"repository-only files in the sdist: {leaked[:10]}"
    assert [n for n in names if n.endswith((".flac", ".wav"))] == ["rotvq_audio/assets/demo.flac"]


def test_metadata_says_what_indexes_and_users_expect(dist):
    with zipfile.ZipFile(dist[0]) as z:
        m = email.parser.Parser().parsestr(z.read(f"rotvq_audio-{rotvq_audio.__version__}.dist-info/METADATA").decode())
    assert (m["Name"], m["Version"]) == ("rotvq-audio", rotvq_audio.__version__)
    assert m["License-Expression"] == "Apache-2.0" and set(m.get_all("License-File")) == {"LICENSE", "NOTICE"}
    assert m["Requires-Python"] == ">=3.11"
    classifiers = m.get_all("Classifier")
    assert "Programming Language :: Python :: 3.11" in classifiers and any(c.startswith("Development Status") for c in classifiers)
    urls = dict(u.split(", ", 1) for u in m.get_all("Project-URL"))
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    assert m["Description-Content-Type"] == "text/markdown"
    desc = m.get_payload()
    assert "from rotvq_audio import Codec" in desc
    relative = re.findall(r"\]\((?!https?://|#)([^)]+)\)", desc)  # PyPI cannot follow links into the repository
    assert not relative, f"relative links in the long description (README.md): {relative}"


def test_versions_agree():
    "`nbdev-bump-version` changes __init__.py; the citation and the changelog must follow."
    v = rotvq_audio.__version__
    assert re.search(rf"^version: {re.escape(v)}$", (ROOT / "CITATION.cff").read_text(), re.M), "CITATION.cff version"
    first = re.search(r"^## (?!Unreleased)(\S+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)  # above it: what is to come
    assert first == v, f"CHANGELOG.md's newest released section is {first}, the package is {v}"


def _imports(path: Path) -> tuple[set[str], set[str]]:
    "Top-level names a module imports: (required, optional), optional being those inside `try: ... except ImportError`."
    tree, optional = ast.parse(path.read_text()), set()
    for t in ast.walk(tree):
        if isinstance(t, ast.Try) and any(isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in t.handlers):
            optional |= {n for s in t.body for n in _names(s)}
    return _names(tree) - optional, optional


def _names(tree) -> set[str]:
    out = set()
    for t in ast.walk(tree):
        if isinstance(t, ast.Import): out |= {a.name.split(".")[0] for a in t.names}
        elif isinstance(t, ast.ImportFrom) and t.level == 0: out.add(t.module.split(".")[0])
    return out


def test_dependencies_are_what_the_package_imports():
    "Every third-party import is a declared dependency, and every dependency is imported (or reached through torch)."
    required, optional = set(), set()
    for f in _tracked_modules():
        r, o = _imports(ROOT / f); required |= r; optional |= o
    third_party = lambda names: {n for n in names if n not in sys.stdlib_module_names and n != "rotvq_audio"}
    dists = md.packages_distributions()
    used = {canonicalize_name(dists[n][0]) for n in third_party(required)}
    declared = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["dependencies"]}
    through_torch = {"tensorboard"}  # torch.utils.tensorboard imports it for the training logs
    assert used <= declared, f"imported but not declared in pyproject.toml: {sorted(used - declared)}"
    assert declared <= used | through_torch, f"declared but never imported: {sorted(declared - used - through_torch)}"
    assert third_party(optional) == {"huggingface_hub", "onnxruntime", "speechmos"}, "optional imports changed: document them in pyproject.toml"
    extras = {canonicalize_name(Requirement(r).name) for r in PYPROJECT["project"]["optional-dependencies"]["mos"]}
    assert extras == {"speechmos", "onnxruntime"}, "the mos extra is what metrics.dnsmos imports"


CHECK = r'''
import importlib.metadata as md, sys, os
from packaging.requirements import Requirement
import rotvq_audio
assert rotvq_audio.__file__.startswith(sys.prefix), f"rotvq_audio came from {rotvq_audio.__file__}, not the fresh venv {sys.prefix}"
unmet = []
for r in map(Requirement, md.requires("rotvq-audio")):
    if r.marker and not r.marker.evaluate({"extra": ""}): continue
    try: v = md.version(r.name)
    except md.PackageNotFoundError: unmet.append(f"{r} (not installed)"); continue
    if not r.specifier.contains(v, prereleases=True): unmet.append(f"{r} (found {v})")
assert not unmet, f"unmet dependencies: {unmet}"
import torch
from rotvq_audio import Codec
from rotvq_audio.cli import demo_clip
from rotvq_audio.data import load_audio
codec, sr = Codec.from_pretrained(), 16000
wav = load_audio(demo_clip(), sr)  # the clip shipped in the wheel, (T,)
codes = codec.encode(wav, sr, kbps=3)
audio = codec.decode(codes)
n = codec.num_frames(len(wav))
assert codes.shape == (1, 6, n) and codes.dtype == torch.int64, codes.shape
assert audio.shape[:2] == (1, 1) and abs(audio.shape[-1] - len(wav)) < codec.hop_length and bool(audio.isfinite().all())
print(f"rotvq_audio {rotvq_audio.__version__} from {os.path.dirname(rotvq_audio.__file__)}: {len(wav) / sr:.2f} s -> codes {tuple(codes.shape)} -> audio {tuple(audio.shape)}")
'''


def _run(cmd, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def test_wheel_works_on_its_own(dist, tmp_path):
    whl, _ = dist
    venv, work = tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="2")
    _run([sys.executable, "-m", "venv", str(venv)], work, env)
    py, bin_ = venv / "bin" / "python", venv / "bin"
    _run([py, "-m", "pip", "install", "--no-deps", "--no-index", str(whl)], work, env)
    # only now does the venv see this environment's packages: pip above saw none of them (nor our editable install)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work, env).stdout.strip())
    here = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_reuse_installed_torch.pth").write_text("\n".join(sorted(here)) + "\n")
    r = _run([py, "-c", CHECK], work, env)
    assert "-> codes (1, 6," in r.stdout, r.stdout
    r = _run([bin_ / "rotvq", "demo", "--out", "demo_out"], work, env)
    assert "kbps" in r.stdout and sorted(p.suffix for p in (work / "demo_out").iterdir()) == [".npz", ".wav"], r.stdout
    npz = next((work / "demo_out").glob("*.npz"))
    assert "rotvq tokens v" in _run([bin_ / "rotvq", "info", str(npz)], work, env).stdout
    for script in SCRIPTS:
        r = _run([bin_ / script, "--help"], work, env)
        assert r.stdout.startswith("usage:"), f"{script} --help: {r.stdout[:300]}"
    print(f"\n{r.args[0]} and the rest run from {work}; the demo wrote {sorted(p.name for p in (work / 'demo_out').iterdir())}")
