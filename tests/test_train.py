"""End-to-end training: outputs, crash-resume after kill -9, NaN stop."""
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "sketchnet_qd10.py") + ":smoke"


def run_train(workdir, *overrides, wait=True):
    cmd = [sys.executable, "-m", "sketchtf.train", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def history(workdir):
    with open(os.path.join(workdir, "history.csv")) as f:
        return list(csv.DictReader(f))


def test_train_writes_report_tensorboard_and_checkpoints(tmp_path):
    wd = tmp_path / "run"
    r = run_train(wd, "--config.train.epochs=2")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((wd / "metrics.json").read_text())
    assert {"top1", "top5", "macro_f1", "per_class", "confusion"} <= set(m)
    assert m["extra"]["epochs"] == 2 and m["extra"]["params"] > 0
    assert "top-1" in (wd / "report.md").read_text()
    assert json.loads((wd / "config.json").read_text())["model"]["name"] == "sketchnet"
    assert sorted(os.listdir(wd / "checkpoints"))[:1] == ["checkpoint"]
    assert [int(float(h["epoch"])) for h in history(wd)] == [0, 1]
    assert {"learning_rate", "val_top1", "val_macro_f1"} <= set(history(wd)[0])
    events = [p for p in (wd / "tb").rglob("events.out.tfevents.*")]
    assert {p.parent.name for p in events} >= {"train", "eval"}


def test_kill_9_mid_training_then_same_command_resumes(tmp_path):
    wd = tmp_path / "run"
    args = ("--config.train.epochs=4", "--config.train.steps_per_epoch=25")
    proc = run_train(wd, *args, wait=False)
    deadline = time.time() + 240
    try:
        while not (wd / "checkpoints" / "ckpt-1.index").exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no epoch finished in time"
            time.sleep(0.05)
        time.sleep(0.5)  # into epoch 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (wd / "metrics.json").exists()
    r = run_train(wd, *args)
    assert r.returncode == 0, r.stderr[-3000:]
    starts = (wd / "run_log.txt").read_text().strip().splitlines()
    assert len(starts) == 2 and starts[0].endswith("started at epoch 1")
    resumed_at = int(starts[1].rsplit(" ", 1)[1])
    assert resumed_at >= 2, starts
    epochs = [int(float(h["epoch"])) for h in history(wd)]
    assert epochs[-1] == 3 and epochs.count(0) == 1  # epoch 1 was not trained again
    assert (wd / "metrics.json").exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    wd = tmp_path / "run"
    # lr 1e-3 in epoch 1, then 1e27: the loss blows up in epoch 2.
    r = run_train(wd, "--config.train.epochs=3", "--config.train.steps_per_epoch=3",
                  "--config.train.optimizer=sgd", "--config.train.schedule=exponential",
                  "--config.train.decay_steps=3", "--config.train.decay_rate=1e30")
    assert r.returncode != 0
    assert "non-finite loss" in r.stderr + r.stdout
    ckpts = sorted(p.name for p in (wd / "checkpoints").glob("ckpt-*.index"))
    assert ckpts == ["ckpt-1.index"]

    import numpy as np
    from sketchtf.trainer import load_trained_model
    model, _, _ = load_trained_model(str(wd))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_unknown_model_and_schedule_fail_clearly(tmp_path):
    r = run_train(tmp_path / "a", "--config.model.name=nope")
    assert r.returncode != 0 and "nope" in r.stderr
    r = run_train(tmp_path / "b", "--config.train.schedule=weird")
    assert r.returncode != 0 and "train.schedule" in r.stderr
