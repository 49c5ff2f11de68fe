"""End-to-end training: outputs, crash-resume after kill -9, NaN stop."""
import csv
import json
import os
import pathlib
import signal
import subprocess
import sys
import time


REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE = str(REPO / "configs" / "sketchnet_qd10.py") + ":smoke"


def run_train(workdir, *overrides, wait=True):
    cmd = [sys.executable, "-m", "sketchtf.train", f"--config={SMOKE}", f"--workdir={workdir}", *overrides]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def kill_9_in_epoch_2(proc, wd, delay_s):
    """Waits for the first epoch's checkpoint, lets the run go delay_s into epoch 2, kills it -9."""
    deadline = time.time() + 240
    try:
        while not (wd / "checkpoints" / "ckpt-1.index").exists():
            assert proc.poll() is None, "training ended before it could be killed"
            assert time.time() < deadline, "no epoch finished in time"
            time.sleep(0.05)
        time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()


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
    assert {"checkpoint", "best"} <= set(os.listdir(wd / "checkpoints"))  # last epoch + best on valid
    best = json.loads((wd / "checkpoints" / "best" / "best.json").read_text())
    assert best["epoch"] in (1, 2) and best["monitor"] == "val_top1"
    assert best["value"] == max(float(h["val_top1"]) for h in history(wd))
    assert [int(float(h["epoch"])) for h in history(wd)] == [0, 1]
    assert {"learning_rate", "val_top1", "val_macro_f1"} <= set(history(wd)[0])
    events = [p for p in (wd / "tb").rglob("events.out.tfevents.*")]
    assert {p.parent.name for p in events} >= {"train", "eval"}


def test_kill_9_mid_training_then_same_command_resumes(tmp_path):
    wd = tmp_path / "run"
    args = ("--config.train.epochs=4", "--config.train.steps_per_epoch=25")
    kill_9_in_epoch_2(run_train(wd, *args, wait=False), wd, 0.5)
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
    from sketchtf.workdir import load_trained_model
    model, _, _ = load_trained_model(str(wd))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_unknown_model_and_schedule_fail_clearly(tmp_path):
    r = run_train(tmp_path / "a", "--config.model.name=nope")
    assert r.returncode != 0 and "nope" in r.stderr
    r = run_train(tmp_path / "b", "--config.train.schedule=weird")
    assert r.returncode != 0 and "train.schedule" in r.stderr


def test_kill_9_mid_epoch_from_shards_resumes_at_the_input_position(tmp_path):
    """The recipe of configs/sketchnet_qd345.py, tiny: prepare shards, train
    from them, kill -9 mid-epoch; the rerun's input stream continues at the
    step the backup recorded, not at the start of the data."""
    from sketchtf.training import trainer
    from sketchtf.config import load_saved_config
    qd345 = str(REPO / "configs" / "sketchnet_qd345.py") + ":smoke"
    data = tmp_path / "shards"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-m", "sketchtf.prepare", f"--config={qd345}", f"--out={data}",
                        "--workers=1"], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0 and "valid" in r.stdout, r.stderr[-3000:]
    wd = tmp_path / "run"
    cmd = [sys.executable, "-m", "sketchtf.train", f"--config={qd345}", f"--workdir={wd}",
           "--config.data.source=shards", f"--config.data.path={data}", "--config.train.epochs=2",
           "--config.train.steps_per_epoch=20", "--config.train.backup_every=3"]
    kill_9_in_epoch_2(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env), wd, 0.7)
    config = load_saved_config(str(wd))
    done = trainer.resumed_steps(str(wd), 20)
    assert done > 20 and done % 3 == 0, done  # saved every 3 steps, in epoch 2
    resumed, _, _, _ = trainer.build_data(config, with_index=True, workdir=str(wd))
    fresh, _, _, _ = trainer.build_data(config, with_index=True)
    want = next(iter(fresh.skip(done)))
    got = next(iter(resumed))
    assert got[2].numpy().tolist() == want[2].numpy().tolist()  # the same drawings ...
    assert (got[0].numpy() == want[0].numpy()).all()           # ... with the same augmentation
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((wd / "metrics.json").read_text())["extra"]["train_examples"] > 0
