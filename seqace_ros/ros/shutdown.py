"""Shutdown helpers shared by the node executables."""

from __future__ import annotations

import signal
from typing import Callable


class InterruptGuard:
    """SIGINT raises KeyboardInterrupt once, while the node starts or spins, and nothing afterwards.

    Under `ros2 launch`, Ctrl-C reaches a node twice: from the terminal (the whole process group) and
    again from launch, which forwards it. rclpy's own handler also shuts the context down, so spin can
    end with ExternalShutdownException while Python's KeyboardInterrupt for the same Ctrl-C is still
    pending; it then fires at the first function call of the cleanup. Either way a KeyboardInterrupt
    in the middle of destroy_node ends the process with a traceback and exit code -2. The cleanup is
    bounded (the worker is joined with a timeout), and SIGTERM / SIGKILL still end the process.
    """

    def __init__(self) -> None:
        self.armed = True

    def __call__(self, signum, frame) -> None:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt

    def install(self) -> "InterruptGuard":
        """Install before ``rclpy.init``: rclpy's handler runs first and then chains to this one."""
        try:
            signal.signal(signal.SIGINT, self)
        except ValueError:  # not the main thread: signals are not ours to handle
            pass
        return self


def run_node(make_node: Callable[[], object], release: Callable[[object], None],
             args: list[str] | None = None) -> None:
    """Start rclpy, spin the node ``make_node()`` gives until Ctrl-C or shutdown, then ``release``
    it, destroy it and shut rclpy down, without a traceback on the way out."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    guard = InterruptGuard().install()
    rclpy.init(args=args)
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # First, before any call (where a pending signal handler runs): from here on Ctrl-C is a no-op.
        guard.armed = False
        if node is not None:
            release(node)
            node.destroy_node()
        rclpy.try_shutdown()
