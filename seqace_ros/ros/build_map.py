"""build_map: train a map from a ROS 2 bag (needs rosbags, not rclpy).

    ros2 run seqace_ros build_map BAG [--out maps/NAME.safetensors] [bag and mapping options]

The same as ``seqace map BAG``, with the map written to ``maps/<bag name>.safetensors`` by default.
"""

from __future__ import annotations

import sys
from pathlib import Path


def default_output(bag: str) -> str:
    name = Path(bag.rstrip("/")).name
    for suffix in (".mcap", ".db3"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return str(Path("maps") / f"{name or 'map'}.safetensors")


def strip_ros_args(argv: list[str]) -> list[str]:
    """Drop ``--ros-args ... [--]`` that ros2 run / launch append."""
    out, skipping = [], False
    for a in argv:
        if a == "--ros-args":
            skipping = True
        elif skipping and a == "--":
            skipping = False
        elif not skipping:
            out.append(a)
    return out


def split_global_options(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate seqace's global options (-v, -q, --threads N), which go before the sub-command."""
    front, rest, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a in ("-v", "--verbose", "-q", "--quiet") or a.startswith("--threads="):
            front.append(a)
        elif a == "--threads" and i + 1 < len(argv):
            front += [a, argv[i + 1]]
            i += 1
        else:
            rest.append(a)
        i += 1
    return front, rest


def main(argv: list[str] | None = None) -> int:
    from ..cli import build_parser
    from ..cli import main as seqace_main

    front, argv = split_global_options(strip_ros_args(list(sys.argv[1:] if argv is None else argv)))
    has_out = any(a == "--out" or a.startswith("--out=") for a in argv)
    if not has_out and not any(a in ("-h", "--help") for a in argv):
        # Let the real parser find the bag among the options (it exits with usage on bad input).
        probe = build_parser().parse_args([*front, "map", *argv, "--out", "unused"])
        out = default_output(probe.source)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        argv += ["--out", out]
    return seqace_main([*front, "map", *argv])


if __name__ == "__main__":
    sys.exit(main())
