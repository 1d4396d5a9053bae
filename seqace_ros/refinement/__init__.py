"""Pose refinement against triangulated map points (issue 11's refinement stage, in progress).

- ``known_poses``, ``descriptor_matching``, ``tracks``, ``triangulation``: structure from KNOWN
  camera poses, shared with the structure-based peer in benchmarks/.
- ``sparse_features``: keypoints and descriptors from the encoder's dense outputs.
- ``point_map``: the refinement map (points + descriptors) built from the mapping frames.
- ``refiner``: guided matching of a query against the map under the regressed pose, then RANSAC.
"""
