#include "seqace/covariance.h"

#include <Eigen/Dense>

#include <cmath>


namespace seqace {
namespace {

Eigen::Matrix3d skew(const Eigen::Vector3d& v) {
  Eigen::Matrix3d S;
  S << 0, -v.z(), v.y(), v.z(), 0, -v.x(), -v.y(), v.x(), 0;
  return S;
}

// Relative eigenvalue below which J^T J counts as singular (after scaling it to unit diagonal).
constexpr double kDegenerateRatio = 1e-12;

}  // namespace

Matrix6d ros_from_update_jacobian(const Pose& pose) {
  // R_c2w' = (exp(w) R)^T = exp(-R^T w) R^T          ->  phi = -R^T w
  // C' = -R'^T t' ~ C - R^T dt - R^T [t]x w          ->  dC = -R^T [t]x w - R^T dt
  const Eigen::Matrix3d Rt = pose.R.transpose();
  Matrix6d G = Matrix6d::Zero();
  G.block<3, 3>(0, 0) = -Rt * skew(pose.t);
  G.block<3, 3>(0, 3) = -Rt;
  G.block<3, 3>(3, 0) = -Rt;
  return G;
}

CovarianceResult pose_covariance(const Problem& prob, const PointSet& inliers, const Pose& pose) {
  CovarianceResult out;
  int n = 0;
  for (const auto& idx : inliers) n += static_cast<int>(idx.size());
  Matrix6d H;
  const double sse = least_squares_system(prob, inliers, pose, &H);
  const int dof = 2 * n - 6;
  if (dof <= 0) {
    out.why = "too few inliers for a covariance";
    return out;
  }
  // Scale to unit diagonal so that metres and radians compare, then look at the spectrum.
  const Vector6d d = H.diagonal();
  if (!(d.minCoeff() > 0.0) || !H.allFinite()) {
    out.why = "degenerate: the inliers do not constrain every pose parameter";
    return out;
  }
  const Vector6d s = d.cwiseSqrt().cwiseInverse();
  const Matrix6d Hn = s.asDiagonal() * H * s.asDiagonal();
  Eigen::SelfAdjointEigenSolver<Matrix6d> eig(Hn);
  const Vector6d ev = eig.eigenvalues();
  if (!(ev[0] > kDegenerateRatio * ev[5])) {
    out.why = "degenerate: the inliers do not constrain every pose parameter";
    return out;
  }
  const Matrix6d Hn_inv =
      eig.eigenvectors() * ev.cwiseInverse().asDiagonal() * eig.eigenvectors().transpose();
  out.sigma2_px = sse / dof;
  const Matrix6d cov_update = out.sigma2_px * (s.asDiagonal() * Hn_inv * s.asDiagonal());
  const Matrix6d G = ros_from_update_jacobian(pose);
  Matrix6d cov = G * cov_update * G.transpose();
  out.covariance = 0.5 * (cov + cov.transpose());
  out.ok = true;
  return out;
}

}  // namespace seqace
