#include "seqace/depth_aware.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <vector>

#include "seqace/reprojection.h"

namespace seqace {

int refine_depth_aware(const double* x2d, const double* X, const double* origins, int64_t n, double fx,
                       double fy, double cx, double cy, const DepthAwareOptions& o, Eigen::Matrix3d* R,
                       Eigen::Vector3d* t) {
  std::vector<Eigen::Vector3d> rays(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const Eigen::Vector3d r(X[3 * i] - origins[3 * i], X[3 * i + 1] - origins[3 * i + 1],
                            X[3 * i + 2] - origins[3 * i + 2]);
    rays[i] = r / std::max(r.norm(), 1e-12);
  }
  const double c2 = o.loss_scale_px * o.loss_scale_px, aw = o.along_weight;
  int steps = 0;
  for (int it = 0; it < o.iterations; ++it) {
    Eigen::Matrix<double, 6, 6> H = Eigen::Matrix<double, 6, 6>::Zero();
    Eigen::Matrix<double, 6, 1> g = Eigen::Matrix<double, 6, 1>::Zero();
    bool behind = false;
    for (int64_t i = 0; i < n && !behind; ++i) {
      const Eigen::Vector3d Xc = *R * Eigen::Vector3d(X[3 * i], X[3 * i + 1], X[3 * i + 2]) + *t;
      if (!(Xc.z() > 1e-9)) {
        behind = true;
        break;
      }
      const double iz = 1.0 / Xc.z(), u = Xc.x() * iz, v = Xc.y() * iz;
      const double r0 = fx * u + cx - x2d[2 * i], r1 = fy * v + cy - x2d[2 * i + 1];
      // d(pixel)/d(rotation, translation) for a perturbation applied in the camera frame.
      const Eigen::Matrix<double, 6, 1> Ju =
          (Eigen::Matrix<double, 6, 1>() << -fx * u * v, fx * (1 + u * u), -fx * v, fx * iz, 0.0, -fx * u * iz)
              .finished();
      const Eigen::Matrix<double, 6, 1> Jv =
          (Eigen::Matrix<double, 6, 1>() << -fy * (1 + v * v), fy * u * v, fy * u, 0.0, fy * iz, -fy * v * iz)
              .finished();
      // Where a deeper point would move in the image: the keyframe ray's direction, projected.
      const Eigen::Vector3d rc = *R * rays[i];
      double a0 = fx * (rc.x() - u * rc.z()) * iz, a1 = fy * (rc.y() - v * rc.z()) * iz;
      const double an = std::max(std::hypot(a0, a1), 1e-12);
      a0 /= an;
      a1 /= an;
      const double r_across = a0 * r1 - a1 * r0, r_along = aw * (a0 * r0 + a1 * r1);
      const Eigen::Matrix<double, 6, 1> J_across = a0 * Jv - a1 * Ju, J_along = aw * (a0 * Ju + a1 * Jv);
      const double w = 1.0 / (1.0 + (r_across * r_across + r_along * r_along) / c2);  // Cauchy (IRLS)
      H.noalias() += w * (J_across * J_across.transpose() + J_along * J_along.transpose());
      g.noalias() += w * (J_across * r_across + J_along * r_along);
    }
    if (behind) break;
    Eigen::FullPivLU<Eigen::Matrix<double, 6, 6>> lu(H);
    if (!lu.isInvertible()) break;
    const Eigen::Matrix<double, 6, 1> d = -lu.solve(g);
    if (!d.allFinite()) break;
    const Eigen::Matrix3d dR = so3_exp(d.head<3>());
    *R = dR * *R;
    *t = dR * *t + d.tail<3>();
    ++steps;
    if (d.norm() < 1e-10) break;
  }
  return steps;
}

}  // namespace seqace
