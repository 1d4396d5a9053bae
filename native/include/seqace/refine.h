// Non-linear refinement of a pose on a set of correspondences: Levenberg-Marquardt on the
// pixel reprojection error with a robust loss (iteratively reweighted), as PoseLib and OpenCV's
// SOLVEPNP_ITERATIVE do. Used for local optimisation inside RANSAC and for the final fit.
#pragma once

#include <vector>

#include "seqace/problem.h"
#include "seqace/types.h"

namespace seqace {

// Indices into each view's points (same order as Problem::views).
using PointSet = std::vector<std::vector<int>>;

struct RefineOptions {
  int max_iterations = 10;
  RobustLoss loss = RobustLoss::kCauchy;
  double loss_scale_px = 2.0;
};

// Points whose reprojection error is below threshold_px; at most max_points (the first ones
// in the problem's shuffled order, i.e. a random subset). Returns their number.
int collect_inliers(const Problem& problem, const Pose& pose, double threshold_px, PointSet* out,
                    int max_points = 1 << 30);

// Refines `pose` in place; returns the number of accepted iterations.
int refine_pose(const Problem& problem, const PointSet& points, const RefineOptions& options,
                Pose* pose);

// Unweighted Gauss-Newton matrix J^T J of the pixel residuals at `pose`, in the update
// parametrisation of reprojection.h; returns the sum of squared residuals (for the covariance).
double least_squares_system(const Problem& problem, const PointSet& points, const Pose& pose,
                            Matrix6d* H);

// Nearest rotation (SVD); P3P rotations are only orthonormal to ~1e-9.
void orthonormalize(Pose* pose);

}  // namespace seqace
