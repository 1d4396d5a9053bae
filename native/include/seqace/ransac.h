// Robust absolute pose: P3P hypotheses scored in parallel (soft DSAC* or hard inlier counting),
// local optimisation of new best hypotheses, adaptive stopping, then refinement while the inlier
// set grows, and a covariance for ROS.
//
// Determinism: hypothesis h draws its sample from a stream keyed by (seed, h), and hypotheses
// are scored in rounds against the best known at the start of the round, then merged in order
// of h. The result therefore depends on the seed only, not on the thread count or timing,
// unless the time budget cuts the run short.
#pragma once

#include <vector>

#include "seqace/types.h"

namespace seqace {

// Single camera: row-major (n, 2) pixels, (n, 3) world points, intrinsics K.
// Throws std::invalid_argument for a bad K or options; returns success = false (with a
// message) for too few finite points, degenerate geometry, or no acceptable pose.
RansacResult estimate_pose(const double* points2d, const double* points3d, int n,
                           const Eigen::Matrix3d& K, const RansacOptions& options);

// Generalised camera: several frames with known transforms into the current camera; the pose
// returned is the current camera's. Minimal samples are drawn within one frame (P3P), scoring
// and refinement use all frames together.
RansacResult estimate_pose_multi(const std::vector<ViewInput>& views, const RansacOptions& options);

// Throws std::invalid_argument naming the first option that makes no sense.
void validate_options(const RansacOptions& options);

}  // namespace seqace
