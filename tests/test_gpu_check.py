"""The GPU check (bench/gpu/check.py) runs: its CPU dry run here, so that the script is ready the day
a device is lent (it drives the model service's own class, with concurrent callers)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_gpu_check_dry_run_measures_on_the_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu" / "check.py"), "--dry-run", "--out", str(out)],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(out.read_text())
    measured = report["measured"]
    assert report["probe"]["faster_whisper"] != "" and "models_loaded" in measured
    assert measured["whisper_rtfx"] > 1 and measured["concurrent_videos"] == 2
    assert set(measured["text_passages_per_s_by_batch"]) == {"64", "256", "1024"}
