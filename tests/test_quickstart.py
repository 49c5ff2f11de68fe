import json
import os
import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_main_job_smoke_previews_trains_and_exports(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sketchtf.quickstart",
                        f"--config={REPO / 'configs' / 'quickstart.py'}:smoke", f"--workdir={tmp_path}"],
                       capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "samples.png").stat().st_size > 1000
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "report.md").exists()
    assert (tmp_path / "export" / "sketchnet_synthetic" / "1" / "saved_model.pb").exists()
    assert "SavedModel:" in r.stdout and "TensorBoard:" in r.stdout and "test top-1" in r.stdout
    assert json.loads((tmp_path / "config.json").read_text())["eval_split"] == "valid"  # test is not watched
    assert (tmp_path / "eval_test" / "metrics.json").exists()  # ... but scored once at the end
