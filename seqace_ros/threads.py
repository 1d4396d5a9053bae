"""Thread settings that share a robot's cores gracefully.

torch's CPU kernels run on an OpenMP pool whose threads, by default, spin for a while after every
parallel region. On a computer whose cores are busy with other processes (or with the inference
backend's own threads), a spinning thread holds a core that the work needs, and throughput falls
far below a fair share (benchmarks/README.md, "Sharing the cores"). With ``OMP_WAIT_POLICY=PASSIVE``
they sleep instead. OpenMP reads the variable once, when torch loads, so the entry points (the
``seqace`` command, the ROS nodes) call :func:`prefer_passive_waiting` before anything imports
torch; a library user who imports torch first sets it in the environment.
"""

from __future__ import annotations

import os
import sys


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy. False when it is too late
    (torch is already loaded) or the user's choice stands."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def use_threads(threads: int) -> None:
    """Cap the CPU threads of torch's kernels and of OpenCV (the refinement's tracking and warps)
    at ``threads`` (> 0). OpenCV would otherwise use every core of the computer, whatever the
    ``threads`` setting says; OpenVINO models take the count when they are compiled."""
    import cv2
    import torch

    torch.set_num_threads(int(threads))
    cv2.setNumThreads(int(threads))
