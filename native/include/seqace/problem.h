// The correspondences of one estimation call, checked and laid out for the hot loops.
//
// Points are kept in a seeded random order: RANSAC's early bail-out judges a hypothesis on a
// prefix of the points, which is only a fair sample if the order carries no structure (SCR
// points come sorted by image row). World points are centred on their mean so that float
// scoring keeps its precision in maps far from the origin.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <string>
#include <vector>

#include "seqace/types.h"

namespace seqace {

// Points are scored in blocks of this many; the bail-out test runs after each block.
constexpr int kScoreBlock = 64;

struct View {
  Eigen::Matrix3d K;
  double fx = 1, fy = 1, skew = 0;  // A = [[fx, skew], [0, fy]] maps normalised to pixel offsets
  Pose view_from_cur;               // current camera -> this view's camera
  Pose cur_from_view;
  bool is_current = true;           // view_from_cur is the identity (single-frame case)
  int input_rows = 0;               // rows the caller passed, finite or not
  int offset = 0;                   // global index of this view's first point
  int first_block = 0, num_blocks = 0;

  std::vector<int> rows;                  // input row of each point
  std::vector<Eigen::Vector3d> X;         // world point minus Problem::centroid
  std::vector<Eigen::Vector2d> x;         // normalised image point K^-1 (u, v, 1)
  std::vector<Eigen::Vector3d> bearing;   // unit ray of x, for P3P
  // Structure-of-arrays float copies for scoring (SIMD-friendly): centred world point, pixel.
  std::vector<float> sx, sy, sz, su, sv;

  int size() const { return static_cast<int>(rows.size()); }
};

struct Problem {
  std::vector<View> views;
  Eigen::Vector3d centroid = Eigen::Vector3d::Zero();
  int num_points = 0;  // finite correspondences over all views
  int num_blocks = 0;
  int num_dropped = 0;  // rows with NaN or inf
};

// Checks K and T_cur_from_view (throws std::invalid_argument naming the problem), drops
// non-finite rows and shuffles the rest with `seed`. name_frames prefixes messages with
// "frame i: " (the multi-frame API).
Problem build_problem(const std::vector<ViewInput>& inputs, std::uint64_t seed,
                      bool name_frames = false);

// Empty if the problem can be solved; otherwise why not ("too few points: ...", "degenerate: ...").
std::string check_solvable(const Problem& problem);

// Pose of the current camera from a pose of view v (both world -> camera).
inline Pose compose(const Pose& cur_from_view, const Pose& view_from_world) {
  Pose out;
  out.R = cur_from_view.R * view_from_world.R;
  out.t = cur_from_view.R * view_from_world.t + cur_from_view.t;
  return out;
}

}  // namespace seqace
