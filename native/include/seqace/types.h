// Plain data types shared by the solvers, the robust estimator and the bindings.
//
// Conventions: a Pose maps world (map) coordinates into the camera's OpenCV optical frame,
// x_cam = R * x_world + t, because that is what projection needs; results are converted to
// camera-to-world only at the API boundary.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <string>
#include <vector>

namespace seqace {

using Matrix6d = Eigen::Matrix<double, 6, 6>;
using Vector6d = Eigen::Matrix<double, 6, 1>;

struct Pose {
  Eigen::Matrix3d R = Eigen::Matrix3d::Identity();
  Eigen::Vector3d t = Eigen::Vector3d::Zero();
};

enum class Scoring {
  kSoft,  // DSAC*: sum of 1 - sigmoid(beta * (e - tau)), smooth in the threshold
  kHard,  // plain inlier count e < tau (ties broken by the inliers' squared error, like MSAC)
};

enum class RobustLoss { kTrivial, kHuber, kCauchy };

// Every knob of estimate_pose in one struct, bound field by field to Python.
// Defaults are for ~1000 scene-coordinate correspondences of a 640x480 image. Measured on real
// SCR output (a redkitchen map, 2 x 100 test frames, median GT reprojection error 10 px): the
// refine threshold SeqACE uses, 4 px, keeps only ~16 % of the correct points and gives
// 10cm/5deg recall 0.88-0.96 and 2cm/2deg 0.21-0.26; 10 px gives 0.97 and 0.33 (PoseLib at its
// default 12 px: 0.96-0.97, 0.31-0.35). On synthetic 1 px noise 10 px costs nothing.
struct RansacOptions {
  double inlier_threshold_px = 10.0;  // tau of the soft score and of hard counting
  double refine_threshold_px = 10.0;  // inliers re-collected at this error during refinement
  Scoring scoring = Scoring::kSoft;
  double error_clamp_px = 100.0;      // DSAC* clamps errors before the sigmoid
  double confidence = 0.9999;         // adaptive stopping: P(an all-inlier sample was drawn)
  int min_iterations = 20;
  int max_iterations = 10000;
  double time_budget_ms = 100.0;      // <= 0 disables the budget (max_iterations still caps)
  int num_threads = 2;                // hypotheses are scored in parallel; 1 runs inline
  std::uint64_t seed = 0;
  int min_inliers = 20;               // fewer final inliers -> success = false
  bool local_optimization = true;     // refine each new best hypothesis on its inliers
  bool early_bailout = true;          // stop scoring a hypothesis that cannot beat the best
  int max_refine_rounds = 10;         // re-collect inliers and re-fit while their count grows
  int refine_iterations = 10;         // Levenberg-Marquardt iterations per refinement round
  RobustLoss loss = RobustLoss::kHuber;  // as accurate as Cauchy here, and cheaper
  double loss_scale_px = 2.0;         // scale of the robust loss in the final refinement
};

// Correspondences of one camera; a single-frame problem has one view with T_cur_from_view = I.
struct ViewInput {
  const double* points2d = nullptr;  // row-major (n, 2), pixels
  const double* points3d = nullptr;  // row-major (n, 3), world frame
  int n = 0;
  Eigen::Matrix3d K = Eigen::Matrix3d::Identity();
  Eigen::Matrix4d T_cur_from_view = Eigen::Matrix4d::Identity();  // view camera -> current camera
};

struct RansacResult {
  bool success = false;
  std::string message;
  // The best pose found, also when success is false (diagnostics only); identity if none.
  Pose pose_w2c;  // world -> current camera
  Eigen::Matrix4d T_c2w = Eigen::Matrix4d::Identity();
  std::vector<std::vector<std::uint8_t>> inliers;  // per view, in the input row order
  int num_inliers = 0;
  int num_valid = 0;       // finite correspondences that took part
  double score = 0.0;      // RANSAC score of the final pose at inlier_threshold_px
  // ROS order (x, y, z, rot_x, rot_y, rot_z): camera centre in the world frame and a small
  // rotation about the world axes, applied on the left of R_c2w.
  Matrix6d covariance = Matrix6d::Identity() * 1e6;
  double reprojection_error_px = 0.0;  // median over the final inliers
  int iterations = 0;
  int refine_rounds = 0;
  double time_ms = 0.0;
};

}  // namespace seqace
