// Small, portable random numbers. The standard library's distributions and std::shuffle are
// implementation-defined, so seeded results would differ between compilers; these do not.
#pragma once

#include <cstdint>

namespace seqace {

// SplitMix64 (Steele, Lea & Flood 2014): one 64-bit state, good enough mixing for sampling.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}

  // A stream that depends only on (seed, counter): hypothesis h draws the same sample whichever
  // thread scores it, which makes RANSAC deterministic for any thread count.
  static SplitMix64 for_counter(std::uint64_t seed, std::uint64_t counter) {
    SplitMix64 g(seed ^ (counter * 0xD1B54A32D192ED03ull));
    g.next();
    return g;
  }

  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }

  // Uniform in [0, n) for n < 2^32 (multiply-shift; the bias is below 2^-32).
  std::uint32_t below(std::uint32_t n) {
    return static_cast<std::uint32_t>(((next() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
  }

 private:
  std::uint64_t state_;
};

}  // namespace seqace
