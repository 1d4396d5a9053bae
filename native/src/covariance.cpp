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

// Mean of e^2 = |r|^2 for 2D Gaussian residuals of per-axis variance s2 that are kept only when
// e^2 < T: e^2 is exponential with mean 2 s2, truncated at T.
double truncated_mean_e2(double s2, double T) {
  const double q = std::exp(-T / (2.0 * s2));
  return 2.0 * s2 - T * q / (1.0 - q);
}

}  // namespace

double truncated_noise_variance(double mean_e2, double threshold_px) {
  const double T = threshold_px * threshold_px;
  if (!(threshold_px > 0.0) || !std::isfinite(T)) return 0.5 * mean_e2;
  // The truncated mean rises from 0 to T / 2 (uniform in the disc) as s2 grows: invert it by
  // bisection in log space; inliers that fill the disc evenly say "at least this noisy".
  const double target = std::min(mean_e2, 0.99 * 0.5 * T);
  double lo = 0.25 * target, hi = 1e4 * T;
  for (int it = 0; it < 60; ++it) {
    const double mid = std::sqrt(lo * hi);
    (truncated_mean_e2(mid, T) < target ? lo : hi) = mid;
  }
  return std::sqrt(lo * hi);
}

namespace {

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

CovarianceResult pose_covariance(const Problem& prob, const PointSet& inliers, const Pose& pose,
                                 double inlier_threshold_px) {
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
  // sse / dof is unbiased for untruncated residuals; the inliers were selected by their error,
  // which hides the tail and would make the covariance too confident when the noise is a
  // sizeable fraction of the threshold (2 px noise, 4 px threshold: 31 % low).
  out.sigma2_px = truncated_noise_variance(2.0 * sse / dof, inlier_threshold_px);
  const Matrix6d cov_update = out.sigma2_px * (s.asDiagonal() * Hn_inv * s.asDiagonal());
  const Matrix6d G = ros_from_update_jacobian(pose);
  Matrix6d cov = G * cov_update * G.transpose();
  out.covariance = 0.5 * (cov + cov.transpose());
  out.ok = true;
  return out;
}

}  // namespace seqace
