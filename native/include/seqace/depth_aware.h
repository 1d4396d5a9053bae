// Pose refinement that trusts a keyframe point's depth less than its direction: the
// reprojection error along the projection of the point's keyframe ray is weighted by
// `along_weight`, across it by 1, under a Cauchy loss (IRLS Gauss-Newton). The method is
// documented in seqace_ros/refinement/depth_aware_pose.py, which calls this.
#pragma once

#include <Eigen/Core>

#include <cstdint>

namespace seqace {

struct DepthAwareOptions {
  double along_weight = 0.5;
  double loss_scale_px = 1.0;
  int iterations = 3;
};

// x2d: (n, 2) pixels; X: (n, 3) world points; origins: (n, 3) centres of the keyframes the points
// come from; fx, fy, cx, cy: intrinsics (no skew). R, t: world-to-camera, refined in place.
// Returns the number of Gauss-Newton steps taken.
int refine_depth_aware(const double* x2d, const double* X, const double* origins, int64_t n, double fx,
                       double fy, double cx, double cy, const DepthAwareOptions& options,
                       Eigen::Matrix3d* R, Eigen::Vector3d* t);

}  // namespace seqace
