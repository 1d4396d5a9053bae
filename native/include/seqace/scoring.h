// Scoring a pose hypothesis against all correspondences: the hot path of RANSAC.
//
// Errors are reprojection distances in pixels. A float structure-of-arrays loop over blocks of
// kScoreBlock points computes squared errors and counts inliers; after each block an early
// bail-out test (Capel, BMVC 2005, in the form "fewer inliers so far than the best hypothesis
// had at the same point, by a 3-sigma margin") drops hypotheses that cannot win. Most RANSAC
// hypotheses are wrong, so most are rejected after one or two blocks instead of N points.
#pragma once

#include <limits>
#include <vector>

#include "seqace/problem.h"
#include "seqace/types.h"

namespace seqace {

struct ScoreParams {
  Scoring mode = Scoring::kSoft;
  double tau = 10.0;          // inlier threshold, px
  double clamp = 100.0;       // DSAC* error clamp, px
  bool bailout = true;
  static ScoreParams from(const RansacOptions& opt);
};

struct Score {
  double value = -std::numeric_limits<double>::infinity();
  double tiebreak = -std::numeric_limits<double>::infinity();  // hard scoring: -sum inlier e^2
  int inliers = 0;                                              // e < tau
  bool better_than(const Score& o) const {
    return value > o.value || (value == o.value && tiebreak > o.tiebreak);
  }
};

// The best hypothesis so far as the bail-out test sees it: its inlier count after each block.
struct BestRecord {
  bool valid = false;
  Score score;
  std::vector<int> cumulative_inliers;  // one entry per block
};

// Per-thread scratch; not thread-safe, create one per worker.
class Scorer {
 public:
  explicit Scorer(const Problem& problem);

  // Scores `pose` (world -> current camera). Returns false without a score if the bail-out
  // test proved it would not beat `best` (pass nullptr to force a full pass).
  bool score(const Pose& pose, const ScoreParams& params, const BestRecord* best, Score* out);

  // After a full pass: the inlier count after each block, for BestRecord.
  const std::vector<int>& cumulative_inliers() const { return cumulative_; }

  // After a full pass: indices (per view) of the points with error below threshold_px, at most
  // max_points of them (the first in the shuffled order: a random subset). Returns the count.
  int inliers(double threshold_px, int max_points, std::vector<std::vector<int>>* out) const;

 private:
  const Problem& problem_;
  std::vector<float> err2_;      // squared errors of the current hypothesis, all points
  std::vector<int> cumulative_;  // inliers after each block
};

// DSAC* soft inlier weight 1 - sigmoid(beta (e - tau)), beta = 5 / tau, of e^2 / tau^2.
double soft_inlier_weight(double e2_over_tau2);

}  // namespace seqace
