// Reprojection residual of one correspondence and its Jacobian, shared by refinement and
// covariance so that both use exactly the same parametrisation:
//
//   pose update   R <- exp([w]x) R,  t <- t + dt     (delta = (w, dt), current-camera frame)
//   residual      r = A (pi(Z) - x) in pixels,  A = [[fx, s], [0, fy]],  Z = R_v (R X + t) + t_v
#pragma once

#include <Eigen/Core>

#include "seqace/problem.h"

namespace seqace {

using Matrix26d = Eigen::Matrix<double, 2, 6>;

// Returns false if the point is behind (or on) the camera plane.
inline bool reprojection_residual(const View& view, const Pose& pose, int i, Eigen::Vector2d* r,
                                  Matrix26d* J = nullptr) {
  const Eigen::Vector3d p = pose.R * view.X[i];
  Eigen::Vector3d Z = p + pose.t;
  if (!view.is_current) Z = view.view_from_cur.R * Z + view.view_from_cur.t;
  if (!(Z.z() > 1e-9)) return false;
  const double iz = 1.0 / Z.z();
  const double u = Z.x() * iz, v = Z.y() * iz;
  const double dx = u - view.x[i].x(), dy = v - view.x[i].y();
  (*r) << view.fx * dx + view.skew * dy, view.fy * dy;
  if (J != nullptr) {
    // d r / d Z = A * d pi / d Z
    Eigen::Matrix<double, 2, 3> B;
    B << view.fx * iz, view.skew * iz, -(view.fx * u + view.skew * v) * iz,  //
        0.0, view.fy * iz, -view.fy * v * iz;
    if (!view.is_current) B = B * view.view_from_cur.R;
    // d Z / d w = -R_v [p]x, so row k of d r / d w is (p x b_k)^T.
    J->block<1, 3>(0, 0) = p.cross(B.row(0).transpose()).transpose();
    J->block<1, 3>(1, 0) = p.cross(B.row(1).transpose()).transpose();
    J->block<2, 3>(0, 3) = B;
  }
  return true;
}

// Rodrigues: exp of a rotation vector.
inline Eigen::Matrix3d so3_exp(const Eigen::Vector3d& w) {
  const double theta2 = w.squaredNorm();
  Eigen::Matrix3d W;
  W << 0, -w.z(), w.y(), w.z(), 0, -w.x(), -w.y(), w.x(), 0;
  if (theta2 < 1e-16) return Eigen::Matrix3d::Identity() + W + 0.5 * W * W;
  const double theta = std::sqrt(theta2);
  return Eigen::Matrix3d::Identity() + (std::sin(theta) / theta) * W +
         ((1.0 - std::cos(theta)) / theta2) * W * W;
}

}  // namespace seqace
