"""Every error seqace_ros raises on purpose shares one base, which the CLI catches once."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import seqace_ros
from seqace_ros.errors import SeqaceError


def test_every_exception_class_of_the_package_derives_from_seqace_error():
    found = {}
    for info in pkgutil.walk_packages(seqace_ros.__path__, "seqace_ros."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # ROS modules where rclpy is absent
            continue
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    assert len(found) >= 10, sorted(found)
    outside = [n for n, c in found.items() if not issubclass(c, SeqaceError) and c is not SeqaceError]
    assert not outside, f"exception classes not derived from SeqaceError: {outside}"
