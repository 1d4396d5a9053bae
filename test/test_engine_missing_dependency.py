"""A missing dependency is named, never hidden (a colcon install without scipy used to report only
that the installation "lacks" the sequence module, and then only in sequence mode)."""

from __future__ import annotations

import subprocess
import sys


def test_a_missing_dependency_is_named_when_the_engine_is_imported():
    # As if scipy were not installed: the sequence mode's landmarks need scipy.spatial.
    code = "import sys; sys.modules['scipy.spatial'] = None\nimport seqace_ros.ros.engine"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "scipy.spatial" in r.stderr.strip().splitlines()[-1], r.stderr[-2000:]
