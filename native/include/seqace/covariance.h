// Pose covariance from the Gauss-Newton system of the final fit, expressed the way ROS wants it.
//
// Sigma_delta = sigma^2 (J^T J)^-1 in the refinement's parametrisation (a rotation vector on the
// left of R_w2c and a translation offset, see reprojection.h), with sigma^2 estimated from the
// inliers' pixel residuals. ROS's PoseWithCovariance wants (x, y, z, rot_x, rot_y, rot_z): the
// camera centre in the world frame and a rotation about the world (fixed) axes on the left of
// R_c2w, so Sigma is mapped through that change of variables' Jacobian G: G Sigma_delta G^T.
//
// sigma^2 accounts for the inliers having been selected by their error (see
// truncated_noise_variance). It still assumes least squares on Gaussian noise: with the Huber
// loss and noise at half the refine threshold the empirical covariance is ~1.1-1.3x the
// prediction (test_ransac.py measures it); with noise near the threshold, more.
#pragma once

#include <string>

#include "seqace/problem.h"
#include "seqace/refine.h"
#include "seqace/types.h"

namespace seqace {

struct CovarianceResult {
  bool ok = false;
  std::string why;            // set when !ok ("degenerate: ...")
  Matrix6d covariance;        // ROS order, world frame
  double sigma2_px = 0.0;     // estimated pixel noise variance per axis
};

// inlier_threshold_px: the error below which `inliers` were selected (0: not truncated).
CovarianceResult pose_covariance(const Problem& problem, const PointSet& inliers, const Pose& pose,
                                 double inlier_threshold_px);

// Per-axis pixel noise variance from the mean squared residual norm of 2D Gaussian residuals
// that were kept only below threshold_px (a truncated exponential; inverted by bisection).
double truncated_noise_variance(double mean_e2, double threshold_px);

// Jacobian d(C, phi) / d(w, dt) of the ROS coordinates (camera centre C = -R^T t, world-frame
// rotation phi) with respect to the refinement's update, at the pose the refinement optimises
// (world points centred on Problem::centroid; the centroid shifts C but not its derivatives).
Matrix6d ros_from_update_jacobian(const Pose& pose);

}  // namespace seqace
