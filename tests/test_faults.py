"Fault injection on the trainer: concurrent runs, damaged checkpoints and logs, bad data, changed settings, divergence."
import csv, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest
import safetensors.torch as st
import torch

from rotvq_audio.data import default_speech_dir, speech_split
from rotvq_audio.trainer import Trainer, NonFiniteLoss
from rotvq_audio.train import main
from rotvq_audio.checkpoint import RunLocked
from rotvq_audio.checkpoint import find_checkpoint
from rotvq_audio.config import load_config
from rotvq_audio.core import override

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny(tmp_path, name="run", **kw):
    cfg = load_config("tiny")
    for k, v in {"out_dir": str(tmp_path/name), "val_clips": 0, "max_train_clips": 8, "adv_start_step": 1000,
                 "num_workers": 0, **kw}.items():
        cfg = override(cfg, k, v)
    return cfg


def ckpt_names(run): return sorted(p.name for p in (Path(run)/"ckpt").glob("step-*"))


def test_a_second_trainer_on_the_same_folder_is_refused_naming_the_holder(tmp_path, capsys):
    run = tmp_path/"run"; run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               f"f = open({str(run/'.lock')!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
                               "f.seek(0); f.truncate(); f.write(str(os.getpid())); f.flush(); print('held', flush=True); time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        rc = main(["tiny", "--out", str(run), "--steps", "2", "--val_clips", "0", "--max_train_clips", "8", "--threads", "1", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and f"PID {holder.pid}" in err and len(err.strip().splitlines()) == 1
        assert not (run/"ckpt").exists()  # nothing written beside the holder
    finally:
        holder.kill(); holder.wait()
    # the holder died: its lock went with it, and the folder trains
    assert main(["tiny", "--out", str(run), "--steps", "2", "--val_clips", "0", "--max_train_clips", "8", "--threads", "1", "--quiet"]) == 0


def test_a_step_folder_that_is_not_a_checkpoint_is_replaced(tmp_path):
    "The issue's reproduction: 4 steps every 2, an empty step-0000005, then resume saving every step."
    cfg = tiny(tmp_path, steps=4, ckpt_every=2)
    Trainer(cfg, quiet=True).fit()
    (tmp_path/"run"/"ckpt"/"step-0000005").mkdir()
    Trainer(override(override(cfg, "steps", 6), "ckpt_every", 1), resume=True, quiet=True).fit()
    latest = (tmp_path/"run"/"ckpt"/"latest").read_text()
    assert latest == "step-0000006" and (tmp_path/"run"/"ckpt"/"step-0000005"/"state.pt").is_file()
    s = Trainer(override(cfg, "steps", 7), resume=True, quiet=True).fit()
    assert (s.start_step, s.step) == (6, 7)


def test_latest_cannot_point_outside_the_run(tmp_path):
    cfg = tiny(tmp_path, steps=2, ckpt_every=1)
    Trainer(cfg, quiet=True).fit()
    outside = tmp_path/"elsewhere"; shutil.copytree(tmp_path/"run"/"ckpt"/"step-0000002", outside)
    (tmp_path/"run"/"ckpt"/"latest").write_text("../../elsewhere")
    assert find_checkpoint(tmp_path/"run") == tmp_path/"run"/"ckpt"/"step-0000002"
    (tmp_path/"run"/"ckpt"/"step-0000003").symlink_to(outside)  # nor through a link
    assert find_checkpoint(tmp_path/"run").name == "step-0000002"


@pytest.mark.parametrize("damage", ["truncated state", "empty state", "garbage weights", "missing key", "no train_config"])
def test_resume_falls_back_past_a_damaged_checkpoint(tmp_path, capsys, damage):
    cfg = tiny(tmp_path, steps=4, ckpt_every=2, keep_ckpts=2)
    Trainer(cfg, quiet=True).fit()
    new = tmp_path/"run"/"ckpt"/"step-0000004"
    if damage == "truncated state": (new/"state.pt").write_bytes((new/"state.pt").read_bytes()[:1000])
    if damage == "empty state": (new/"state.pt").write_bytes(b"")
    if damage == "garbage weights": (new/"generator"/"model.safetensors").write_bytes(os.urandom(4096))
    if damage == "missing key":
        w = st.load_file(str(new/"discriminators.safetensors")); w.pop(sorted(w)[0]); st.save_file(w, str(new/"discriminators.safetensors"))
    if damage == "no train_config": (new/"train_config.json").unlink()
    tr = Trainer(override(cfg, "steps", 5), resume=True)
    out = capsys.readouterr().out
    assert tr.step == 2 and "skipping damaged checkpoint" in out and "step-0000004" in out
    assert tr.fit().step == 5


def test_resume_with_every_checkpoint_damaged_is_one_line(tmp_path, capsys):
    cfg = tiny(tmp_path, steps=2, ckpt_every=1)
    Trainer(cfg, quiet=True).fit()
    for p in (tmp_path/"run"/"ckpt").glob("step-*/state.pt"): p.write_bytes(b"")
    assert main(["tiny", "--out", str(tmp_path/"run"), "--resume", "--steps", "3", "--val_clips", "0", "--max_train_clips", "8",
                 "--adv_start_step", "1000", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rotvq-train: no intact checkpoint") and len(err.splitlines()) == 1


def test_a_torn_log_does_not_stop_resume(tmp_path):
    cfg = tiny(tmp_path, steps=2, ckpt_every=2, log_every=1)
    Trainer(cfg, quiet=True).fit()
    log = tmp_path/"run"/"log.jsonl"
    with open(log, "ab") as f: f.write(b'{"step": 3, "event": "tr' + b"\0" * 64)  # the disk filled up mid-line
    Trainer(override(cfg, "steps", 3), resume=True, quiet=True).fit()
    recs = [json.loads(l) for l in log.read_text().splitlines()]  # every line parses again
    assert [r["step"] for r in recs if r["event"] == "train"] == [1, 2, 3]


def _corpus(tmp_path, n=6, **overrides):
    "A small corpus folder: n real training clips (symlinked) plus `overrides` rows {filename: (split, bytes or None)}."
    src = [r for r in speech_split("train", exclude_sources=["asterisk_g722"])][:n]
    root = tmp_path/"corpus"; root.mkdir()
    rows = []
    for i, r in enumerate(src):
        (root/f"c{i}.flac").symlink_to(r["path"])
        rows.append({"path": f"c{i}.flac", "split": "train", "source": "librispeech", "speaker": f"s{i}"})
    for name, (split, data) in overrides.items():
        if data is not None: (root/name).write_bytes(data)
        rows.append({"path": name, "split": split, "source": "librispeech", "speaker": name})
    with open(root/"manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "split", "source", "speaker"]); w.writeheader(); w.writerows(rows)
    return root


def test_no_dev_split_without_validation_still_checkpoints(tmp_path):
    root = _corpus(tmp_path)
    s = Trainer(tiny(tmp_path, steps=2, ckpt_every=1, val_every=0, val_clips=0, max_train_clips=None, root=str(root)), quiet=True).fit()
    assert s.stop_reason == "done" and ckpt_names(tmp_path/"run")[-1] == "step-0000002"


def test_a_failing_validation_costs_no_checkpoint(tmp_path):
    root = _corpus(tmp_path, **{"gone.flac": ("dev", None)})  # a dev clip listed but missing
    Trainer(tiny(tmp_path, steps=2, ckpt_every=1, val_every=1, val_clips=1, max_train_clips=None, root=str(root)), quiet=True).fit()
    recs = [json.loads(l) for l in (tmp_path/"run"/"log.jsonl").read_text().splitlines()]
    assert any(r["event"] == "val_error" and "gone.flac" in r["error"] for r in recs)
    assert ckpt_names(tmp_path/"run")[-1] == "step-0000002"


def test_a_bad_training_clip_is_skipped_and_listed(tmp_path):
    root = _corpus(tmp_path, **{"torn.flac": ("train", b"fLaC" + b"\0" * 100)})
    s = Trainer(tiny(tmp_path, steps=2, max_train_clips=None, root=str(root)), quiet=True).fit()
    assert s.step == 2
    assert (tmp_path/"run"/"bad_clips.txt").read_text().startswith(str((root/"torn.flac").resolve()))
    with pytest.raises(ValueError, match="1 training clips could not be decoded"):
        Trainer(tiny(tmp_path, "b", steps=2, max_train_clips=None, root=str(root), max_bad_clips=0), quiet=True)


def test_a_manifest_without_sources_is_one_line(tmp_path, capsys):
    root = _corpus(tmp_path)
    text = (root/"manifest.csv").read_text().replace(",source", "").replace(",librispeech", "")
    (root/"manifest.csv").write_text(text)
    assert main(["tiny", "--out", str(tmp_path/"r"), "--root", str(root), "--steps", "1", "--val_clips", "0", "--quiet"]) == 2
    assert "no 'source' column" in capsys.readouterr().err


def test_changed_optimiser_settings_apply_on_resume(tmp_path, capsys):
    cfg = tiny(tmp_path, steps=2, ckpt_every=2, warmup_steps=0, **{"optim.decay": "constant"})
    Trainer(cfg, quiet=True).fit()
    new = override(override(override(cfg, "optim.lr", 1e-4), "optim.betas", [0.5, 0.9]), "optim.weight_decay", 0.05)
    tr = Trainer(override(new, "steps", 3), resume=True)
    assert "generator lr 0.003 -> 0.0001" in capsys.readouterr().out
    g = tr.g_opt.param_groups
    assert [x["lr"] for x in g] == [1e-4, 1e-4] and g[0]["betas"] == (0.5, 0.9) and [x["weight_decay"] for x in g] == [0.05, 0.0]
    tr.fit()
    assert tr.g_sched.get_last_lr() == [1e-4, 1e-4]


def test_a_changed_seed_is_warned_about(tmp_path, capsys):
    cfg = tiny(tmp_path, steps=2, ckpt_every=2)
    Trainer(cfg, quiet=True).fit()
    Trainer(override(cfg, "seed", 7), resume=True)
    assert "resuming with seed 7, saved with 0" in capsys.readouterr().out


def test_divergent_weights_never_overwrite_the_last_good_checkpoint(tmp_path, capsys):
    cfg = tiny(tmp_path, steps=2, ckpt_every=2)
    Trainer(cfg, quiet=True).fit()
    good = tmp_path/"run"/"ckpt"/"step-0000002"
    w = st.load_file(str(good/"generator"/"model.safetensors"))
    w["decoder.head.proj.weight"].fill_(1e30)  # finite, but every loss from here on is not
    st.save_file(w, str(good/"generator"/"model.safetensors"), metadata={"format": "pt"})
    rc = main(["tiny", "--out", str(tmp_path/"run"), "--resume", "--steps", "5", "--val_clips", "0", "--max_train_clips", "8",
               "--num_workers", "0", "--adv_start_step", "1000", "--quiet", "--ckpt_every", "1"])
    assert rc == 2 and "non-finite" in capsys.readouterr().err
    assert ckpt_names(tmp_path/"run") == ["step-0000002"]  # nothing written after the skipped steps


def test_non_finite_weights_are_never_saved(tmp_path):
    tr = Trainer(tiny(tmp_path, steps=1), quiet=True)
    with torch.no_grad(): next(tr.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteLoss, match="no longer finite"): tr.save()
    assert not (tmp_path/"run"/"ckpt").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux only")
def test_torchrun_workers_exit_when_their_agent_is_killed(tmp_path):
    run = tmp_path/"ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rotvq_audio.train", "tiny", "--out", str(run), "--steps", "100000", "--val_clips", "0", "--max_train_clips", "8",
           "--num_workers", "0", "--threads", "1", "--quiet", "--log_every", "1"]
    agent = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(tmp_path/"torchrun.err", "w"), start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and not (run/"log.jsonl").is_file(): time.sleep(0.5)
        assert (run/"log.jsonl").is_file(), "the DDP run never started: " + (tmp_path/"torchrun.err").read_text()[-2000:]
        workers = [int(p) for p in subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True, text=True).stdout.split()]
        assert len(workers) == 2
        os.kill(agent.pid, signal.SIGKILL); agent.wait()
        deadline = time.time() + 60
        while time.time() < deadline and any(Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2] for w in workers):
            time.sleep(0.5)
        alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]]
        assert not alive, f"workers {alive} outlived their agent"
    finally:
        os.killpg(agent.pid, signal.SIGKILL) if agent.poll() is None else None
        subprocess.run(["pkill", "-9", "-f", str(run)], capture_output=True)


def test_a_full_disk_during_a_save_is_one_clear_line(tmp_path, monkeypatch, capsys):
    cfg = tiny(tmp_path, steps=2, ckpt_every=1)
    Trainer(cfg, quiet=True).fit()
    def full(*a, **k): raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed, unexpected pos 42")
    monkeypatch.setattr(torch, "save", full)
    rc = main(["tiny", "--out", str(tmp_path/"run"), "--resume", "--steps", "3", "--val_clips", "0", "--max_train_clips", "8",
               "--adv_start_step", "1000", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "could not write checkpoint" in err and "MiB free" in err
    assert ckpt_names(tmp_path/"run") == ["step-0000001", "step-0000002"] and not list((tmp_path/"run"/"ckpt").glob(".tmp-*"))
    assert (tmp_path/"run"/"ckpt"/"latest").read_text() == "step-0000002"


def test_kill_9_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    "SIGKILL a training process 5 times at seeded random moments (mid-step, mid-save, mid-log), resume each time."
    import random
    args = ["tiny", "--val_clips", "0", "--max_train_clips", "8", "--adv_start_step", "8", "--steps", "24", "--ckpt_every", "2",
            "--log_every", "1", "--num_workers", "0", "--threads", "1", "--quiet", "--resume"]
    straight = main(args[:1] + ["--out", str(tmp_path/"straight")] + args[1:])
    assert straight == 0
    run, rng, kills = tmp_path/"killed", random.Random(0), 0
    while kills < 5:
        p = subprocess.Popen([sys.executable, "-m", "rotvq_audio.train", *args, "--out", str(run)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try: p.wait(rng.uniform(3.0, 8.0)); assert p.returncode == 0, p.stderr.read(); break  # it finished first
        except subprocess.TimeoutExpired: p.kill(); p.wait(); kills += 1
    assert main(args[:1] + ["--out", str(run)] + args[1:]) == 0  # finish (at once, if already done)
    assert find_checkpoint(run).name == "step-0000024" and not list((run/"ckpt").glob(".tmp-*"))
    a, b = (st.load_file(str(r/"model"/"model.safetensors")) for r in (tmp_path/"straight", run))
    for k in a: torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)


@pytest.fixture
def small_disk(tmp_path):
    "A small tmpfs at tmp_path/disk (a full disk for real), or skip where `mount` is not allowed."
    d = tmp_path/"disk"; d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=28m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode: pytest.skip(f"mount is not allowed here: {r.stderr.strip()[:80]}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_really_full_disk_during_a_save_is_one_line_and_keeps_the_last_checkpoint(tmp_path, small_disk, capsys):
    run = small_disk/"run"
    args = ["tiny", "--out", str(run), "--resume", "--val_clips", "0", "--max_train_clips", "8", "--adv_start_step", "1000",
            "--num_workers", "0", "--ckpt_every", "1", "--keep_ckpts", "5", "--quiet"]
    rc = main(args + ["--steps", "50"])  # 11 MB each (weights, optimiser, discriminators): the third does not fit in 28 MiB
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "could not write checkpoint" in err, err
    good = find_checkpoint(run)
    assert good is not None and not list((run/"ckpt").glob(".tmp-*"))  # no half checkpoint left to fill the disk
    Trainer(load_config(str(run)), resume=True, quiet=True)  # and the last one still loads


def test_cli_output_onto_a_full_disk_keeps_the_old_file(tmp_path, small_disk):
    import numpy as np, soundfile as sf
    from rotvq_audio import cli
    from rotvq_audio.codec import CodecConfig, CodecModel
    CodecModel(CodecConfig.tiny()).save_pretrained(tmp_path/"tiny")
    sf.write(tmp_path/"long.wav", np.zeros(16000 * 60, np.float32), 16000)  # 60 s: 1.9 MB of 16-bit WAV output
    assert cli.main(["encode", str(tmp_path/"long.wav"), str(tmp_path/"long.npz"), "--model", str(tmp_path/"tiny"), "-q"]) == 0
    old = small_disk/"out.wav"; old.write_bytes(b"old audio")
    (small_disk/"ballast").write_bytes(bytes(28_800_000))
    assert cli.main(["decode", str(tmp_path/"long.npz"), str(old), "--model", str(tmp_path/"tiny"), "-q"]) == 2
    assert old.read_bytes() == b"old audio" and sorted(p.name for p in small_disk.iterdir()) == ["ballast", "out.wav"]
