#include "seqace/ransac.h"

#include <Eigen/Dense>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>

#include "seqace/covariance.h"
#include "seqace/p3p.h"
#include "seqace/problem.h"
#include "seqace/random.h"
#include "seqace/refine.h"
#include "seqace/reprojection.h"
#include "seqace/rounds.h"
#include "seqace/scoring.h"

namespace seqace {
namespace {

using Clock = std::chrono::steady_clock;

// Hypotheses per round: the best-so-far (and so the bail-out threshold and the adaptive
// iteration count) is updated between rounds. Small enough not to overshoot the stopping
// criterion much, large enough that the barrier costs little.
constexpr int kRoundSize = 64;
// Helpers are called in only when this many more hypotheses are needed: waking a pool thread
// takes tens of microseconds, about the time a few rounds of cheap (bailed-out) hypotheses take.
constexpr int kHelpersAfter = 4 * kRoundSize;
// Local optimisation fits a random subset of at most this many inliers: as accurate for
// ranking hypotheses as all of them, and a fixed cost whatever N is.
constexpr int kLoMaxPoints = 256;
constexpr int kLoRounds = 2;
constexpr int kLoIterations = 5;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Iterations after which an all-inlier minimal sample has been drawn with `confidence`.
double required_iterations(double inlier_ratio, double confidence) {
  if (!(inlier_ratio > 0.0)) return std::numeric_limits<double>::infinity();
  const double p_good = inlier_ratio * inlier_ratio * inlier_ratio;
  if (p_good >= 1.0 - 1e-12) return 1.0;
  return std::ceil(std::log(1.0 - confidence) / std::log1p(-p_good));
}

// Minimal samples: three distinct points of one view, the view chosen in proportion to its size.
class Sampler {
 public:
  explicit Sampler(const Problem& prob) {
    for (size_t v = 0; v < prob.views.size(); ++v) {
      const int n = prob.views[v].size();
      if (n < 3) continue;
      views_.push_back(static_cast<int>(v));
      sizes_.push_back(n);
      total_ += n;
    }
  }

  void draw(std::uint64_t seed, std::int64_t h, int* view, int idx[3]) const {
    SplitMix64 rng = SplitMix64::for_counter(seed, static_cast<std::uint64_t>(h));
    int k = static_cast<int>(rng.below(static_cast<std::uint32_t>(total_)));
    size_t vi = 0;
    while (k >= sizes_[vi]) k -= sizes_[vi++];
    *view = views_[vi];
    const std::uint32_t n = static_cast<std::uint32_t>(sizes_[vi]);
    idx[0] = k;
    do idx[1] = static_cast<int>(rng.below(n));
    while (idx[1] == idx[0]);
    do idx[2] = static_cast<int>(rng.below(n));
    while (idx[2] == idx[0] || idx[2] == idx[1]);
  }

 private:
  std::vector<int> views_, sizes_;
  int total_ = 0;
};

struct Candidate {
  std::int64_t h;
  int solution;
  Pose pose;
  Score score;
};

// The hypothesis generator and its scratch space, shared by the calling thread and helpers.
struct Search {
  Search(Problem problem, const RansacOptions& options, Clock::time_point deadline_)
      : prob(std::move(problem)),
        opt(options),
        params(ScoreParams::from(options)),
        sampler(prob),
        deadline(deadline_),
        scorers(options.num_threads, Scorer(prob)) {}

  // Hypothesis h: P3P on sample h, each solution scored against `best` (bail-out); those that
  // beat it are appended to *out. False once the time budget is spent.
  bool hypothesis(int slot, std::int64_t h, const BestRecord& best, std::vector<Candidate>* out) {
    if (Clock::now() >= deadline) return false;
    int v, idx[3];
    sampler.draw(opt.seed, h, &v, idx);
    const View& view = prob.views[v];
    const Eigen::Vector3d y[3] = {view.bearing[idx[0]], view.bearing[idx[1]],
                                  view.bearing[idx[2]]};
    const Eigen::Vector3d X[3] = {view.X[idx[0]], view.X[idx[1]], view.X[idx[2]]};
    Pose solutions[4];
    const int num_solutions = p3p_lambda_twist(y, X, solutions);
    for (int k = 0; k < num_solutions; ++k) {
      const Pose pose = view.is_current ? solutions[k] : compose(view.cur_from_view, solutions[k]);
      Score s;
      if (scorers[slot].score(pose, params, &best, &s) &&
          (!best.valid || s.better_than(best.score)))
        out->push_back({h, k, pose, s});
    }
    return true;
  }

  const Problem prob;
  const RansacOptions opt;
  const ScoreParams params;
  const Sampler sampler;
  const Clock::time_point deadline;
  std::vector<Scorer> scorers;  // one per slot: 0 = calling thread, 1.. = helpers
};

RansacResult solve(const std::vector<ViewInput>& inputs, const RansacOptions& opt,
                   bool name_frames);

}  // namespace

void validate_options(const RansacOptions& o) {
  auto fail = [](const std::string& m) { throw std::invalid_argument("RansacOptions." + m); };
  if (!(o.inlier_threshold_px > 0.0) || !std::isfinite(o.inlier_threshold_px))
    fail("inlier_threshold_px must be a positive number of pixels");
  if (!(o.refine_threshold_px > 0.0) || !std::isfinite(o.refine_threshold_px))
    fail("refine_threshold_px must be a positive number of pixels");
  if (!(o.error_clamp_px > 0.0)) fail("error_clamp_px must be positive");
  if (!(o.confidence > 0.0 && o.confidence < 1.0)) fail("confidence must be in (0, 1)");
  if (o.min_iterations < 0) fail("min_iterations must be >= 0");
  if (o.max_iterations < 1) fail("max_iterations must be >= 1");
  if (o.min_iterations > o.max_iterations) fail("min_iterations must be <= max_iterations");
  if (std::isnan(o.time_budget_ms)) fail("time_budget_ms must be a number (<= 0 disables it)");
  if (o.num_threads < 1 || o.num_threads > 256) fail("num_threads must be in [1, 256]");
  if (o.min_inliers < 0) fail("min_inliers must be >= 0");
  if (o.max_refine_rounds < 0) fail("max_refine_rounds must be >= 0");
  if (o.refine_iterations < 0) fail("refine_iterations must be >= 0");
  if (!(o.loss_scale_px > 0.0) || !std::isfinite(o.loss_scale_px))
    fail("loss_scale_px must be a positive number of pixels");
}

RansacResult estimate_pose(const double* points2d, const double* points3d, int n,
                           const Eigen::Matrix3d& K, const RansacOptions& options) {
  ViewInput view;
  view.points2d = points2d;
  view.points3d = points3d;
  view.n = n;
  view.K = K;
  return solve({view}, options, /*name_frames=*/false);
}

RansacResult estimate_pose_multi(const std::vector<ViewInput>& views, const RansacOptions& options) {
  return solve(views, options, /*name_frames=*/true);
}

namespace {

// Local optimisation of a new best hypothesis (LO-RANSAC): a few robust refinements on its
// inliers, kept while they improve the score.
void local_optimize(const Problem& prob, Scorer& scorer, const ScoreParams& params,
                    const RansacOptions& opt, Pose* pose, Score* score) {
  RefineOptions lo;
  lo.max_iterations = kLoIterations;
  lo.loss = RobustLoss::kHuber;
  lo.loss_scale_px = 0.5 * opt.inlier_threshold_px;  // inliers reach tau: keep them weighty
  PointSet subset;
  for (int r = 0; r < kLoRounds; ++r) {
    Score s;
    scorer.score(*pose, params, nullptr, &s);
    if (scorer.inliers(opt.inlier_threshold_px, kLoMaxPoints, &subset) < 6) return;
    Pose trial = *pose;
    refine_pose(prob, subset, lo, &trial);
    if (!scorer.score(trial, params, nullptr, &s) || !s.better_than(*score)) return;
    *pose = trial;
    *score = s;
  }
}

struct LoopOutcome {
  BestRecord best;
  Pose best_pose;
  std::int64_t done = 0;
  bool timed_out = false;
};

// The hypothesis loop: rounds of P3P hypotheses (on helper threads once the problem proves
// hard), merged in hypothesis order, adaptive stopping, the time budget.
LoopOutcome hypothesis_loop(const std::shared_ptr<Search>& search, const RansacOptions& opt) {
  const Problem& prob = search->prob;
  const ScoreParams& params = search->params;
  Scorer& main_scorer = search->scorers[0];  // slot 0 is this thread
  auto rounds = std::make_shared<Rounds<BestRecord, Candidate>>(
      [search](int slot, std::int64_t h, const BestRecord& best, std::vector<Candidate>* out) {
        return search->hypothesis(slot, h, best, out);
      });
  LoopOutcome out;
  double dynamic_iterations = std::numeric_limits<double>::infinity();
  for (;;) {
    const double wanted = std::max<double>(opt.min_iterations, dynamic_iterations);
    const std::int64_t target =
        static_cast<std::int64_t>(std::min<double>(opt.max_iterations, wanted));
    if (out.done >= target) break;
    if (Clock::now() >= search->deadline) {
      out.timed_out = true;
      break;
    }
    // Helpers only pay off once it is clear that more than a round or two is needed: an easy
    // problem is solved by the first round before a helper thread would even have woken up.
    if (rounds->num_helpers() == 0 && opt.num_threads > 1 && out.done > 0 &&
        target - out.done > kHelpersAfter)
      rounds->add_helpers(opt.num_threads - 1);
    // Before any hypothesis has been found the bail-out test is off and every hypothesis is
    // scored in full: keep that first round short.
    const std::int64_t round_size =
        out.best.valid ? kRoundSize : std::clamp<std::int64_t>(opt.min_iterations, 4, kRoundSize);
    auto outcome = rounds->run(out.done, out.done + std::min<std::int64_t>(target - out.done, round_size),
                               std::make_shared<const BestRecord>(out.best));
    out.done += outcome.completed;
    out.timed_out = out.timed_out || outcome.closed_early;

    // Merge in hypothesis order, so that the outcome does not depend on who scored what.
    std::sort(outcome.results.begin(), outcome.results.end(),
              [](const Candidate& a, const Candidate& b) {
                return a.h != b.h ? a.h < b.h : a.solution < b.solution;
              });
    for (const Candidate& c : outcome.results) {
      if (out.best.valid && !c.score.better_than(out.best.score)) continue;
      Pose pose = c.pose;
      Score score = c.score;
      if (opt.local_optimization) local_optimize(prob, main_scorer, params, opt, &pose, &score);
      main_scorer.score(pose, params, nullptr, &score);  // fills the per-block counts
      out.best.valid = true;
      out.best.score = score;
      out.best.cumulative_inliers = main_scorer.cumulative_inliers();
      out.best_pose = pose;
    }
    if (out.best.valid)
      dynamic_iterations = required_iterations(
          static_cast<double>(out.best.score.inliers) / prob.num_points, opt.confidence);
    if (out.timed_out) break;
  }
  rounds->finish();
  return out;
}

// Final refinement: fit the inliers, re-collect them, repeat while they grow. Returns the number
// of inliers of the refined pose (collected into *inliers).
int final_refinement(const Problem& prob, const RansacOptions& opt, Pose* pose, PointSet* inliers,
                     int* rounds) {
  RefineOptions refine;
  refine.max_iterations = opt.refine_iterations;
  refine.loss = opt.loss;
  refine.loss_scale_px = opt.loss_scale_px;
  int previous = -1;
  for (int r = 0; r < opt.max_refine_rounds; ++r) {
    const int n = collect_inliers(prob, *pose, opt.refine_threshold_px, inliers);
    if (n < 4 || n <= previous) break;
    refine_pose(prob, *inliers, refine, pose);
    previous = n;
    ++*rounds;
  }
  orthonormalize(pose);
  return collect_inliers(prob, *pose, opt.refine_threshold_px, inliers);
}

// The result's inlier masks, median reprojection error and poses (centring undone).
void fill_outputs(const Problem& prob, const Pose& pose, const PointSet& inliers, RansacResult* res) {
  std::vector<double> errors;
  Eigen::Vector2d r;
  for (size_t v = 0; v < prob.views.size(); ++v) {
    for (int i : inliers[v]) {
      res->inliers[v][prob.views[v].rows[i]] = 1;
      if (reprojection_residual(prob.views[v], pose, i, &r)) errors.push_back(r.norm());
    }
  }
  if (!errors.empty()) {
    auto mid = errors.begin() + errors.size() / 2;
    std::nth_element(errors.begin(), mid, errors.end());
    res->reprojection_error_px = *mid;
  }
  // Undo the centring: R (X - c) + t = R X + (t - R c).
  res->pose_w2c.R = pose.R;
  res->pose_w2c.t = pose.t - pose.R * prob.centroid;
  res->T_c2w.setIdentity();
  res->T_c2w.topLeftCorner<3, 3>() = pose.R.transpose();
  res->T_c2w.topRightCorner<3, 1>() = -pose.R.transpose() * res->pose_w2c.t;
}

RansacResult solve(const std::vector<ViewInput>& inputs, const RansacOptions& opt,
                   bool name_frames) {
  validate_options(opt);
  if (inputs.empty()) throw std::invalid_argument("estimate_pose_multi needs at least one frame");
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point deadline =
      opt.time_budget_ms > 0.0
          ? t0 + std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double, std::milli>(std::min(opt.time_budget_ms, 1e9)))
          : Clock::time_point::max();

  RansacResult res;
  // Everything the hypothesis workers touch lives here, owned jointly with the helper threads
  // (a straggling helper may finish its item after this function has returned).
  auto search = std::make_shared<Search>(build_problem(inputs, opt.seed, name_frames), opt, deadline);
  const Problem& prob = search->prob;
  res.num_valid = prob.num_points;
  res.inliers.resize(prob.views.size());
  for (size_t v = 0; v < prob.views.size(); ++v)
    res.inliers[v].assign(prob.views[v].input_rows, 0);
  auto finish = [&](const std::string& message) {
    res.message = message;
    res.time_ms = ms_between(t0, Clock::now());
    return res;
  };
  const std::string unsolvable = check_solvable(prob);
  if (!unsolvable.empty()) return finish(unsolvable);

  const LoopOutcome loop = hypothesis_loop(search, opt);
  res.iterations = static_cast<int>(loop.done);
  const std::string budget_note =
      loop.timed_out ? "time budget: stopped after " + std::to_string(loop.done) + " iterations, "
                     : std::string();
  if (!loop.best.valid) return finish(budget_note + "no hypothesis: no sample gave a valid pose");

  Pose pose = loop.best_pose;
  PointSet inliers;
  const int n_inliers = final_refinement(prob, opt, &pose, &inliers, &res.refine_rounds);
  Score final_score;
  search->scorers[0].score(pose, search->params, nullptr, &final_score);
  res.score = final_score.value;
  res.num_inliers = n_inliers;
  fill_outputs(prob, pose, inliers, &res);

  const int needed = std::max(opt.min_inliers, 4);
  if (n_inliers < needed) {
    return finish(budget_note + "too few inliers: " + std::to_string(n_inliers) + " < min_inliers " +
                  std::to_string(needed));
  }
  const CovarianceResult cov = pose_covariance(prob, inliers, pose, opt.refine_threshold_px);
  if (!cov.ok) return finish(budget_note + cov.why);
  res.covariance = cov.covariance;
  res.success = true;
  return finish(loop.timed_out ? budget_note + "best pose kept" : "ok");
}

}  // namespace

}  // namespace seqace
