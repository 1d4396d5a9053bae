#include "seqace/triangulation.h"

#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace seqace {
namespace {

struct Obs {
  Eigen::Matrix3d R;
  Eigen::Vector3d t;
  Eigen::Matrix3d K;
  Eigen::Vector2d x;  // pixel
  Eigen::Vector2d u;  // normalised coordinates
  Eigen::Vector3d centre;
};

// Smallest-eigenvalue solution of the weighted DLT system; zeros where it is not finite (as the
// Python reference did, so that Gauss-Newton starts somewhere defined).
Eigen::Vector3d dlt(const std::vector<Obs>& obs, const std::vector<double>& w) {
  Eigen::Matrix4d AtA = Eigen::Matrix4d::Zero();
  for (size_t i = 0; i < obs.size(); ++i) {
    if (w[i] == 0.0) continue;
    Eigen::Matrix<double, 3, 4> P;
    P << obs[i].R, obs[i].t;
    const Eigen::RowVector4d r0 = w[i] * (obs[i].u.x() * P.row(2) - P.row(0));
    const Eigen::RowVector4d r1 = w[i] * (obs[i].u.y() * P.row(2) - P.row(1));
    AtA += r0.transpose() * r0 + r1.transpose() * r1;
  }
  Eigen::SelfAdjointEigenSolver<Eigen::Matrix4d> es(AtA);
  const Eigen::Vector4d v = es.eigenvectors().col(0);
  Eigen::Vector3d X = v.head<3>() / v(3);
  for (int k = 0; k < 3; ++k)
    if (!std::isfinite(X(k))) X(k) = 0.0;
  return X;
}

// Pixel and camera-frame point of X in one observation.
inline void project(const Obs& o, const Eigen::Vector3d& X, Eigen::Vector2d* px, Eigen::Vector3d* Xc) {
  *Xc = o.R * X + o.t;
  const Eigen::Vector2d n = Xc->head<2>() / Xc->z();
  *px = o.K.topLeftCorner<2, 2>() * n + o.K.block<2, 1>(0, 2);
}

// Gauss-Newton on the pixel reprojection error with Cauchy IRLS weights, slightly damped.
Eigen::Vector3d refine(Eigen::Vector3d X, const std::vector<Obs>& obs, const std::vector<double>& w,
                       int iterations, double cauchy_scale) {
  const double c2 = cauchy_scale * cauchy_scale;
  for (int it = 0; it < iterations; ++it) {
    Eigen::Matrix3d H = Eigen::Matrix3d::Zero();
    Eigen::Vector3d g = Eigen::Vector3d::Zero();
    for (size_t i = 0; i < obs.size(); ++i) {
      if (w[i] == 0.0) continue;
      Eigen::Vector2d px;
      Eigen::Vector3d Xc;
      project(obs[i], X, &px, &Xc);
      const Eigen::Vector2d r = px - obs[i].x;
      const double z = std::abs(Xc.z()) < 1e-9 ? 1e-9 : Xc.z();
      Eigen::Matrix<double, 2, 3> D;  // d(normalised)/d(X) = (R[:2] - n R[2]) / z
      D.row(0) = (obs[i].R.row(0) - (Xc.x() / z) * obs[i].R.row(2)) / z;
      D.row(1) = (obs[i].R.row(1) - (Xc.y() / z) * obs[i].R.row(2)) / z;
      const Eigen::Matrix<double, 2, 3> J = obs[i].K.topLeftCorner<2, 2>() * D;
      const double wr = w[i] / (1.0 + r.squaredNorm() / c2);
      H += wr * J.transpose() * J;
      g += wr * J.transpose() * r;
    }
    H += (1e-6 * H.trace() + 1e-12) * Eigen::Matrix3d::Identity();
    const Eigen::Vector3d dX = H.ldlt().solve(-g);
    if (dX.allFinite()) X += dX;
  }
  return X;
}

}  // namespace

TriangulationOutput triangulate_tracks(const int64_t* obs_track, const int64_t* obs_image,
                                       const double* obs_xy, int64_t num_obs, const double* w2c,
                                       const double* K, int64_t num_images, int64_t num_tracks,
                                       const TriangulationOptions& opt) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  TriangulationOutput out;
  out.points.assign(3 * num_tracks, nan);
  out.valid.assign(num_tracks, 0);
  out.obs_inlier.assign(num_obs, 0);
  out.obs_error.assign(num_obs, inf);

  std::vector<Eigen::Matrix3d> R(num_images), Kinv(num_images), Km(num_images);
  std::vector<Eigen::Vector3d> t(num_images), centre(num_images);
  for (int64_t i = 0; i < num_images; ++i) {
    R[i] = Eigen::Map<const Eigen::Matrix<double, 3, 4, Eigen::RowMajor>>(w2c + 12 * i).leftCols<3>();
    t[i] = Eigen::Map<const Eigen::Matrix<double, 3, 4, Eigen::RowMajor>>(w2c + 12 * i).col(3);
    Km[i] = Eigen::Map<const Eigen::Matrix<double, 3, 3, Eigen::RowMajor>>(K + 9 * i);
    Kinv[i] = Km[i].inverse();
    centre[i] = -R[i].transpose() * t[i];
  }

  // Observations grouped by track, in input order within a track.
  std::vector<int64_t> order(num_obs);
  std::iota(order.begin(), order.end(), 0);
  for (int64_t m = 0; m < num_obs; ++m) {
    if (obs_track[m] < 0 || obs_track[m] >= num_tracks)
      throw std::invalid_argument("obs_track " + std::to_string(obs_track[m]) + " outside [0, " +
                                  std::to_string(num_tracks) + ")");
    if (obs_image[m] < 0 || obs_image[m] >= num_images)
      throw std::invalid_argument("obs_image " + std::to_string(obs_image[m]) + " outside [0, " +
                                  std::to_string(num_images) + ")");
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return obs_track[a] < obs_track[b]; });

  const double cos_min = std::cos(opt.min_angle_deg * M_PI / 180.0);
  std::vector<Obs> obs;
  std::vector<double> w, err;
  std::vector<uint8_t> inl;
  for (int64_t s = 0; s < num_obs;) {
    const int64_t track = obs_track[order[s]];
    int64_t e = s;
    while (e < num_obs && obs_track[order[e]] == track) ++e;
    const int64_t n = e - s;
    if (n < opt.min_views) {
      s = e;
      continue;
    }
    obs.resize(n);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t m = order[s + k], im = obs_image[m];
      Obs& o = obs[k];
      o.R = R[im];
      o.t = t[im];
      o.K = Km[im];
      o.x = Eigen::Vector2d(obs_xy[2 * m], obs_xy[2 * m + 1]);
      o.u = Kinv[im].topLeftCorner<2, 2>() * o.x + Kinv[im].block<2, 1>(0, 2);
      o.centre = centre[im];
    }
    w.assign(n, 1.0);
    err.assign(n, inf);
    Eigen::Vector3d X = refine(dlt(obs, w), obs, w, opt.iterations, opt.max_reproj_px);
    for (int round = 0; round < 2; ++round) {  // drop outliers, re-initialise, refine the rest
      for (int64_t k = 0; k < n; ++k) {
        Eigen::Vector2d px;
        Eigen::Vector3d Xc;
        project(obs[k], X, &px, &Xc);
        if (!((px - obs[k].x).norm() < opt.max_reproj_px)) w[k] = 0.0;
      }
      X = refine(dlt(obs, w), obs, w, opt.iterations, opt.max_reproj_px);
    }
    inl.assign(n, 0);
    int num_inl = 0;
    bool behind = false;
    for (int64_t k = 0; k < n; ++k) {
      Eigen::Vector2d px;
      Eigen::Vector3d Xc;
      project(obs[k], X, &px, &Xc);
      const double ek = (px - obs[k].x).norm();
      err[k] = std::isfinite(ek) ? ek : inf;
      if (w[k] > 0.0) {
        if (err[k] < opt.max_reproj_px && Xc.z() > opt.min_depth_m) {
          inl[k] = 1;
          ++num_inl;
        }
        if (Xc.z() <= opt.min_depth_m) behind = true;  // cheirality: wrong, not merely noisy
      }
    }
    bool ok = num_inl >= opt.min_views && !behind && X.allFinite();
    if (ok) {  // the widest angle between two inlier rays must reach min_angle_deg
      double min_cos = 1.0;
      for (int64_t a = 0; a < n; ++a) {
        if (!inl[a]) continue;
        const Eigen::Vector3d ra = (obs[a].centre - X).normalized();
        for (int64_t b = a + 1; b < n; ++b)
          if (inl[b]) min_cos = std::min(min_cos, ra.dot((obs[b].centre - X).normalized()));
      }
      ok = min_cos <= cos_min;
    }
    if (ok) {
      for (int k = 0; k < 3; ++k) out.points[3 * track + k] = X(k);
      out.valid[track] = 1;
    }
    for (int64_t k = 0; k < n; ++k) {
      const int64_t m = order[s + k];
      out.obs_error[m] = ok ? err[k] : inf;
      out.obs_inlier[m] = ok && inl[k];
    }
    s = e;
  }
  return out;
}

}  // namespace seqace
