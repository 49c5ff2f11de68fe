"""Ship gates: the table, the exit code, the latency measurement."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sketchtf import workdir as run_folder
from sketchtf.ship import gates


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A 1-epoch smoke float run and its PTQ INT8 file."""
    from sketchtf.training import trainer
    from sketchtf.config import experiment, smoke
    from sketchtf.ship.quantize import to_tflite
    root = tmp_path_factory.mktemp("gates")
    wd = str(root / "float")
    trainer.train_and_evaluate(smoke(experiment("sketchnet"), image_size=32), wd)
    model, _, _ = run_folder.load_trained_model(wd)
    cal = np.random.default_rng(0).random((8, 32, 32, 1), np.float32)
    path = root / "int8.tflite"
    path.write_bytes(to_tflite(model, cal, "int8"))
    return wd, str(path)


def _cfg(wd, path, out, **thresholds):
    c = gates.gate_defaults()
    c.update(dict(float_workdir=wd, tflite=path, out_dir=str(out), **thresholds))
    return c


def test_gates_table_json_md_and_latency(smoke_run, tmp_path):
    wd, path = smoke_run
    permissive = dict(min_int8_top1=0.0, min_worst_class=0.0, max_gap=1.0, max_class_quant_loss_pts=100.0,
                      max_latency_ms=1e4, max_size_mb=10.0)
    r = gates.run_gates(_cfg(wd, path, tmp_path / "ok", **permissive))
    assert [row["gate"] for row in r["rows"]] == ["int8_top1", "worst_class", "train_inference_gap",
                                                 "class_quant_loss", "latency", "size"]
    assert r["passed"]
    lat = r["latency"]
    assert lat["runs"] >= 200 and lat["includes_render"] and lat["num_threads"] == 1
    assert 0 < lat["median_ms"] <= lat["p90_ms"]
    size = next(row for row in r["rows"] if row["gate"] == "size")
    assert size["value"] == pytest.approx(os.path.getsize(path) / 1e6)
    # drawings the INT8 file classes apart from Keras, and how many are top-2 ties
    assert 0 <= r["moved"]["top2_ties"] <= r["moved"]["drawings"]
    loss_row = next(row for row in r["rows"] if row["gate"] == "class_quant_loss")
    assert f"{r['moved']['drawings']} drawings classed apart" in loss_row["detail"]
    # Keras float and TFLite float agree on the same images
    assert next(row for row in r["rows"] if row["gate"] == "train_inference_gap")["value"] <= 1.0
    saved = json.loads((tmp_path / "ok" / "gates.json").read_text())
    assert saved["passed"] and len(saved["rows"]) == 6
    md = (tmp_path / "ok" / "gates.md").read_text()
    assert "| gate | threshold | measured | result |" in md and "all gates pass" in md

    # one impossible threshold: that gate alone fails, and the verdict says which
    r = gates.run_gates(_cfg(wd, path, tmp_path / "bad", **dict(permissive, max_size_mb=1e-4)))
    assert not r["passed"]
    assert [row["gate"] for row in r["rows"] if not row["passed"]] == ["size"]
    assert "FAILED: size" in (tmp_path / "bad" / "gates.md").read_text()


def test_cli_exits_non_zero_when_a_gate_fails(smoke_run, tmp_path):
    wd, path = smoke_run
    # seed D's defaults: a 1-epoch smoke model is far below 94.5 % top-1
    r = subprocess.run([sys.executable, "-m", "sketchtf.gates", f"--float_workdir={wd}", f"--tflite={path}",
                        f"--out_dir={tmp_path}"], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 1, r.stderr[-2000:]
    assert "| int8_top1 | >= 94.50 % |" in r.stdout and "FAIL" in r.stdout
    assert not json.loads((tmp_path / "gates.json").read_text())["passed"]


def test_latency_needs_200_runs(smoke_run):
    from sketchtf.ship.tflite_runner import TFLiteClassifier
    with pytest.raises(ValueError, match="200"):
        gates.measure_latency(TFLiteClassifier(smoke_run[1]), images=np.zeros((1, 32, 32, 1), np.float32), runs=50)


