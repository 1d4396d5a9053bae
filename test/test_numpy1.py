"""seqace_ros on numpy 1.x, as ROS installs from apt have it (Humble: 1.21, Jazzy/Kilted: 1.26).

A small venv holds numpy 1.26 and an opencv-python-headless built for it (the pins of
constraints-numpy1.txt); everything else comes from this environment through a .pth placed after
them, so numpy 1.26 wins. In it, the core tests and the node tests (real rclpy, the managed node's
lifecycle) run in a subprocess. numpy 1.21 itself has no wheel for Python >= 3.11; it is not run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from ros_support.node_testing import tiny  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
NUMPY1 = ["numpy==1.26.4", "opencv-python-headless==4.10.0.84"]
TESTS = ["test/test_ransac.py", "test/test_mapfile.py", "test/test_ros_units.py", "test/test_ros_bag.py",
         "test/test_ros_lifecycle.py", "test/test_ros_node.py::test_poses_of_query_images_are_near_the_truth_with_a_well_formed_covariance"]

pytestmark = [pytest.mark.ros, pytest.mark.skipif(not (3, 9) <= sys.version_info[:2] <= (3, 12),
                                                  reason="numpy 1.26 has wheels for Python 3.9-3.12 only")]


def _numpy1_venv(folder: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    py = folder / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", *NUMPY1],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    # addsitedir also runs this environment's .pth files (the editable install, cmeel's Eigen).
    (Path(site) / "zz_seqace_environment.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return py


def _ros_env() -> dict[str, str]:
    """What ros-wheels-bootstrapper would set for this environment (it looks at the new venv's prefix)."""
    env = dict(os.environ)
    libs = [str(Path(sys.prefix) / "lib")] + [str(p) for p in Path(sysconfig.get_paths()["purelib"]).glob("ros_*.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p])
    env["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] = "1"
    env["AMENT_PREFIX_PATH"] = sys.prefix
    env["PYTHONPATH"] = str(REPO)
    return env


def test_the_package_and_its_node_run_on_numpy_1_26(tmp_path, tiny, workflow_report):  # noqa: F811
    t0 = time.perf_counter()
    py = _numpy1_venv(tmp_path / "numpy1")
    env = _ros_env()
    env["SEQACE_TEST_CACHE"] = str(Path(tiny.map_path).parent.parent)  # the tiny map this session built
    probe = subprocess.run([str(py), "-c", "import numpy, cv2, seqace_ros._native; print(numpy.__version__, cv2.__version__)"],
                           capture_output=True, text=True, env=env, cwd=REPO)
    assert probe.returncode == 0, probe.stderr
    numpy_version, cv2_version = probe.stdout.split()
    assert numpy_version.startswith("1.26"), probe.stdout
    have_rclpy = subprocess.run([str(py), "-c", "import rclpy, lifecycle_msgs.srv"], env=env, cwd=REPO,
                                capture_output=True).returncode == 0
    tests = TESTS if have_rclpy else [t for t in TESTS if "ros_node" not in t and "lifecycle" not in t]
    r = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], capture_output=True,
                       text=True, env=env, cwd=REPO, timeout=900)
    summary = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert " passed" in summary and "skipped" not in summary, summary
    workflow_report(f"numpy {numpy_version} + opencv {cv2_version}: {summary} ({time.perf_counter() - t0:.0f} s, "
                    f"{'core + node + lifecycle' if have_rclpy else 'core only: no rclpy'})")
