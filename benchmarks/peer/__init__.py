"""A classic structure-based visual relocalizer (what hloc does), used as the peer our scene
coordinate regression product is benchmarked against.

Pipeline: local features (RootSIFT or XFeat) -> map from KNOWN mapping poses (pose-proximity pairs,
mutual-NN + ratio matching, epipolar check, tracks, multi-view triangulation) -> per query: global
retrieval (VLAD), 2D-3D matching against the points seen in the retrieved frames, PoseLib LO-RANSAC
with non-linear refinement.
"""
