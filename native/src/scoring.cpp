#include "seqace/scoring.h"

#include <array>
#include <cmath>

namespace seqace {
namespace {

// Squared error for points in front of the camera; this for the others, so they are outliers.
constexpr float kBehindCamera = 1e30f;
constexpr float kMinDepth = 1e-6f;
// Bail-out margin in standard deviations of the best hypothesis' running inlier count.
constexpr double kBailoutSigmas = 3.0;
// Soft weights beyond 7 tau are below 1e-13: treat them as zero.
constexpr double kSoftCutoff2 = 49.0;
constexpr int kLutSize = 4096;

// Written so that GCC/Clang vectorise it at -O3 (no branches, restrict pointers, float). On
// x86-64 an AVX2 clone (8 floats per instruction instead of SSE2's 4) is picked at load time
// when the CPU has it, so the extension still runs on any x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define SEQACE_TARGET_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef SEQACE_TARGET_CLONES
#define SEQACE_TARGET_CLONES
#endif

SEQACE_TARGET_CLONES
int project_block(const float* __restrict X, const float* __restrict Y, const float* __restrict Z,
                  const float* __restrict U, const float* __restrict V, int n, const float* P,
                  float tau2, float* __restrict err2) {
  const float p00 = P[0], p01 = P[1], p02 = P[2], p03 = P[3];
  const float p10 = P[4], p11 = P[5], p12 = P[6], p13 = P[7];
  const float p20 = P[8], p21 = P[9], p22 = P[10], p23 = P[11];
  int count = 0;
  for (int i = 0; i < n; ++i) {
    const float z = p20 * X[i] + p21 * Y[i] + p22 * Z[i] + p23;
    const float px = p00 * X[i] + p01 * Y[i] + p02 * Z[i] + p03;
    const float py = p10 * X[i] + p11 * Y[i] + p12 * Z[i] + p13;
    const float iz = 1.0f / z;
    const float du = px * iz - U[i];
    const float dv = py * iz - V[i];
    // Arithmetic rather than a select: GCC only vectorises a select with -fno-trapping-math.
    // A point behind the camera gets a huge error (or NaN, which also counts as an outlier).
    const float e2 = du * du + dv * dv + static_cast<float>(z <= kMinDepth) * kBehindCamera;
    err2[i] = e2;
    count += e2 < tau2 ? 1 : 0;
  }
  return count;
}

double soft_weight_exact(double s) {
  return 1.0 / (1.0 + std::exp(5.0 * (std::sqrt(s) - 1.0)));
}

// The soft weight depends only on e^2 / tau^2 (beta tau = 5), so one table serves every tau.
struct SoftLut {
  std::array<float, kLutSize + 2> w;
  double step_inv;
  SoftLut() {
    const double step = kSoftCutoff2 / kLutSize;
    step_inv = 1.0 / step;
    for (int i = 0; i < kLutSize + 2; ++i) w[i] = static_cast<float>(soft_weight_exact(i * step));
  }
  double operator()(double s) const {
    const double f = s * step_inv;
    const int i = static_cast<int>(f);
    const double a = f - i;
    return (1.0 - a) * w[i] + a * w[i + 1];
  }
};

const SoftLut& soft_lut() {
  static const SoftLut lut;  // thread-safe initialisation (C++11 magic statics)
  return lut;
}

}  // namespace

ScoreParams ScoreParams::from(const RansacOptions& opt) {
  ScoreParams p;
  p.mode = opt.scoring;
  p.tau = opt.inlier_threshold_px;
  p.clamp = opt.error_clamp_px;
  p.bailout = opt.early_bailout;
  return p;
}

double soft_inlier_weight(double e2_over_tau2) {
  return e2_over_tau2 < kSoftCutoff2 ? soft_lut()(e2_over_tau2) : 0.0;
}

Scorer::Scorer(const Problem& problem)
    : problem_(problem), err2_(problem.num_points), cumulative_(problem.num_blocks) {
  soft_lut();
}

bool Scorer::score(const Pose& pose, const ScoreParams& params, const BestRecord* best,
                   Score* out) {
  const float tau2 = static_cast<float>(params.tau * params.tau);
  const bool bail = params.bailout && best != nullptr && best->valid;
  int count = 0;
  for (const View& view : problem_.views) {
    const int n = view.size();
    if (n == 0) continue;
    // P = K [R_v R | R_v t + t_v]: projects centred world points straight to pixels.
    Eigen::Matrix3d R = pose.R;
    Eigen::Vector3d t = pose.t;
    if (!view.is_current) {
      R = view.view_from_cur.R * pose.R;
      t = view.view_from_cur.R * pose.t + view.view_from_cur.t;
    }
    Eigen::Matrix<double, 3, 4> Pd;
    Pd.leftCols<3>() = view.K * R;
    Pd.col(3) = view.K * t;
    float P[12];
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) P[4 * r + c] = static_cast<float>(Pd(r, c));

    float* err = err2_.data() + view.offset;
    for (int b = 0; b < view.num_blocks; ++b) {
      const int begin = b * kScoreBlock;
      const int len = std::min(kScoreBlock, n - begin);
      count += project_block(view.sx.data() + begin, view.sy.data() + begin,
                             view.sz.data() + begin, view.su.data() + begin,
                             view.sv.data() + begin, len, P, tau2, err + begin);
      const int gb = view.first_block + b;
      cumulative_[gb] = count;
      if (bail) {
        const double c_best = best->cumulative_inliers[gb];
        if (count < c_best - kBailoutSigmas * std::sqrt(c_best) - 1.0) return false;
      }
    }
  }

  Score s;
  s.inliers = count;
  const float* err = err2_.data();
  const int N = problem_.num_points;
  if (params.mode == Scoring::kHard) {
    double sse = 0.0;
    for (int i = 0; i < N; ++i) sse += err[i] < tau2 ? err[i] : 0.0f;
    s.value = count;
    s.tiebreak = -sse;
  } else {
    const SoftLut& lut = soft_lut();
    const double inv_tau2 = 1.0 / (params.tau * params.tau);
    const double s_clamp = (params.clamp * params.clamp) * inv_tau2;
    const double w_clamp = soft_weight_exact(s_clamp);
    const double s_cut = std::min(s_clamp, kSoftCutoff2);
    double sum = 0.0;
    for (int i = 0; i < N; ++i) {
      const double si = err[i] * inv_tau2;
      if (si < s_cut)
        sum += lut(si);
      else if (si >= s_clamp)
        sum += w_clamp;  // clamped errors (and points behind the camera) keep a tiny weight
    }
    s.value = sum;
    s.tiebreak = 0.0;
  }
  *out = s;
  return true;
}

int Scorer::inliers(double threshold_px, int max_points,
                    std::vector<std::vector<int>>* out) const {
  const float th2 = static_cast<float>(threshold_px * threshold_px);
  out->assign(problem_.views.size(), {});
  int count = 0;
  for (size_t v = 0; v < problem_.views.size(); ++v) {
    const View& view = problem_.views[v];
    const float* err = err2_.data() + view.offset;
    for (int i = 0; i < view.size() && count < max_points; ++i) {
      if (err[i] < th2) {
        (*out)[v].push_back(i);
        ++count;
      }
    }
  }
  return count;
}

}  // namespace seqace
