"""A small, pure-numpy transform tree with time interpolation (what tf2's Buffer does).

Used to read camera poses from the /tf and /tf_static topics of a bag, and by the ROS node
where tf2_ros is not installed. Transforms are 4x4 ``T_parent_child`` (maps points in the child
frame into the parent frame), stamps are float seconds.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from .errors import SeqaceError
from .geometry import invert_pose, matrix_to_quaternion_xyzw, quaternion_xyzw_to_matrix


class TransformLookupError(SeqaceError, LookupError):
    """A transform that the buffer cannot give: unknown frame, no connection, or out of time range."""


def _slerp(q0: np.ndarray, q1: np.ndarray, u: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + u * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - u) * theta) * q0 + np.sin(u * theta) * q1) / np.sin(theta)


def interpolate_pose(T0: np.ndarray, T1: np.ndarray, u: float) -> np.ndarray:
    """Pose a fraction ``u`` of the way from T0 to T1 (linear translation, slerp rotation)."""
    q = _slerp(matrix_to_quaternion_xyzw(T0[:3, :3]), matrix_to_quaternion_xyzw(T1[:3, :3]), u)
    T = np.eye(4)
    T[:3, :3] = quaternion_xyzw_to_matrix(q)
    T[:3, 3] = (1 - u) * T0[:3, 3] + u * T1[:3, 3]
    return T


@dataclass
class _Edge:
    parent: str
    static: bool
    stamps: list[float] = field(default_factory=list)
    poses: list[np.ndarray] = field(default_factory=list)

    def at(self, stamp: float, max_extrapolation: float, child: str) -> np.ndarray:
        if self.static:
            return self.poses[-1]
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            return self.poses[i]
        if 0 < i < len(self.stamps):
            t0, t1 = self.stamps[i - 1], self.stamps[i]
            return interpolate_pose(self.poses[i - 1], self.poses[i], (stamp - t0) / (t1 - t0))
        nearest = 0 if i == 0 else len(self.stamps) - 1
        if abs(self.stamps[nearest] - stamp) <= max_extrapolation:
            return self.poses[nearest]
        raise TransformLookupError(
            f"{self.parent} -> {child} is known from {self.stamps[0]:.3f} to {self.stamps[-1]:.3f} s; "
            f"requested {stamp:.3f} s would be an extrapolation")


class TransformBuffer:
    """Transform tree: each frame has one parent; dynamic edges keep ``history_s`` seconds."""

    def __init__(self, history_s: float | None = None):
        self.history_s = history_s
        self._edges: dict[str, _Edge] = {}  # child -> edge to its parent

    def add(self, parent: str, child: str, stamp: float, T_parent_child: np.ndarray,
            static: bool = False) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"transform {parent!r} -> {child!r}: frame ids must be distinct and non-empty")
        T = np.asarray(T_parent_child, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise ValueError(f"transform {parent} -> {child} is not a finite 4x4 matrix")
        edge = self._edges.get(child)
        if edge is None or edge.parent != parent or edge.static != static:
            # tf2 semantics: a frame's newest parent replaces an older one.
            edge = self._edges[child] = _Edge(parent=parent, static=static)
        if static:
            edge.stamps, edge.poses = [stamp], [T]
            return
        i = bisect.bisect_left(edge.stamps, stamp)
        if i < len(edge.stamps) and edge.stamps[i] == stamp:
            edge.poses[i] = T
        else:
            edge.stamps.insert(i, stamp)
            edge.poses.insert(i, T)
        if self.history_s is not None and edge.stamps[-1] - edge.stamps[0] > self.history_s:
            cut = bisect.bisect_left(edge.stamps, edge.stamps[-1] - self.history_s)
            del edge.stamps[:cut], edge.poses[:cut]

    def frames(self) -> set[str]:
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def time_range(self, child: str) -> tuple[float, float] | None:
        """Stamps covered by the dynamic edge into ``child`` (None for a static or unknown frame)."""
        edge = self._edges.get(child.lstrip("/"))
        if edge is None or edge.static or not edge.stamps:
            return None
        return edge.stamps[0], edge.stamps[-1]

    def _chain(self, frame: str) -> list[str]:
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
            if len(chain) > 1000:
                raise TransformLookupError(f"transform tree has a loop through {frame}")
        return chain

    def _to_ancestor(self, chain: list[str], ancestor: str, stamp: float, tol: float) -> np.ndarray:
        T = np.eye(4)
        for child in chain[: chain.index(ancestor)]:
            T = self._edges[child].at(stamp, tol, child) @ T
        return T

    def lookup(self, target: str, source: str, stamp: float, max_extrapolation: float = 0.0) -> np.ndarray:
        """T_target_source at ``stamp``: maps points in ``source`` into ``target``."""
        target, source = target.lstrip("/"), source.lstrip("/")
        known = self.frames()
        for name in (target, source):
            if name not in known:
                raise TransformLookupError(
                    f"frame {name!r} is not in the transform tree (known: {', '.join(sorted(known)) or 'none'})")
        if target == source:
            return np.eye(4)
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((f for f in up_source if f in up_target), None)
        if common is None:
            raise TransformLookupError(
                f"{target!r} and {source!r} are not connected: their roots are {up_target[-1]!r} and "
                f"{up_source[-1]!r}")
        T_common_source = self._to_ancestor(up_source, common, stamp, max_extrapolation)
        T_common_target = self._to_ancestor(up_target, common, stamp, max_extrapolation)
        return invert_pose(T_common_target) @ T_common_source
