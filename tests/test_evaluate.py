"`rotvq-eval`: reports for a tiny model, and how MODEL and DATA are resolved."
import csv, json
from pathlib import Path

import pytest
from rotvq_audio.metrics import dnsmos_available
import torch

from rotvq_audio.codec import CodecConfig, CodecModel
from rotvq_audio.data import default_speech_dir, speech_split
from rotvq_audio.evaluate import main, model_dir, data_items


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    "A freshly initialised tiny codec whose codebooks were set by one training-mode pass on dev audio."
    torch.manual_seed(0)
    m = CodecModel(CodecConfig.tiny())
    with torch.no_grad(): m.train()(torch.randn(2, 1, 16000)*0.1)  # k-means init of every stage
    d = tmp_path_factory.mktemp("tiny")/"model"
    m.save_pretrained(d)
    return d


def test_rotvq_eval_writes_report(tiny_model, tmp_path):
    out = tmp_path/"eval"
    assert main([str(tiny_model), "dev", "--out", str(out), "--max_files", "3", "--workers", "1", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["codebook_usage.png", "quality_vs_kbps.png", "report.json", "report.md"]
    rep = json.loads((out/"report.json").read_text())
    assert rep["n_files"] == 3 and rep["max_n_q"] == 12 and rep["frame_rate"] == 50
    assert [(b["n_q"], b["kbps"]) for b in rep["bitrates"]] == [(3, 1.5), (6, 3.0), (12, 6.0)]
    for b in rep["bitrates"]:
        dnsmos = {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl"} if dnsmos_available() else set()  # the mos extra
        assert set(b["means"]) == {"pesq_wb", "pesq_nb", "stoi", "si_sdr", "mel_distance"} | dnsmos
        assert len(b["rows"]) == 3 and len(b["codebook"]["perplexity"]) == b["n_q"]
        assert 0 < b["effective_kbps"] <= b["kbps"]
        assert 1 <= b["means"]["pesq_wb"] <= 4.7 and b["means"]["mel_distance"] > 0
    md = (out/"report.md").read_text()
    assert "| 1.5 | 3 |" in md and "## 6 kbps (12 stages)" in md
    for png in ("codebook_usage.png", "quality_vs_kbps.png"): assert (out/png).read_bytes()[:4] == b"\x89PNG"


def test_n_q_beyond_the_model_is_refused_not_skipped(tiny_model, tmp_path, capsys):
    assert main([str(tiny_model), "dev", "--out", str(tmp_path), "--n_q", "2,24", "--max_files", "1", "--workers", "1", "--quiet"]) == 2
    assert "expected n_q depths in [1, 12], got [24]" in capsys.readouterr().err and not (tmp_path/"report.json").exists()


def test_model_dir_accepts_run_folders(tiny_model, tmp_path):
    assert model_dir(tiny_model) == tiny_model
    assert model_dir(tiny_model.parent) == tiny_model  # a run folder's model/
    with pytest.raises(FileNotFoundError, match="expected a model folder"): model_dir(tmp_path)


def test_data_items_from_dev_manifest_and_folder(tmp_path):
    dev = data_items("dev")
    assert len(dev) == len(speech_split("dev")) and dev == sorted(dev)
    assert data_items("dev", max_files=2) == dev[:2]
    man = tmp_path/"m.csv"
    with open(man, "w", newline="") as f:
        w = csv.DictWriter(f, ["path"]); w.writeheader(); w.writerows({"path": p} for p in dev[:2])
    assert data_items(str(man)) == dev[:2]
    folder = Path(dev[0]).parent
    assert data_items(str(folder)) == sorted(str(p) for p in folder.glob("*.flac"))
    with pytest.raises(FileNotFoundError, match="expected 'dev'"): data_items(str(tmp_path/"nothing"))
