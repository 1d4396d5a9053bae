"""Pose refinement after scene coordinate regression (issue 11).

- ``keyframe_tracking``: the map's keyframes (corners tracked into nearby mapping frames and
  triangulated with the known poses) and the query-time refinement that tracks them into the image.
- ``known_poses``, ``triangulation``: geometry from KNOWN camera poses, shared with the
  structure-based peer in benchmarks/.
"""
