"""`qaccel demo`, the main job, end to end on the co-simulated accelerator."""

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.xdist_group("cosim-default")


def test_demo_runs_on_the_rtl_with_no_mismatch(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "qaccel", "demo", "--plot", str(tmp_path / "demo.png"),
         "--json", str(tmp_path / "demo.json")],
        capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "demo.json").read_text())
    accuracy = summary["accuracy"]
    assert summary["mismatches"] == 0
    assert accuracy["int8, accelerator"] >= accuracy["float (NumPy)"] - 0.01
    assert accuracy["binary, accelerator"] >= 0.90
    assert summary["counters"]["macs"] > 0 and summary["counters"]["binary_ops"] > 0
    assert (tmp_path / "demo.png").stat().st_size > 10_000
