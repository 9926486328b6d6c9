import json
import subprocess
import sys
from pathlib import Path

import prunesearch as ps

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_writes_a_half_flops_spec(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), "--model", "resnet20",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    spec = ps.ArchSpec.load(tmp_path / "resnet20-uniform-50.json")
    assert 0.45 * spec.base_flops <= spec.flops <= 0.5 * spec.base_flops
    assert json.loads((tmp_path / "resnet20-uniform-50.json").read_text())["model"] == "resnet20"
