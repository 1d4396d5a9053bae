"""Shutdown helpers shared by the node executables."""

from __future__ import annotations

import signal


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
