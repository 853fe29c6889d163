"The package's shape: data flows one way through its modules, no private name crosses a module, modules stay short, and the docs' picture shows the real imports."
import importlib.util, json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("architecture", ROOT/".ci"/"architecture.py")
A = importlib.util.module_from_spec(spec); spec.loader.exec_module(A)
MAX_LINES = 600  # an alarm, not a budget: a module this long likely holds two concepts (split by concept, never by packing lines)


def test_every_module_has_a_place_in_the_flow():
    assert sorted(A.PLACE) == A.modules()


def test_data_flows_one_way():
    "A module imports only modules of a lower layer: no cycles, and nothing below imports what stands on it."
    layer = {m: y for m, (_, y) in A.PLACE.items()}
    upward = [f"{m} imports {d}" for m, deps in A.import_graph().items() for d in deps if layer[d] >= layer[m]]
    assert not upward, upward


def test_nothing_below_the_trainer_imports_it():
    users = sorted(m for m, deps in A.import_graph().items() if {"train", "trainer"} & set(deps))
    assert users == ["study", "train"], users  # the command, and the study that runs trainings


def test_the_api_stands_on_the_model_only():
    "The public `Codec` and what it uses never reach into training."
    assert not A.reachable(A.import_graph(), "api") & {"losses", "config", "checkpoint", "optim", "trainer", "train", "evaluate"}


def test_no_private_name_crosses_a_module():
    crossing = [f"{m} imports {dep}.{name}" for m in A.modules() for dep, name in A.imports(m) if name.startswith("_")]
    assert not crossing, crossing


def test_modules_stay_short():
    long = {m: n for m in A.modules() if (n := len((A.PKG/f"{m}.py").read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these into concepts (limit {MAX_LINES} lines): {long}"


def test_the_docs_picture_shows_the_imports():
    saved = json.loads((ROOT/"nbs"/"images"/"architecture.json").read_text())
    assert saved == A.import_graph(), "nbs/images/architecture.png is out of date: run .venv/bin/python .ci/architecture.py"
    assert "images/architecture.png" in (ROOT/"nbs"/"index.ipynb").read_text()
