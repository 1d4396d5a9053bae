// Lambda Twist P3P (Persson & Nordberg, "Lambda Twist: An Accurate Fast Robust Perspective
// Three Point (P3P) Solver", ECCV 2018), written from the paper's derivation:
//
//   The unknown depths L = (l1, l2, l3) satisfy three quadrics  L^T M_ij L = a_ij  (the squared
//   world distances). Two homogeneous combinations D1, D2 vanish on every solution; a member
//   D0 = D1 + g D2 of their pencil is singular for the roots g of a cubic, and a singular,
//   indefinite D0 factors into two planes through the origin. Each plane meets the conic D1 = 0
//   (or D2 = 0) in at most two rays; the scale comes from the distances. So: one cubic, two
//   2x2 factorisations, two quadratics, then the pose from the three camera-frame points.
#include "seqace/p3p.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>

namespace seqace {
namespace {

Eigen::Matrix3d adjugate(const Eigen::Matrix3d& A) {
  Eigen::Matrix3d C;  // transpose of the cofactor matrix, no division: fine for singular A
  C(0, 0) = A(1, 1) * A(2, 2) - A(1, 2) * A(2, 1);
  C(0, 1) = A(0, 2) * A(2, 1) - A(0, 1) * A(2, 2);
  C(0, 2) = A(0, 1) * A(1, 2) - A(0, 2) * A(1, 1);
  C(1, 0) = A(1, 2) * A(2, 0) - A(1, 0) * A(2, 2);
  C(1, 1) = A(0, 0) * A(2, 2) - A(0, 2) * A(2, 0);
  C(1, 2) = A(0, 2) * A(1, 0) - A(0, 0) * A(1, 2);
  C(2, 0) = A(1, 0) * A(2, 1) - A(1, 1) * A(2, 0);
  C(2, 1) = A(0, 1) * A(2, 0) - A(0, 0) * A(2, 1);
  C(2, 2) = A(0, 0) * A(1, 1) - A(0, 1) * A(1, 0);
  return C;
}

// Real roots of c3 x^3 + c2 x^2 + c1 x + c0, largest first, each polished by Newton steps
// (the closed forms lose digits when roots are close).
int real_cubic_roots(double c3, double c2, double c1, double c0, double roots[3]) {
  const double scale = std::max({std::abs(c2), std::abs(c1), std::abs(c0)});
  int n = 0;
  if (std::abs(c3) <= 1e-14 * scale) {  // the pencil's cubic degenerates to a quadratic
    if (std::abs(c2) <= 1e-14 * scale) {
      if (c1 == 0.0) return 0;
      roots[0] = -c0 / c1;
      return 1;
    }
    const double disc = c1 * c1 - 4.0 * c2 * c0;
    if (disc < 0.0) return 0;
    const double q = -0.5 * (c1 + std::copysign(std::sqrt(disc), c1));
    roots[n++] = q / c2;
    if (q != 0.0) roots[n++] = c0 / q;
  } else {
    const double a = c2 / c3, b = c1 / c3, c = c0 / c3;
    const double Q = (a * a - 3.0 * b) / 9.0;
    const double R = (2.0 * a * a * a - 9.0 * a * b + 27.0 * c) / 54.0;
    const double Q3 = Q * Q * Q;
    if (R * R < Q3) {
      const double theta = std::acos(std::clamp(R / std::sqrt(Q3), -1.0, 1.0));
      const double m = -2.0 * std::sqrt(Q);
      constexpr double kTwoPi = 6.283185307179586;
      roots[n++] = m * std::cos(theta / 3.0) - a / 3.0;
      roots[n++] = m * std::cos((theta + kTwoPi) / 3.0) - a / 3.0;
      roots[n++] = m * std::cos((theta - kTwoPi) / 3.0) - a / 3.0;
    } else {
      const double A = -std::copysign(std::cbrt(std::abs(R) + std::sqrt(R * R - Q3)), R);
      const double B = (A != 0.0) ? Q / A : 0.0;
      roots[n++] = A + B - a / 3.0;
    }
    for (int i = 0; i < n; ++i) {
      double x = roots[i];
      for (int it = 0; it < 2; ++it) {
        const double f = ((x + a) * x + b) * x + c;
        const double df = (3.0 * x + 2.0 * a) * x + b;
        if (df == 0.0) break;
        x -= f / df;
      }
      roots[i] = x;
    }
  }
  std::sort(roots, roots + n, [](double u, double v) { return u > v; });
  return n;
}

// Solutions (up to two) of the homogeneous quadratic g11 p^2 + 2 g12 p q + g22 q^2 = 0,
// returned as directions p * e + q * f. Dividing by the larger of g11, g22 keeps it stable.
int split_quadratic(double g11, double g12, double g22, const Eigen::Vector3d& e,
                    const Eigen::Vector3d& f, Eigen::Vector3d out[2]) {
  const double disc = g12 * g12 - g11 * g22;
  if (disc < 0.0) return 0;
  const double sq = std::sqrt(disc);
  if (std::abs(g11) >= std::abs(g22)) {
    if (g11 == 0.0) return 0;  // the form is identically zero: no isolated solution
    out[0] = ((-g12 + sq) / g11) * e + f;
    out[1] = ((-g12 - sq) / g11) * e + f;
  } else {
    out[0] = e + ((-g12 + sq) / g22) * f;
    out[1] = e + ((-g12 - sq) / g22) * f;
  }
  return sq > 0.0 ? 2 : 1;
}

}  // namespace

int p3p_lambda_twist(const Eigen::Vector3d y[3], const Eigen::Vector3d X[3], Pose out[4]) {
  const Eigen::Vector3d e1 = X[1] - X[0], e2 = X[2] - X[0];
  const double a12_raw = e1.squaredNorm(), a13_raw = e2.squaredNorm();
  const double a23_raw = (X[2] - X[1]).squaredNorm();
  const double amax = std::max({a12_raw, a13_raw, a23_raw});
  if (!(amax > 0.0) || !std::isfinite(amax)) return 0;
  const Eigen::Vector3d normal = e1.cross(e2);
  // Collinear world points leave the rotation about their line free: no isolated solution.
  if (normal.squaredNorm() <= 1e-12 * a12_raw * a13_raw) return 0;

  // Work with distances scaled to O(1); the depths are scaled back at the end.
  const double a12 = a12_raw / amax, a13 = a13_raw / amax, a23 = a23_raw / amax;
  const double b12 = y[0].dot(y[1]), b13 = y[0].dot(y[2]), b23 = y[1].dot(y[2]);

  Eigen::Matrix3d M12, M13, M23;
  M12 << 1, -b12, 0, -b12, 1, 0, 0, 0, 0;
  M13 << 1, 0, -b13, 0, 0, 0, -b13, 0, 1;
  M23 << 0, 0, 0, 0, 1, -b23, 0, -b23, 1;
  const Eigen::Matrix3d D1 = a23 * M12 - a12 * M23;
  const Eigen::Matrix3d D2 = a23 * M13 - a13 * M23;

  // det(D1 + g D2) = det D2 g^3 + tr(D1 adj D2) g^2 + tr(adj D1 D2) g + det D1.
  const double c3 = D2.determinant();
  const double c2 = (D1 * adjugate(D2)).trace();
  const double c1 = (adjugate(D1) * D2).trace();
  const double c0 = D1.determinant();
  double gammas[3];
  const int num_gammas = real_cubic_roots(c3, c2, c1, c0, gammas);

  const Eigen::Matrix3d S = M12 + M13 + M23;  // L^T S L = a12 + a13 + a23: sets the scale
  const double a_sum = a12 + a13 + a23;
  Eigen::Matrix3d Xframe;
  Xframe << e1, e2, normal;
  const Eigen::Matrix3d Xframe_inv = Xframe.inverse();
  const double depth_scale = std::sqrt(amax);
  const double norm_D1 = D1.cwiseAbs().maxCoeff(), norm_D2 = D2.cwiseAbs().maxCoeff();

  int num_out = 0;
  for (int gi = 0; gi < num_gammas && num_out == 0; ++gi) {
    const double g = gammas[gi];
    const Eigen::Matrix3d D0 = D1 + g * D2;
    // Null vector of the rank-2 D0: the best conditioned cross product of two rows.
    const Eigen::Vector3d c01 = D0.row(0).cross(D0.row(1)).transpose();
    const Eigen::Vector3d c02 = D0.row(0).cross(D0.row(2)).transpose();
    const Eigen::Vector3d c12 = D0.row(1).cross(D0.row(2)).transpose();
    Eigen::Vector3d v = c01;
    if (c02.squaredNorm() > v.squaredNorm()) v = c02;
    if (c12.squaredNorm() > v.squaredNorm()) v = c12;
    const double vn = v.norm();
    if (!(vn > 0.0) || !std::isfinite(vn)) continue;
    v /= vn;
    // D0 restricted to the plane orthogonal to v; indefinite means two real planes.
    const Eigen::Vector3d u1 = v.unitOrthogonal();
    const Eigen::Vector3d u2 = v.cross(u1);
    const Eigen::Vector3d D0u1 = D0 * u1, D0u2 = D0 * u2;
    Eigen::Vector3d plane_dirs[2];
    const int num_planes =
        split_quadratic(u1.dot(D0u1), u1.dot(D0u2), u2.dot(D0u2), u1, u2, plane_dirs);
    if (num_planes == 0) continue;  // definite: the lines are complex, try another root

    // Each plane is span(v, m). Intersect it with the conic that D0 does not swamp.
    const Eigen::Matrix3d& D = (norm_D1 > std::abs(g) * norm_D2) ? D2 : D1;
    for (int pi = 0; pi < num_planes; ++pi) {
      const Eigen::Vector3d& m = plane_dirs[pi];
      const Eigen::Vector3d Dv = D * v, Dm = D * m;
      Eigen::Vector3d rays[2];
      const int num_rays = split_quadratic(v.dot(Dv), v.dot(Dm), m.dot(Dm), v, m, rays);
      for (int ri = 0; ri < num_rays; ++ri) {
        const double q = rays[ri].dot(S * rays[ri]);
        if (!(q > 0.0)) continue;
        Eigen::Vector3d L = rays[ri] * std::sqrt(a_sum / q);
        if (L.sum() < 0.0) L = -L;
        if (!(L.minCoeff() > 0.0)) continue;  // a point behind the camera

        // Two Newton steps on the three distance equations polish the depths.
        for (int it = 0; it < 2; ++it) {
          const Eigen::Vector3d F(L[0] * L[0] + L[1] * L[1] - 2 * b12 * L[0] * L[1] - a12,
                                  L[0] * L[0] + L[2] * L[2] - 2 * b13 * L[0] * L[2] - a13,
                                  L[1] * L[1] + L[2] * L[2] - 2 * b23 * L[1] * L[2] - a23);
          Eigen::Matrix3d J;
          J << 2 * (L[0] - b12 * L[1]), 2 * (L[1] - b12 * L[0]), 0,  //
              2 * (L[0] - b13 * L[2]), 0, 2 * (L[2] - b13 * L[0]),   //
              0, 2 * (L[1] - b23 * L[2]), 2 * (L[2] - b23 * L[1]);
          const double det = J.determinant();
          if (std::abs(det) < 1e-12) break;
          L -= J.inverse() * F;
        }
        if (!(L.minCoeff() > 0.0)) continue;

        // Camera-frame points; R maps the world triangle's frame onto the camera one's.
        L *= depth_scale;
        const Eigen::Vector3d Y0 = L[0] * y[0], Y1 = L[1] * y[1], Y2 = L[2] * y[2];
        const Eigen::Vector3d f1 = Y1 - Y0, f2 = Y2 - Y0;
        Eigen::Matrix3d Yframe;
        Yframe << f1, f2, f1.cross(f2);
        Pose& pose = out[num_out];
        pose.R = Yframe * Xframe_inv;
        if (!pose.R.allFinite() ||
            (pose.R.transpose() * pose.R - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff() >
                1e-3)
          continue;  // numerically broken solution (nearly parallel bearings)
        pose.t = Y0 - pose.R * X[0];
        if (++num_out == 4) return num_out;
      }
    }
  }
  return num_out;
}

}  // namespace seqace
