#include "seqace/refine.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>

#include "seqace/reprojection.h"

namespace seqace {
namespace {

// Robust losses of the squared residual s = |r|^2 (pixels^2): value rho(s) and IRLS weight
// d rho / d s. Separate types so that the per-point loop is specialised (no switch inside).
struct TrivialLoss {
  double c2;
  double rho(double s) const { return s; }
  double weight(double) const { return 1.0; }
};
struct HuberLoss {
  double c2;
  double rho(double s) const { return s <= c2 ? s : 2.0 * std::sqrt(c2 * s) - c2; }
  double weight(double s) const { return s <= c2 ? 1.0 : std::sqrt(c2 / s); }
};
struct CauchyLoss {
  double c2;
  double rho(double s) const { return c2 * std::log1p(s / c2); }
  double weight(double s) const { return 1.0 / (1.0 + s / c2); }
};

// A point that moved behind the camera costs as much as a 100 px error, so that LM does not
// "improve" the cost by pushing points out of view.
constexpr double kBehindCameraError2 = 1e4;
// Offset of row a of the packed upper triangle of a 6x6 matrix.
constexpr int kRowStart[6] = {0, 6, 11, 15, 18, 20};

// Robust cost 0.5 sum rho(|r|^2) and, if H is given, the IRLS normal equations at `pose`
// (upper triangle of H only). This is the refinement's hot loop, so it is written out by hand
// rather than with reprojection_residual: same maths, see reprojection.h.
template <class Loss, bool kWithSystem>
double linearize_impl(const Problem& prob, const PointSet& points, const Pose& pose,
                      const Loss& loss, Matrix6d* H, Vector6d* g) {
  double cost = 0.0;
  double h[21] = {0.0}, gv[6] = {0.0};
  const Eigen::Matrix3d& R = pose.R;
  for (size_t v = 0; v < prob.views.size(); ++v) {
    const View& view = prob.views[v];
    const double fx = view.fx, fy = view.fy, sk = view.skew;
    const Eigen::Matrix3d& Rv = view.view_from_cur.R;
    const Eigen::Vector3d& tv = view.view_from_cur.t;
    for (int i : points[v]) {
      const Eigen::Vector3d p = R * view.X[i];
      Eigen::Vector3d Z = p + pose.t;
      if (!view.is_current) Z = Rv * Z + tv;
      if (!(Z.z() > 1e-9)) {
        cost += 0.5 * loss.rho(kBehindCameraError2);
        continue;
      }
      const double iz = 1.0 / Z.z();
      const double u = Z.x() * iz, w = Z.y() * iz;
      const double dx = u - view.x[i].x(), dy = w - view.x[i].y();
      const double r0 = fx * dx + sk * dy, r1 = fy * dy;
      const double s = r0 * r0 + r1 * r1;
      cost += 0.5 * loss.rho(s);
      if (!kWithSystem) continue;
      // Rows of d r / d Z (times R_v for other frames), then J = [p x b, b] per row.
      Eigen::Vector3d b0(fx * iz, sk * iz, -(fx * u + sk * w) * iz);
      Eigen::Vector3d b1(0.0, fy * iz, -fy * w * iz);
      if (!view.is_current) {
        b0 = Rv.transpose() * b0;
        b1 = Rv.transpose() * b1;
      }
      const Eigen::Vector3d a0 = p.cross(b0), a1 = p.cross(b1);
      const double J0[6] = {a0.x(), a0.y(), a0.z(), b0.x(), b0.y(), b0.z()};
      const double J1[6] = {a1.x(), a1.y(), a1.z(), b1.x(), b1.y(), b1.z()};
      const double wt = loss.weight(s);
      const double wr0 = wt * r0, wr1 = wt * r1;
      // Upper triangle, fully unrolled (21 entries): the loops would not be.
#define SEQACE_H_ROW(a)                                                      \
  {                                                                          \
    const double wa0 = wt * J0[a], wa1 = wt * J1[a];                         \
    gv[a] += J0[a] * wr0 + J1[a] * wr1;                                      \
    for (int b = a; b < 6; ++b) h[kRowStart[a] + b - a] += wa0 * J0[b] + wa1 * J1[b]; \
  }
      SEQACE_H_ROW(0) SEQACE_H_ROW(1) SEQACE_H_ROW(2) SEQACE_H_ROW(3) SEQACE_H_ROW(4) SEQACE_H_ROW(5)
#undef SEQACE_H_ROW
    }
  }
  if (kWithSystem) {
    int k = 0;
    for (int a = 0; a < 6; ++a) {
      (*g)[a] = gv[a];
      for (int b = a; b < 6; ++b) (*H)(a, b) = (*H)(b, a) = h[k++];
    }
  }
  return cost;
}

template <class Loss>
int refine_with(const Problem& prob, const PointSet& points, const Loss& loss, int max_iterations,
                Pose* pose) {
  Matrix6d H, H_new;
  Vector6d g, g_new;
  double cost = linearize_impl<Loss, true>(prob, points, *pose, loss, &H, &g);
  double lambda = 1e-4;  // relative to diag(H): start close to Gauss-Newton
  int accepted = 0;
  for (int it = 0; it < max_iterations; ++it) {
    Matrix6d A = H;
    A.diagonal() += lambda * H.diagonal() + Vector6d::Constant(1e-12);
    const Vector6d delta = A.ldlt().solve(-g);
    if (!delta.allFinite()) break;
    Pose cand;
    cand.R = so3_exp(delta.head<3>()) * pose->R;
    cand.t = pose->t + delta.tail<3>();
    const double cost_new = linearize_impl<Loss, true>(prob, points, cand, loss, &H_new, &g_new);
    if (cost_new < cost) {
      const double decrease = cost - cost_new;
      *pose = cand;
      cost = cost_new;
      H = H_new;
      g = g_new;
      lambda = std::max(lambda * 0.1, 1e-10);
      ++accepted;
      // Converged: robust (IRLS) steps shrink only linearly, by ~4x per iteration with Cauchy;
      // once the cost moves by 1e-6 of itself the pose moves by microns, far below the noise.
      if (decrease <= 1e-6 * cost) break;
    } else {
      // No decrease even though the step is tiny: at a minimum to rounding precision.
      if (cost_new - cost <= 1e-12 * cost) break;
      lambda *= 10.0;
      if (lambda > 1e4) break;  // no descent direction left
    }
  }
  return accepted;
}

}  // namespace

void orthonormalize(Pose* pose) {
  Eigen::JacobiSVD<Eigen::Matrix3d> svd(pose->R, Eigen::ComputeFullU | Eigen::ComputeFullV);
  Eigen::Matrix3d R = svd.matrixU() * svd.matrixV().transpose();
  if (R.determinant() < 0.0) {
    Eigen::Matrix3d U = svd.matrixU();
    U.col(2) *= -1.0;
    R = U * svd.matrixV().transpose();
  }
  pose->R = R;
}

int collect_inliers(const Problem& prob, const Pose& pose, double threshold_px, PointSet* out,
                    int max_points) {
  const double th2 = threshold_px * threshold_px;
  out->assign(prob.views.size(), {});
  int count = 0;
  Eigen::Vector2d r;
  for (size_t v = 0; v < prob.views.size() && count < max_points; ++v) {
    const View& view = prob.views[v];
    std::vector<int>& idx = (*out)[v];
    for (int i = 0; i < view.size() && count < max_points; ++i) {
      if (reprojection_residual(view, pose, i, &r) && r.squaredNorm() < th2) {
        idx.push_back(i);
        ++count;
      }
    }
  }
  return count;
}

int refine_pose(const Problem& prob, const PointSet& points, const RefineOptions& options,
                Pose* pose) {
  orthonormalize(pose);
  const double c2 = options.loss_scale_px * options.loss_scale_px;
  switch (options.loss) {
    case RobustLoss::kCauchy:
      return refine_with(prob, points, CauchyLoss{c2}, options.max_iterations, pose);
    case RobustLoss::kHuber:
      return refine_with(prob, points, HuberLoss{c2}, options.max_iterations, pose);
    default:
      return refine_with(prob, points, TrivialLoss{c2}, options.max_iterations, pose);
  }
}

double least_squares_system(const Problem& prob, const PointSet& points, const Pose& pose,
                            Matrix6d* H) {
  Vector6d g;
  return 2.0 * linearize_impl<TrivialLoss, true>(prob, points, pose, TrivialLoss{1.0}, H, &g);
}

}  // namespace seqace
