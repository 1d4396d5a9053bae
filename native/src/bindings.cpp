// Thin pybind11 layer: numpy <-> Eigen, shape checks with messages that name the argument, and
// the GIL released while the estimator runs (the ROS node calls it from a worker thread).
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "seqace/depth_aware.h"
#include "seqace/p3p.h"
#include "seqace/ransac.h"
#include "seqace/triangulation.h"
#include "seqace/types.h"

namespace py = pybind11;
using namespace seqace;

namespace {

// float32 input is converted (forcecast); anything else numeric too, so the check is on shape.
using DoubleArray = py::array_t<double, py::array::c_style | py::array::forcecast>;

// Messages are built with std::to_string / snprintf, not iostreams. A workaround: on one CUDA
// image (numpy 2.5.2, libstdc++ 6.0.33) any ostream number insertion in this module segfaulted
// once numpy was imported (cause not established; it looked like a libstdc++ mismatch).
std::string shape_of(const DoubleArray& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

void check_columns(const DoubleArray& a, int cols, const std::string& name) {
  if (a.ndim() != 2 || a.shape(1) != cols)
    throw std::invalid_argument(name + " must have shape (N, " + std::to_string(cols) +
                                "), got " + shape_of(a));
}

template <int R, int C>
Eigen::Matrix<double, R, C> to_matrix(const DoubleArray& a, const std::string& name) {
  if (a.ndim() != 2 || a.shape(0) != R || a.shape(1) != C)
    throw std::invalid_argument(name + " must have shape (" + std::to_string(R) + ", " +
                                std::to_string(C) + "), got " + shape_of(a));
  Eigen::Matrix<double, R, C> m;
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) m(r, c) = a.at(r, c);
  return m;
}

ViewInput to_view(const DoubleArray& p2, const DoubleArray& p3, const DoubleArray& K,
                  const std::string& where) {
  check_columns(p2, 2, where + "points2d");
  check_columns(p3, 3, where + "points3d");
  if (p2.shape(0) != p3.shape(0))
    throw std::invalid_argument(where + "points2d and points3d must have the same number of rows, got " +
                                std::to_string(p2.shape(0)) + " and " + std::to_string(p3.shape(0)));
  if (p2.shape(0) > (1 << 30)) throw std::invalid_argument(where + "too many points");
  ViewInput v;
  v.points2d = p2.data();
  v.points3d = p3.data();
  v.n = static_cast<int>(p2.shape(0));
  v.K = to_matrix<3, 3>(K, where + "K");
  return v;
}

const char* scoring_name(Scoring s) { return s == Scoring::kSoft ? "soft" : "hard"; }
Scoring parse_scoring(const std::string& s) {
  if (s == "soft") return Scoring::kSoft;
  if (s == "hard") return Scoring::kHard;
  throw std::invalid_argument("RansacOptions.scoring must be 'soft' or 'hard', got '" + s + "'");
}
const char* loss_name(RobustLoss l) {
  return l == RobustLoss::kCauchy ? "cauchy" : l == RobustLoss::kHuber ? "huber" : "trivial";
}
RobustLoss parse_loss(const std::string& s) {
  if (s == "cauchy") return RobustLoss::kCauchy;
  if (s == "huber") return RobustLoss::kHuber;
  if (s == "trivial") return RobustLoss::kTrivial;
  throw std::invalid_argument("RansacOptions.loss must be 'cauchy', 'huber' or 'trivial', got '" +
                              s + "'");
}

py::array_t<bool> to_mask(const std::vector<std::uint8_t>& m) {
  py::array_t<bool> out(static_cast<py::ssize_t>(m.size()));
  bool* p = out.mutable_data();
  for (size_t i = 0; i < m.size(); ++i) p[i] = m[i] != 0;
  return out;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "seqace native RANSAC / PnP (P3P Lambda Twist, soft/hard scoring, LM refinement)";

  py::class_<RansacOptions>(m, "RansacOptions")
      .def(py::init<>())
      .def_readwrite("inlier_threshold_px", &RansacOptions::inlier_threshold_px)
      .def_readwrite("refine_threshold_px", &RansacOptions::refine_threshold_px)
      .def_property(
          "scoring", [](const RansacOptions& o) { return std::string(scoring_name(o.scoring)); },
          [](RansacOptions& o, const std::string& s) { o.scoring = parse_scoring(s); })
      .def_readwrite("error_clamp_px", &RansacOptions::error_clamp_px)
      .def_readwrite("confidence", &RansacOptions::confidence)
      .def_readwrite("min_iterations", &RansacOptions::min_iterations)
      .def_readwrite("max_iterations", &RansacOptions::max_iterations)
      .def_readwrite("time_budget_ms", &RansacOptions::time_budget_ms)
      .def_readwrite("num_threads", &RansacOptions::num_threads)
      .def_readwrite("seed", &RansacOptions::seed)
      .def_readwrite("min_inliers", &RansacOptions::min_inliers)
      .def_readwrite("local_optimization", &RansacOptions::local_optimization)
      .def_readwrite("early_bailout", &RansacOptions::early_bailout)
      .def_readwrite("max_refine_rounds", &RansacOptions::max_refine_rounds)
      .def_readwrite("refine_iterations", &RansacOptions::refine_iterations)
      .def_property(
          "loss", [](const RansacOptions& o) { return std::string(loss_name(o.loss)); },
          [](RansacOptions& o, const std::string& s) { o.loss = parse_loss(s); })
      .def_readwrite("loss_scale_px", &RansacOptions::loss_scale_px)
      .def("validate", &validate_options, "Raise ValueError naming the first bad field")
      .def("__repr__", [](const RansacOptions& o) {
        return "RansacOptions(inlier_threshold_px=" + num(o.inlier_threshold_px) +
               ", refine_threshold_px=" + num(o.refine_threshold_px) + ", scoring='" +
               scoring_name(o.scoring) + "', confidence=" + num(o.confidence) +
               ", min_iterations=" + std::to_string(o.min_iterations) +
               ", max_iterations=" + std::to_string(o.max_iterations) +
               ", time_budget_ms=" + num(o.time_budget_ms) +
               ", num_threads=" + std::to_string(o.num_threads) + ", seed=" + std::to_string(o.seed) +
               ", min_inliers=" + std::to_string(o.min_inliers) + ", ...)";
      });

  py::class_<RansacResult>(m, "RansacResult")
      .def_readonly("success", &RansacResult::success)
      .def_readonly("message", &RansacResult::message)
      .def_property_readonly("T_c2w", [](const RansacResult& r) { return Eigen::Matrix4d(r.T_c2w); })
      .def_property_readonly("covariance",
                             [](const RansacResult& r) { return Matrix6d(r.covariance); })
      .def_property_readonly("inliers_per_frame",
                             [](const RansacResult& r) {
                               py::list out;
                               for (const auto& m : r.inliers) out.append(to_mask(m));
                               return out;
                             })
      .def_readonly("num_inliers", &RansacResult::num_inliers)
      .def_readonly("num_valid", &RansacResult::num_valid)
      .def_readonly("score", &RansacResult::score)
      .def_readonly("reprojection_error_px", &RansacResult::reprojection_error_px)
      .def_readonly("iterations", &RansacResult::iterations)
      .def_readonly("refine_rounds", &RansacResult::refine_rounds)
      .def_readonly("time_ms", &RansacResult::time_ms);

  m.def(
      "estimate_pose",
      [](const DoubleArray& points2d, const DoubleArray& points3d, const DoubleArray& K,
         const RansacOptions& options) {
        ViewInput v = to_view(points2d, points3d, K, "");
        py::gil_scoped_release release;
        return estimate_pose(v.points2d, v.points3d, v.n, v.K, options);
      },
      py::arg("points2d"), py::arg("points3d"), py::arg("K"),
      py::arg_v("options", RansacOptions(), "RansacOptions()"),
      "Camera pose from 2D-3D correspondences (pixels, world points, 3x3 intrinsics).");

  m.def(
      "estimate_pose_multi",
      [](const py::sequence& frames, const RansacOptions& options) {
        // Keep the converted arrays alive while the estimator reads them.
        std::vector<DoubleArray> keep;
        std::vector<ViewInput> views;
        for (size_t i = 0; i < frames.size(); ++i) {
          const std::string where = "frame " + std::to_string(i) + ": ";
          py::sequence f = frames[i].cast<py::sequence>();
          if (f.size() != 4)
            throw std::invalid_argument(where +
                                        "expected (points2d, points3d, K, T_cur_from_frame)");
          DoubleArray p2 = DoubleArray::ensure(f[0]), p3 = DoubleArray::ensure(f[1]);
          DoubleArray K = DoubleArray::ensure(f[2]), T = DoubleArray::ensure(f[3]);
          if (!p2 || !p3 || !K || !T) throw std::invalid_argument(where + "entries must be numeric arrays");
          ViewInput v = to_view(p2, p3, K, where);
          v.T_cur_from_view = to_matrix<4, 4>(T, where + "T_cur_from_frame");
          views.push_back(v);
          keep.insert(keep.end(), {p2, p3, K, T});
        }
        py::gil_scoped_release release;
        return estimate_pose_multi(views, options);
      },
      py::arg("frames"), py::arg_v("options", RansacOptions(), "RansacOptions()"),
      "Current camera pose from several frames' correspondences, each frame given as "
      "(points2d, points3d, K, T_cur_from_frame).");

  py::class_<TriangulationOptions>(m, "TriangulationOptions")
      .def(py::init<>())
      .def_readwrite("max_reproj_px", &TriangulationOptions::max_reproj_px)
      .def_readwrite("min_angle_deg", &TriangulationOptions::min_angle_deg)
      .def_readwrite("min_views", &TriangulationOptions::min_views)
      .def_readwrite("min_depth_m", &TriangulationOptions::min_depth_m)
      .def_readwrite("iterations", &TriangulationOptions::iterations);

  m.def(
      "triangulate_tracks",
      [](const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& obs_track,
         const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& obs_image,
         const DoubleArray& obs_xy, const DoubleArray& w2c, const DoubleArray& K, int64_t num_tracks,
         const TriangulationOptions& options) {
        const int64_t m = obs_track.size();
        if (obs_track.ndim() != 1 || obs_image.ndim() != 1 || obs_image.size() != m)
          throw std::invalid_argument("obs_track and obs_image must be 1-D of the same length");
        check_columns(obs_xy, 2, "obs_xy");
        if (obs_xy.shape(0) != m) throw std::invalid_argument("obs_xy must have one row per observation");
        if (w2c.ndim() != 3 || w2c.shape(1) != 3 || w2c.shape(2) != 4)
          throw std::invalid_argument("w2c must have shape (I, 3, 4), got " + shape_of(w2c));
        if (K.ndim() != 3 || K.shape(1) != 3 || K.shape(2) != 3 || K.shape(0) != w2c.shape(0))
          throw std::invalid_argument("K must have shape (I, 3, 3) with I as in w2c, got " + shape_of(K));
        if (num_tracks < 0) throw std::invalid_argument("num_tracks must be >= 0");
        TriangulationOutput out;
        {
          py::gil_scoped_release release;
          out = triangulate_tracks(obs_track.data(), obs_image.data(), obs_xy.data(), m, w2c.data(),
                                   K.data(), w2c.shape(0), num_tracks, options);
        }
        py::array_t<double> points({num_tracks, int64_t(3)});
        std::copy(out.points.begin(), out.points.end(), points.mutable_data());
        py::array_t<bool> valid(num_tracks), inlier(m);
        std::copy(out.valid.begin(), out.valid.end(), valid.mutable_data());
        std::copy(out.obs_inlier.begin(), out.obs_inlier.end(), inlier.mutable_data());
        py::array_t<double> error(m);
        std::copy(out.obs_error.begin(), out.obs_error.end(), error.mutable_data());
        return py::make_tuple(points, valid, inlier, error);
      },
      py::arg("obs_track"), py::arg("obs_image"), py::arg("obs_xy"), py::arg("w2c"), py::arg("K"),
      py::arg("num_tracks"), py::arg_v("options", TriangulationOptions(), "TriangulationOptions()"),
      "Points (T, 3), valid (T,), observation inliers (M,) and reprojection errors (M,) of tracks "
      "triangulated from known poses (w2c: world-to-camera [R | t] per image).");

  m.def(
      "refine_pose_depth_aware",
      [](const DoubleArray& pose_c2w, const DoubleArray& points2d, const DoubleArray& points3d,
         const DoubleArray& origins, const DoubleArray& K, double along_weight, double loss_scale_px,
         int iterations) {
        const Eigen::Matrix4d T = to_matrix<4, 4>(pose_c2w, "pose_c2w");
        const Eigen::Matrix3d Km = to_matrix<3, 3>(K, "K");
        check_columns(points2d, 2, "points2d");
        check_columns(points3d, 3, "points3d");
        check_columns(origins, 3, "origins");
        const int64_t n = points2d.shape(0);
        if (points3d.shape(0) != n || origins.shape(0) != n)
          throw std::invalid_argument("points2d, points3d and origins must have the same number of rows");
        if (!(along_weight > 0.0) || !(loss_scale_px > 0.0) || iterations < 0)
          throw std::invalid_argument("along_weight and loss_scale_px must be > 0, iterations >= 0");
        Eigen::Matrix3d R = T.topLeftCorner<3, 3>().transpose();  // world -> camera
        Eigen::Vector3d t = -R * T.topRightCorner<3, 1>();
        DepthAwareOptions options{along_weight, loss_scale_px, iterations};
        {
          py::gil_scoped_release release;
          refine_depth_aware(points2d.data(), points3d.data(), origins.data(), n, Km(0, 0), Km(1, 1),
                             Km(0, 2), Km(1, 2), options, &R, &t);
        }
        Eigen::Matrix4d out = Eigen::Matrix4d::Identity();
        out.topLeftCorner<3, 3>() = R.transpose();
        out.topRightCorner<3, 1>() = -R.transpose() * t;
        return out;
      },
      py::arg("pose_c2w"), py::arg("points2d"), py::arg("points3d"), py::arg("origins"), py::arg("K"),
      py::arg("along_weight"), py::arg("loss_scale_px") = 1.0, py::arg("iterations") = 3,
      "Camera-to-world pose refined with the error along each point's keyframe ray weighted by "
      "along_weight (seqace_ros/refinement/depth_aware_pose.py).");

  m.def(
      "p3p",
      [](const DoubleArray& bearings, const DoubleArray& points) {
        const Eigen::Matrix3d B = to_matrix<3, 3>(bearings, "bearings");
        const Eigen::Matrix3d P = to_matrix<3, 3>(points, "points");
        Eigen::Vector3d y[3], X[3];
        for (int i = 0; i < 3; ++i) {
          y[i] = B.row(i).transpose().normalized();
          X[i] = P.row(i).transpose();
        }
        Pose out[4];
        const int n = p3p_lambda_twist(y, X, out);
        py::list sols;
        for (int i = 0; i < n; ++i) sols.append(py::make_tuple(out[i].R, out[i].t));
        return sols;
      },
      py::arg("bearings"), py::arg("points"),
      "Lambda Twist P3P: rows are bearing vectors and world points; returns [(R, t)] with "
      "x_cam = R x_world + t.");
}
