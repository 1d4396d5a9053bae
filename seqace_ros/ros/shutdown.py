"""Shutdown helpers shared by the node executables."""

from __future__ import annotations

import signal
from typing import Callable


def run_node(make_node: Callable[[], object], release: Callable[[object], None],
             args: list[str] | None = None) -> None:
    """Start rclpy, spin the node ``make_node()`` gives until Ctrl-C or shutdown, then ``release``
    it, destroy it and shut rclpy down, without a traceback on the way out."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_further_interrupts()
        if node is not None:
            release(node)
            node.destroy_node()
        rclpy.try_shutdown()


def ignore_further_interrupts() -> None:
    """Ignore SIGINT from now on (call once the first Ctrl-C has stopped spinning).

    Under `ros2 launch`, Ctrl-C reaches a node twice: from the terminal (the whole process group) and
    again from launch, which forwards it. A second KeyboardInterrupt in the middle of destroy_node
    ends the process with a traceback and exit code -2. The cleanup after the first one is bounded
    (the worker is joined with a timeout), and SIGTERM / SIGKILL still end the process.
    """
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to do there
        pass
