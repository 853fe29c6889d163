"The rotation-trick study runner: the CLI end to end on the smoke budget, resuming, rebuilding reports, bad input."
import csv, json, math
import pytest, torch
from dataclasses import replace
from rotvq_audio import study as S
from rotvq_audio.codec import CodecModel, CodecConfig


@pytest.fixture(scope="module")
def smoke_study(tmp_path_factory):
    "One finished smoke grid: two variants, both estimators, one seed."
    out = tmp_path_factory.mktemp("study")
    rc = S.main(["--budget", "smoke", "--out", str(out), "--variants", "base,no_dead_code", "--steps", "4", "--jobs", "1"])
    assert rc == 0
    return out


def test_cli_writes_every_table_and_plot(smoke_study):
    names = {p.name for p in smoke_study.iterdir()}
    assert {"results.csv", "summary.md", "study.json", "curves.png", "pesq.png", "usage.png", "quant_error.png", "latent_residual.png", "grad_angle.png"} <= names
    rows = list(csv.DictReader(open(smoke_study/"results.csv")))
    assert [(r["variant"], r["grad"]) for r in rows] == [("base", "rotation"), ("base", "ste"), ("no_dead_code", "rotation"), ("no_dead_code", "ste")]
    for r in rows:
        assert 0 < float(r["utilization"]) <= 1 and 0 <= float(r["norm_entropy"]) <= 1
        depths = sorted(int(k.split("@n")[1]) for k in r if k.startswith("pesq_wb@n"))
        assert depths and all(math.isfinite(float(r[f"{m}@n{d}"])) for m in S.HEADLINE for d in depths)
    md = (smoke_study/"summary.md").read_text()
    assert "| base/rotation | 1 |" in md and "| no_dead_code | 1 |" in md  # the paired table
    meta = json.loads((smoke_study/"study.json").read_text())
    assert meta["budget"]["steps"] == 4 and meta["machine"]["torch"] == torch.__version__


def test_runs_differ_only_in_the_factor_studied(smoke_study):
    cfgs = {p.name: json.loads((p/"train_config.json").read_text()) for p in (smoke_study/"work").iterdir()}
    a, b = cfgs["no_dead_code-rotation-s0"]["codec"], cfgs["no_dead_code-ste-s0"]["codec"]
    assert (a["quantizer"]["grad"], a["quantizer"]["lookup"], a["quantizer"]["dead_code_threshold"]) == ("rotation", "cosine", 0)
    assert {k: v for k, v in a["quantizer"].items() if k != "grad"} == {k: v for k, v in b["quantizer"].items() if k != "grad"}
    assert {k: v for k, v in a.items() if k != "quantizer"} == {k: v for k, v in b.items() if k != "quantizer"}


def test_finished_runs_are_not_retrained(smoke_study, monkeypatch):
    def boom(*a, **k): raise AssertionError("retrained a finished run")
    monkeypatch.setattr(S, "Trainer", boom)
    # in-process (the CLI's spawned workers would not see the monkeypatch)
    before = (smoke_study/"runs"/"base-ste-s0.json").read_text()
    r = S.run_one(S.StudyRun("base", "ste", 0), S.BUDGETS["smoke"], smoke_study, smoke_study/"work")
    assert json.dumps(r, indent=1) == before


def test_tables_hold_every_finished_run_as_results_arrive(smoke_study, tmp_path, monkeypatch):
    "A grid resumed with some runs finished writes tables with all finished runs, not only the ones this call completes."
    out = tmp_path/"out"; (out/"runs").mkdir(parents=True)
    for p in (smoke_study/"runs").glob("*.json"):
        if p.name != "base-ste-s0.json": (out/"runs"/p.name).write_text(p.read_text())
    sizes, write = [], S.write_results
    monkeypatch.setattr(S, "write_results", lambda results, *a, **k: (sizes.append(len(results)), write(results, *a, **k))[1])
    budget = replace(S.BUDGETS["smoke"], steps=4, jobs=1)
    S.run_study(budget, out, smoke_study/"work", S.study_grid(["base", "no_dead_code"], ["rotation", "ste"], budget), log=lambda *a: None)
    assert sizes[0] >= 3 and sizes[-1] == 4, sizes


def test_report_only_rebuilds_tables(smoke_study):
    (smoke_study/"summary.md").unlink(); (smoke_study/"pesq.png").unlink()
    assert S.main(["--budget", "smoke", "--out", str(smoke_study), "--variants", "base,no_dead_code", "--report-only"]) == 0
    assert (smoke_study/"summary.md").exists() and (smoke_study/"pesq.png").exists()


def test_report_only_without_runs_fails_clearly(tmp_path, capsys):
    assert S.main(["--out", str(tmp_path), "--report-only"]) == 2
    assert "no finished runs" in capsys.readouterr().err


@pytest.mark.parametrize("argv, msg", [(["--budget", "huge"], "unknown budget"), (["--variants", "base,wider"], "unknown variants"),
                                        (["--estimators", "rotation,gumbel"], "unknown estimators")])
def test_bad_arguments_name_the_problem(argv, msg, capsys, tmp_path):
    assert S.main(argv + ["--out", str(tmp_path)]) == 2
    assert msg in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_gradient_diagnostics_on_euclidean_codes_change_the_norm():
    torch.manual_seed(1)
    m = CodecModel(CodecConfig.tiny(n_q=3, quantizer=dict(grad="rotation", lookup="euclidean")))
    m.train(); m(torch.randn(4, 1, 3200) * 0.1)  # initialise codebooks
    d = S.gradient_diagnostics(m, torch.randn(2, 1, 3200) * 0.1)
    assert len(d["stage_norm_ratio"]) == 3 and all(math.isfinite(v) for v in d["stage_norm_ratio"])
    assert any(abs(v - 1) > 1e-3 for v in d["stage_norm_ratio"])  # lambda = |q|/|e| is not 1 without normalisation
    assert [s.grad for s in m.quantizer.stages] == ["rotation"] * 3


def test_gradient_diagnostics_of_identical_estimators_agree(monkeypatch):
    "With the rotation replaced by the STE the two encoder gradients coincide (up to acos rounding near 1): the comparison is sound."
    torch.manual_seed(2)
    m = CodecModel(CodecConfig.tiny(n_q=2)); m.train(); m(torch.randn(4, 1, 3200) * 0.1)
    from rotvq_audio import quantize as Q
    monkeypatch.setitem(Q._ESTIMATORS, "rotation", Q.straight_through)
    d = S.gradient_diagnostics(m, torch.randn(2, 1, 3200) * 0.1)
    assert d["encoder_angle_deg"] < 0.1 and abs(d["encoder_norm_ratio"] - 1) < 1e-5
