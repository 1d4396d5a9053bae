"""A colcon workspace holding this package, built as a user builds it, for the workflow tests.

The package is copied (not linked) into ``WS/src/seqace_ros``: `--symlink-install` builds in place,
and nothing may be written into the repository. Commands run in a clean environment: the venv's
AMENT_PREFIX_PATH, the workspace's ``install/setup.bash`` sourced, no PYTHONPATH pointing at the
repository, so what runs is what colcon installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FROM_SOURCE = Path(os.environ.get("SEQACE_ROS2_FROM_SOURCE", REPO.parent / "shared" / "ros2-from-source"))
# What a colcon build of the package needs from the repository.
PACKAGE_FILES = ["setup.py", "setup.cfg", "package.xml", "README.md", "LICENSE", "requirements-pip.txt",
                 "resource", "launch", "config", "native", "seqace_ros"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build")


def workflow_missing() -> str | None:
    """Why the colcon / ros2 launch / tf2_ros workflow cannot run here, or None."""
    if not (FROM_SOURCE / "install.sh").is_file():
        return (f"{FROM_SOURCE}/install.sh not found: no launch, ros2cli or tf2_ros to test with "
                "(a user's machine without ROS; see docs/ROS.md)")
    if shutil.which("cmake") is None:
        return "cmake is not installed: scripts/setup_env.sh could not build ../shared/ros2-from-source"
    probe = ("import launch, launch_ros.actions, ros2cli, tf2_ros, tf2_msgs.msg, lifecycle_msgs.srv, "
             "colcon_core")
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=base_env(None))
    if r.returncode != 0:
        return ("launch, ros2cli, tf2_ros or colcon are not importable (run scripts/setup_env.sh with "
                f"SEQACE_ROS=1): {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return None


def base_env(domain_id: int | None) -> dict[str, str]:
    """The venv on PATH, loopback-only discovery, and no trace of the repository on sys.path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLCON", "AMENT", "PYTHON"))}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = sys.prefix
    env["AMENT_PREFIX_PATH"] = sys.prefix
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    env["RCUTILS_COLORIZED_OUTPUT"] = "0"
    return env


@dataclass
class Workspace:
    root: Path
    install: Path
    build_seconds: float
    log: str

    def command(self, cmd: str) -> list[str]:
        """bash -c that sources the install's setup.bash first (what a user's shell does)."""
        return ["bash", "-c", f". {self.install}/setup.bash && {cmd}"]

    def run(self, cmd: str, env: dict[str, str], timeout: float = 120.0, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(cmd), env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=cwd or self.root)

    def popen(self, cmd: str, env: dict[str, str], log_path: Path) -> subprocess.Popen:
        """A long-running command in its own process group (SIGINT goes to it as Ctrl-C would)."""
        log = open(log_path, "w")
        return subprocess.Popen(self.command(f"exec {cmd}"), env=env, stdout=log, stderr=subprocess.STDOUT,
                                cwd=self.root, start_new_session=True)


def copy_package(ws: Path) -> Path:
    src = ws / "src" / "seqace_ros"
    src.mkdir(parents=True)
    for name in PACKAGE_FILES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=IGNORE)
        elif path.is_file():
            shutil.copy2(path, src / name)
    (src / "maps").mkdir()
    for md in (REPO / "maps").glob("*.md"):
        shutil.copy2(md, src / "maps" / md.name)
    return src


def colcon_build(ws: Path, symlink: bool, tag: str, timeout: float = 900.0) -> Workspace:
    """``python -m colcon build`` of the package into ``build_<tag>`` / ``install_<tag>``."""
    cmd = [sys.executable, "-m", "colcon", "build", "--packages-select", "seqace_ros",
           "--build-base", f"build_{tag}", "--install-base", f"install_{tag}",
           "--event-handlers", "console_cohesion+", "summary+"]
    if symlink:
        cmd.append("--symlink-install")
    env = base_env(None)
    env["MAKEFLAGS"] = "-j2"
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=ws, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - t0
    log = r.stdout + r.stderr
    if r.returncode != 0:
        raise AssertionError(f"colcon build{' --symlink-install' if symlink else ''} failed "
                             f"(exit {r.returncode}):\n{log[-4000:]}")
    return Workspace(ws, ws / f"install_{tag}", seconds, log)
