"""Ctrl-C and shutdown of the node executables (`seqace_ros.ros.shutdown.run_node`) with a real rclpy:
a second SIGINT, or the first one's KeyboardInterrupt arriving after rclpy has already ended the
spin, must not raise in the cleanup. Each case runs in a process of its own (signal state is global).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("rclpy")
pytestmark = pytest.mark.ros

from seqace_ros.ros.shutdown import InterruptGuard  # noqa: E402

SCRIPT = textwrap.dedent('''
    import os, signal, sys, threading, time
    import rclpy
    from seqace_ros.ros.shutdown import run_node

    case = sys.argv[1]
    released = []

    def later(action, delay=0.3):
        threading.Thread(target=lambda: (time.sleep(delay), action()), daemon=True).start()

    def make():
        import rclpy.node
        node = rclpy.node.Node("shutdown_probe")
        if case == "starting":  # Ctrl-C while the map loads
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
        elif case == "twice":  # Ctrl-C from the terminal, then again from launch during the cleanup
            later(lambda: os.kill(os.getpid(), signal.SIGINT))
        elif case == "external":  # the spin ends without a KeyboardInterrupt; Ctrl-C then comes in the cleanup
            later(rclpy.try_shutdown)
        return node

    def release(node):
        if case in ("twice", "external"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # the handler runs here
        released.append(case)

    run_node(make, release)
    print("released" if released else "not released", flush=True)
''')


def test_interrupt_guard_raises_once_then_never():
    guard = InterruptGuard()
    with pytest.raises(KeyboardInterrupt):
        guard(2, None)
    guard(2, None)  # a second Ctrl-C: nothing
    guard = InterruptGuard()
    guard.armed = False  # the cleanup has begun
    guard(2, None)


@pytest.mark.parametrize("case, expected", [("starting", "not released"), ("twice", "released"),
                                            ("external", "released")])
def test_run_node_ends_cleanly_whenever_ctrl_c_arrives(case, expected, tmp_path):
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID="87")
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    r = subprocess.run([sys.executable, str(script), case], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, f"exit {r.returncode}:\n{r.stdout}\n{r.stderr}"
    assert r.stdout.strip().splitlines()[-1] == expected, r.stdout
