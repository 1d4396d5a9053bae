// Multi-view triangulation of feature tracks from known camera poses (the refinement keyframes
// and the structure-based peer). The algorithm is documented in
// seqace_ros/refinement/triangulation.py, which calls this; tracks are independent, so each is
// solved on its own with fixed-size Eigen types instead of numpy's batched small matrices.
#pragma once

#include <Eigen/Core>

#include <cstdint>
#include <vector>

namespace seqace {

struct TriangulationOptions {
  double max_reproj_px = 2.0;
  double min_angle_deg = 0.5;
  int min_views = 2;
  double min_depth_m = 0.05;
  int iterations = 6;
};

struct TriangulationOutput {
  std::vector<double> points;      // (T, 3), NaN where a track failed
  std::vector<uint8_t> valid;      // (T,)
  std::vector<uint8_t> obs_inlier; // (M,)
  std::vector<double> obs_error;   // (M,), inf where the track failed
};

// obs_track / obs_image: (M,) ids; obs_xy: (M, 2) pixels; w2c: (I, 12) row-major [R | t]
// world-to-camera; K: (I, 9) row-major intrinsics.
TriangulationOutput triangulate_tracks(const int64_t* obs_track, const int64_t* obs_image,
                                       const double* obs_xy, int64_t num_obs, const double* w2c,
                                       const double* K, int64_t num_images, int64_t num_tracks,
                                       const TriangulationOptions& options);

}  // namespace seqace
