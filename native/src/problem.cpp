#include "seqace/problem.h"

#include <Eigen/Dense>

#include <cmath>
#include <stdexcept>
#include <string>

#include "seqace/random.h"

namespace seqace {
namespace {

std::string view_name(size_t v, bool name_frames) {
  return name_frames ? "frame " + std::to_string(v) + ": " : std::string();
}

void check_intrinsics(const Eigen::Matrix3d& K, const std::string& where) {
  if (!K.allFinite()) throw std::invalid_argument(where + "K has NaN or inf entries");
  if (K(1, 0) != 0.0 || K(2, 0) != 0.0 || K(2, 1) != 0.0 || std::abs(K(2, 2) - 1.0) > 1e-9)
    throw std::invalid_argument(where +
                                "K must be a pinhole matrix [[fx, s, cx], [0, fy, cy], [0, 0, 1]]");
  if (!(K(0, 0) > 0.0) || !(K(1, 1) > 0.0))
    throw std::invalid_argument(where + "K is singular: fx and fy must be positive");
}

Pose check_rigid(const Eigen::Matrix4d& T, const std::string& where) {
  if (!T.allFinite()) throw std::invalid_argument(where + "T_cur_from_frame has NaN or inf entries");
  if ((T.row(3) - Eigen::RowVector4d(0, 0, 0, 1)).cwiseAbs().maxCoeff() > 1e-9)
    throw std::invalid_argument(where + "T_cur_from_frame's last row must be [0, 0, 0, 1]");
  const Eigen::Matrix3d R = T.topLeftCorner<3, 3>();
  if ((R.transpose() * R - Eigen::Matrix3d::Identity()).cwiseAbs().maxCoeff() > 1e-4 ||
      R.determinant() < 0.0)
    throw std::invalid_argument(where + "T_cur_from_frame's rotation block is not a rotation");
  // Re-orthonormalise: a rotation read from float32 or a text file is only close to SO(3).
  Eigen::JacobiSVD<Eigen::Matrix3d> svd(R, Eigen::ComputeFullU | Eigen::ComputeFullV);
  Pose p;
  p.R = svd.matrixU() * svd.matrixV().transpose();
  p.t = T.topRightCorner<3, 1>();
  return p;
}

}  // namespace

Problem build_problem(const std::vector<ViewInput>& inputs, std::uint64_t seed,
                      bool name_frames) {
  Problem prob;
  prob.views.resize(inputs.size());
  // Pass 1: check cameras, keep finite rows, accumulate the centroid.
  Eigen::Vector3d sum = Eigen::Vector3d::Zero();
  for (size_t v = 0; v < inputs.size(); ++v) {
    const ViewInput& in = inputs[v];
    View& view = prob.views[v];
    const std::string where = view_name(v, name_frames);
    if (in.n < 0) throw std::invalid_argument(where + "negative number of points");
    check_intrinsics(in.K, where);
    view.K = in.K;
    view.fx = in.K(0, 0);
    view.fy = in.K(1, 1);
    view.skew = in.K(0, 1);
    view.cur_from_view = check_rigid(in.T_cur_from_view, where);
    view.view_from_cur.R = view.cur_from_view.R.transpose();
    view.view_from_cur.t = -view.cur_from_view.R.transpose() * view.cur_from_view.t;
    view.is_current = view.cur_from_view.R.isIdentity(0.0) && view.cur_from_view.t.isZero(0.0);
    view.input_rows = in.n;
    view.rows.reserve(in.n);
    for (int i = 0; i < in.n; ++i) {
      const double* p2 = in.points2d + 2 * i;
      const double* p3 = in.points3d + 3 * i;
      if (std::isfinite(p2[0]) && std::isfinite(p2[1]) && std::isfinite(p3[0]) &&
          std::isfinite(p3[1]) && std::isfinite(p3[2])) {
        view.rows.push_back(i);
        sum += Eigen::Vector3d(p3[0], p3[1], p3[2]);
      }
    }
    prob.num_dropped += in.n - view.size();
    prob.num_points += view.size();
  }
  if (prob.num_points > 0) prob.centroid = sum / prob.num_points;

  // Pass 2: shuffle, normalise, lay out.
  SplitMix64 rng(seed ^ 0x5EC0ACE5EC0ACEull);
  int offset = 0, block = 0;
  for (size_t v = 0; v < inputs.size(); ++v) {
    const ViewInput& in = inputs[v];
    View& view = prob.views[v];
    const int n = view.size();
    for (int i = n - 1; i > 0; --i) std::swap(view.rows[i], view.rows[rng.below(i + 1)]);
    view.offset = offset;
    view.first_block = block;
    view.num_blocks = (n + kScoreBlock - 1) / kScoreBlock;
    offset += n;
    block += view.num_blocks;

    const Eigen::Matrix3d Kinv = view.K.inverse();
    view.X.resize(n);
    view.x.resize(n);
    view.bearing.resize(n);
    for (auto* s : {&view.sx, &view.sy, &view.sz, &view.su, &view.sv}) s->resize(n);
    for (int i = 0; i < n; ++i) {
      const double* p2 = in.points2d + 2 * view.rows[i];
      const double* p3 = in.points3d + 3 * view.rows[i];
      view.X[i] = Eigen::Vector3d(p3[0], p3[1], p3[2]) - prob.centroid;
      const Eigen::Vector3d h = Kinv * Eigen::Vector3d(p2[0], p2[1], 1.0);
      view.x[i] = h.head<2>();
      view.bearing[i] = h.normalized();
      view.sx[i] = static_cast<float>(view.X[i].x());
      view.sy[i] = static_cast<float>(view.X[i].y());
      view.sz[i] = static_cast<float>(view.X[i].z());
      view.su[i] = static_cast<float>(p2[0]);
      view.sv[i] = static_cast<float>(p2[1]);
    }
  }
  prob.num_blocks = block;
  return prob;
}

std::string check_solvable(const Problem& prob) {
  if (prob.num_points < 4) {
    std::string why = "too few points: " + std::to_string(prob.num_points) +
                      " finite correspondences, need at least 4";
    if (prob.num_dropped > 0)
      why += " (" + std::to_string(prob.num_dropped) + " rows with NaN/inf dropped)";
    return why;
  }
  bool samplable = false;
  for (const View& v : prob.views) samplable = samplable || v.size() >= 3;
  if (!samplable) return "too few points: no frame has 3 finite correspondences";
  // Collinear or coincident world points leave the pose underdetermined.
  Eigen::Matrix3d scatter = Eigen::Matrix3d::Zero();
  for (const View& v : prob.views)
    for (const Eigen::Vector3d& X : v.X) scatter += X * X.transpose();
  Eigen::SelfAdjointEigenSolver<Eigen::Matrix3d> eig(scatter, Eigen::EigenvaluesOnly);
  const Eigen::Vector3d ev = eig.eigenvalues();  // ascending
  if (!(ev[2] > 0.0) || ev[1] <= 1e-12 * ev[2])
    return "degenerate: the 3D points are coincident or collinear";
  return std::string();
}

}  // namespace seqace
