"Trainer integration tests: learning, exact resume, DDP on CPU, crash-safe checkpoints, signals, non-finite losses."
import json, os, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch as st
import torch

from rotvq_audio.trainer import Trainer, TrainHooks, NonFiniteLoss
from rotvq_audio.train import main
from rotvq_audio.codec import CodecModel, CodecConfig
from rotvq_audio.checkpoint import find_checkpoint
from rotvq_audio.config import load_config
from rotvq_audio.core import override

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny(tmp_path, name="run", **kw):
    "The bundled tiny config on a few clips, without validation unless asked."
    cfg = load_config("tiny")
    for k, v in {"out_dir": str(tmp_path/name), "val_clips": 0, "max_train_clips": 8, "adv_start_step": 1000, **kw}.items():
        cfg = override(cfg, k, v)
    return cfg


def weights(run): return st.load_file(str(Path(run)/"model"/"model.safetensors"))


def cli(run, *args, env=None, **popen):
    "Start `python -m rotvq_audio.train tiny` on a few clips as a subprocess."
    cmd = [sys.executable, "-m", "rotvq_audio.train", "tiny", "--out", str(run), "--val_clips", "0",
           "--max_train_clips", "8", "--threads", "1", "--quiet", *map(str, args)]
    return subprocess.Popen(cmd, cwd=ROOT, env=os.environ | (env or {}), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def test_tiny_config_learns(tmp_path):
    s = Trainer(tiny(tmp_path, steps=30), quiet=True).fit()
    mel = [h["mel"] for h in s.history]
    assert len(mel) == 30 and np.isfinite(mel).all()
    assert np.mean(mel[-5:]) < 0.8*np.mean(mel[:5]), mel  # a real decrease, not noise


def test_resume_matches_uninterrupted_run(tmp_path):
    kw = dict(steps=12, adv_start_step=4, ckpt_every=100)  # GAN phase included: D, its optimiser and schedule resume too
    straight = Trainer(tiny(tmp_path, "a", **kw), quiet=True).fit()
    cfg = tiny(tmp_path, "b", num_workers=1, **kw)  # loader workers must not change the data order
    first = Trainer(cfg, quiet=True).fit(stop_at=6)
    second = Trainer(cfg, resume=True, quiet=True).fit()
    assert (first.step, second.start_step, second.step) == (6, 6, 12)
    for key in ("total", "mel", "disc"):
        a = [h.get(key, np.nan) for h in straight.history]
        b = [h.get(key, np.nan) for h in first.history + second.history]
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6, err_msg=key)
    wa, wb = weights(tmp_path/"a"), weights(tmp_path/"b")
    assert wa.keys() == wb.keys()
    for k in wa: torch.testing.assert_close(wb[k], wa[k], rtol=1e-5, atol=1e-6, msg=k)


DDP_SCRIPT = """
import json, sys, torch, torch.distributed as dist, safetensors.torch as st
from rotvq_audio.trainer import Trainer
from rotvq_audio.config import load_config
from rotvq_audio.core import override, unwrap
torch.set_num_threads(1)
cfg = load_config("tiny")
for k, v in dict(out_dir=sys.argv[1], steps=6, adv_start_step=3, val_clips=1, val_seconds=1.0, val_workers=1, val_every=3,
                 max_train_clips=8, ckpt_every=3).items():  # rank 0 alone validates and saves, mid-run and at the end
    cfg = override(cfg, k, v)
t = Trainer(cfg, device="cpu", quiet=True)
s = t.fit()
r = t.dist.rank
for name, m in (("model", t.model), ("discs", t.discs)):
    st.save_file({k: v.detach().contiguous() for k, v in unwrap(m).state_dict().items()}, f"{sys.argv[1]}/{name}_rank{r}.safetensors")
json.dump({"world": t.dist.world_size, "mel": [h["mel"] for h in s.history]}, open(f"{sys.argv[1]}/rank{r}.json", "w"))
dist.destroy_process_group()
"""


def test_ddp_two_cpu_processes_stay_identical(tmp_path):
    run = tmp_path/"ddp"; run.mkdir()
    (tmp_path/"ddp_run.py").write_text(DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(tmp_path/"ddp_run.py"), str(run)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=os.environ | {"OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0, r1 = (json.loads((run/f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert r0["mel"] != r1["mel"]  # each rank trained on its own clips...
    for name in ("model", "discs"):  # ...yet weights, codebooks and EMA statistics agree exactly
        a, b = (st.load_file(str(run/f"{name}_rank{r}.safetensors")) for r in (0, 1))
        assert a.keys() == b.keys()
        for k in a: assert torch.equal(a[k], b[k]), f"{name}.{k} differs between ranks"
    m0 = st.load_file(str(run/"model_rank0.safetensors"))
    assert all(bool(m0[f"quantizer.stages.{i}.codebook.initted"]) for i in range(12))
    exported = weights(run)  # only rank 0 wrote, and what it wrote is its model
    for k in exported: assert torch.equal(exported[k], m0[k])
    logs = [json.loads(l) for l in (run/"log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs if r["event"] == "train"] == [6]  # one writer: no duplicated records
    assert [r["step"] for r in logs if r["event"] == "val"] == [3, 6]
    assert [r["step"] for r in logs if r["event"] == "checkpoint"] == [3, 6]


SLEEP_IN_SAVE = """
import sys, time, torch
from rotvq_audio.config import load_config
from rotvq_audio.core import override
from rotvq_audio.trainer import Trainer, TrainHooks
torch.set_num_threads(1)
cfg = load_config("tiny")
for k, v in dict(out_dir=sys.argv[1], val_clips=0, max_train_clips=8, steps=9, ckpt_every=3).items(): cfg = override(cfg, k, v)
def sleep(step):
    if step == 6: print("sleeping inside the save of step 6", flush=True); time.sleep(120)
Trainer(cfg, quiet=True, hooks=TrainHooks(before_commit=sleep)).fit()
"""


def test_kill_during_save_leaves_previous_checkpoint(tmp_path):
    run = tmp_path/"killed"
    p = subprocess.Popen([sys.executable, "-c", SLEEP_IN_SAVE, str(run)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, seen = time.time()+120, ""
    while "sleeping inside the save of step 6" not in seen:
        assert time.time() < deadline and p.poll() is None, seen
        seen += p.stdout.readline()
    p.kill(); p.wait(30)  # SIGKILL between writing the temporary folder and renaming it
    assert any(d.name.startswith(".tmp-step-0000006") for d in (run/"ckpt").iterdir())
    assert find_checkpoint(run).name == "step-0000003"
    t = Trainer(load_config(str(run)), resume=True, quiet=True)
    assert t.step == 3
    s = t.fit()
    assert s.step == 9 and find_checkpoint(run).name == "step-0000009"
    assert not any(d.name.startswith(".tmp") for d in (run/"ckpt").iterdir())


def test_sigint_saves_and_exits_cleanly(tmp_path):
    run = tmp_path/"interrupted"
    p = cli(run, "--steps", 100000, "--log_every", 1, "--ckpt_every", 100000)
    log, deadline = run/"log.jsonl", time.time()+120
    while not (log.exists() and sum('"train"' in l for l in log.read_text().splitlines()) >= 2):
        assert time.time() < deadline and p.poll() is None, p.stdout.read() if p.poll() is not None else "timed out"
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    assert p.wait(60) == 0, p.stdout.read()
    ckpt = find_checkpoint(run)
    assert ckpt is not None and 2 <= int(ckpt.name[5:]) < 100000
    assert json.loads(log.read_text().splitlines()[-1])["event"] == "checkpoint"
    assert Trainer(load_config(str(run)), resume=True, quiet=True).step == int(ckpt.name[5:])


def test_checkpoint_refuses_a_different_model(tmp_path):
    cfg = tiny(tmp_path, steps=2)
    Trainer(cfg, quiet=True).fit()
    with pytest.raises(ValueError, match=r"does not match the config.*codec\.n_q: 12 -> 6"):
        Trainer(override(cfg, "codec.n_q", 6), resume=True, quiet=True)
    with pytest.raises(ValueError, match=r"loss\.mrd_channels"):
        Trainer(override(cfg, "loss.mrd_channels", 8), resume=True, quiet=True)
    assert Trainer(override(cfg, "steps", 4), resume=True, quiet=True).step == 2  # loop settings may change


def nan_at(steps):
    "A `TrainHooks` whose loss is NaN at the given steps."
    return TrainHooks(loss_scale=lambda s: float("nan") if s in steps else 1.0)


def test_nonfinite_steps_are_skipped(tmp_path):
    t = Trainer(tiny(tmp_path, steps=5), quiet=True, hooks=nan_at({2, 3}))
    t.fit(stop_at=2)
    before = {k: p.detach().clone() for k, p in t.model.named_parameters()}
    t.fit(stop_at=4)
    assert all(torch.equal(p, before[k]) for k, p in t.model.named_parameters())  # no update from NaN steps
    s = t.fit()
    assert [h["finite"] for h in t.history] == [True, True, False, False, True]
    assert s.nonfinite_total == 2 and t.nonfinite_run == 0
    assert not all(torch.equal(p, before[k]) for k, p in t.model.named_parameters())


def test_too_many_nonfinite_losses_stop_the_run(tmp_path, monkeypatch, capsys):
    with pytest.raises(NonFiniteLoss, match="3 non-finite losses in a row"):
        Trainer(tiny(tmp_path, "a", steps=20, max_nonfinite=3), quiet=True, hooks=nan_at(range(1, 99))).fit()
    # the command turns it into one line and exit 2 (a lr that diverges at once makes the losses non-finite)
    args = ["tiny", "--out", str(tmp_path/"b"), "--steps", "20", "--val_clips", "0", "--max_train_clips", "8",
            "--max_nonfinite", "3", "--optim.grad_clip", "0", "--lr", "1e30", "--threads", "1", "--quiet"]
    assert main(args) == 2
    assert "non-finite losses in a row" in capsys.readouterr().err


def test_validation_logs_metrics_audio_and_spectrograms(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    s = Trainer(tiny(tmp_path, steps=2, val_clips=2, val_seconds=1.0), quiet=True).fit()
    for kbps in ("1.5", "3", "6"):
        for m in ("mel_distance", "pesq_wb", "stoi", "perplexity_q1", "effective_kbps"): assert f"val_{kbps}kbps/{m}" in s.val
    assert 1 <= s.val["val_6kbps/pesq_wb"] <= 4.7 and 0 < s.val["val_1.5kbps/mel_distance"]
    val = [json.loads(l) for l in (tmp_path/"run"/"log.jsonl").read_text().splitlines() if '"val"' in l]
    assert len(val) == 1 and val[0]["step"] == 2 and "val_3kbps/stoi" in val[0]
    ea = EventAccumulator(str(tmp_path/"run"/"tb"), size_guidance={"audio": 0, "images": 0, "scalars": 0}); ea.Reload()
    tags = ea.Tags()
    assert "val/reference" in tags["audio"] and "val_6kbps/reconstruction" in tags["audio"]
    assert "val_1.5kbps/spectrogram" in tags["images"] and "val_3kbps/pesq_wb" in tags["scalars"]


def test_codebooks_start_from_kmeans_and_churn_is_logged(tmp_path):
    from rotvq_audio.codebook import duplicate_codes
    tr = Trainer(tiny(tmp_path, steps=6, log_every=3), quiet=True)
    q = tr.model.quantizer
    assert q.initted  # before the first step, on 10 vectors per code from the first steps' batches
    assert max(duplicate_codes(s.codebook.embed) for s in q.stages) < 0.01 * q.codebook_size
    tr.fit()
    train = [r for r in map(json.loads, (tmp_path/"run"/"log.jsonl").read_text().splitlines()) if r["event"] == "train"]
    assert len(train) == 2 and all(f"train/replaced_q{i}" in r for r in train for i in range(1, q.n_q + 1))
    assert train[-1]["train/replaced"] == pytest.approx(sum(train[-1][f"train/replaced_q{i}"] for i in range(1, q.n_q + 1)))
    assert 0 < train[0]["cpu_hours"] < train[1]["cpu_hours"]


def test_cpu_budget_stops_the_run_and_survives_resume(tmp_path):
    cfg = tiny(tmp_path, steps=10_000, ckpt_every=0)
    tr = Trainer(cfg, quiet=True)
    budget = (tr.cpu_seconds() + 3) / 60  # three more CPU seconds
    s = tr.fit(max_cpu_minutes=budget)
    assert s.stop_reason == "max_cpu_minutes" and 0 < s.step < 10_000
    again = Trainer(cfg, resume=True, quiet=True)
    assert again.cpu_seconds() >= 60 * budget  # the budget counts the earlier calls
    s2 = again.fit(max_cpu_minutes=budget)
    assert (s2.stop_reason, s2.step) == ("max_cpu_minutes", s.step + 1)  # one step, then the spent budget stops it


def test_finetune_from_the_bundled_model(tmp_path):
    "`rotvq-train small --init default`: the bundled weights are the starting point, and its config the architecture."
    from rotvq_audio.codec import CodecModel, bundled_model_dir
    run = tmp_path/"ft"
    rc = main(["small", "--init", "default", "--out", str(run), "--steps", "2", "--val_clips", "0", "--max_train_clips", "8",
               "--num_workers", "0", "--threads", "1", "--quiet", "--ckpt_every", "1"])
    assert rc == 0
    first = st.load_file(str(run/"ckpt"/"step-0000001"/"generator"/"model.safetensors"))
    bundled = st.load_file(str(bundled_model_dir()/"model.safetensors"))
    assert first.keys() == bundled.keys()
    moved = [k for k in bundled if not torch.equal(first[k], bundled[k])]
    weights = [k for k in moved if ".codebook." not in k]  # the EMA codebooks move by their own rule
    assert weights and max(float((first[k] - bundled[k]).abs().max()) for k in weights) < 1e-3  # one warm-up step away
    ran, bundled = (CodecConfig.from_dict(json.loads(f.read_text())["codec"] if f.name == "train_config.json" else json.loads(f.read_text()))
                    for f in (run/"train_config.json", bundled_model_dir()/"config.json"))
    assert ran == bundled
    d0 = st.load_file(str(bundled_model_dir()/"discriminators.safetensors"))  # the discriminators ship beside the weights
    d1 = st.load_file(str(run/"ckpt"/"step-0000001"/"discriminators.safetensors"))
    assert d1.keys() == d0.keys() and all(torch.equal(d1[k], d0[k]) for k in d0)  # loaded; not trained before the GAN phase


def test_init_errors_are_one_line(tmp_path, capsys):
    assert main(["tiny", "--init", str(tmp_path/"nowhere"), "--out", str(tmp_path/"x"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rotvq-train: ") and "nowhere" in err and len(err.splitlines()) == 1


def test_a_checkpoint_saved_before_the_quantizer_config_resumes(tmp_path):
    "Configs written before `QuantizerConfig` existed hold only `grad` and `lookup`: the rest take their defaults."
    cfg = tiny(tmp_path, steps=2)
    Trainer(cfg, quiet=True).fit()
    ckpt = find_checkpoint(tmp_path/"run")
    for f in (ckpt/"train_config.json", ckpt/"generator"/"config.json"):
        d = json.loads(f.read_text())
        (d["codec"] if "codec" in d else d)["quantizer"] = {"grad": "rotation", "lookup": "cosine"}  # the old form
        f.write_text(json.dumps(d))
    t = Trainer(override(cfg, "steps", 3), resume=True, quiet=True)
    assert t.step == 2 and t.cfg.codec.quantizer.lookup == "cosine"
    assert CodecModel.from_pretrained(ckpt/"generator").config.quantizer == cfg.codec.quantizer


def test_the_quantizer_is_set_from_the_command_line(tmp_path):
    out = tmp_path/"ste"
    assert main(["tiny", "--out", str(out), "--steps", "2", "--val_clips", "0", "--max_train_clips", "8", "--threads", "1",
                 "--quiet", "--codec.quantizer.grad", "ste", "--codec.quantizer.dead_code_threshold", "0.05"]) == 0
    q = load_config(str(out)).codec.quantizer
    assert (q.grad, q.dead_code_threshold, q.lookup) == ("ste", 0.05, "cosine")
    assert [s.grad for s in CodecModel.from_pretrained(out/"model").quantizer.stages] == ["ste"] * 12
