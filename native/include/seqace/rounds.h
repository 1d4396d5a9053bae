// Numbered work items processed in rounds by the calling thread plus pool helpers.
//
// RANSAC needs a barrier after each round: the best hypothesis (a read-only Snapshot given to
// every item of the round) is updated between rounds. A plain barrier stalls whenever a helper
// is preempted in the middle of an item, for a whole scheduler time slice (milliseconds) on a
// busy robot CPU. So the caller never waits for a helper: once no item is left to claim, it
// re-runs items that are still in flight elsewhere ("backup" execution). Items are pure
// functions of (item, snapshot), so a duplicate gives the same results; the first to finish
// publishes them, later copies are dropped. Helpers hold a shared_ptr to this object, so a
// straggler can finish safely after the caller has moved on or returned.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "seqace/thread_pool.h"

namespace seqace {

template <class Snapshot, class Result>
class Rounds : public std::enable_shared_from_this<Rounds<Snapshot, Result>> {
 public:
  // process(slot, item, snapshot, out) appends the item's results to *out; returning false
  // closes the round early (the time budget ran out). Slot 0 is the caller, helpers get 1..n.
  using Process =
      std::function<bool(int, std::int64_t, const Snapshot&, std::vector<Result>*)>;

  explicit Rounds(Process process) : process_(std::move(process)) {}

  // Asks the shared pool for n helpers (slots 1..n). They join whenever a thread is free.
  void add_helpers(int n) {
    if (n <= 0) return;
    auto self = this->shared_from_this();
    ThreadPool::shared().submit([self] { self->help(); }, n);
    num_helpers_ += n;
  }
  int num_helpers() const { return num_helpers_; }

  struct Outcome {
    std::vector<Result> results;  // unordered: sort them if order matters
    std::int64_t completed = 0;   // items run to the end
    bool closed_early = false;
  };

  // Runs items [begin, end) with `snapshot`; returns when each has been done once.
  Outcome run(std::int64_t begin, std::int64_t end, std::shared_ptr<const Snapshot> snapshot) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      begin_ = begin;
      end_ = end;
      next_ = begin;
      state_.assign(static_cast<size_t>(end - begin), kFree);
      done_ = 0;
      completed_ = 0;
      closed_ = false;
      snapshot_ = std::move(snapshot);
      results_.clear();
      ++round_;
      work_available_.store(true, std::memory_order_release);
    }
    if (num_helpers_ > 0) cv_.notify_all();

    std::vector<Result> local;
    auto spin_start = std::chrono::steady_clock::now();
    bool waiting = false;
    for (;;) {
      std::int64_t item = -1;
      std::shared_ptr<const Snapshot> snap;
      std::uint64_t round;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (done_ == end_ - begin_) break;
        if (next_ < end_) {
          item = next_++;
          state_[item - begin_] = kClaimed;
          if (next_ == end_) work_available_.store(false, std::memory_order_relaxed);
        } else {
          // Everything is claimed. Wait a little for helpers, then back up their items.
          const auto now = std::chrono::steady_clock::now();
          if (!waiting) {
            waiting = true;
            spin_start = now;
          } else if (now - spin_start > std::chrono::microseconds(kBackupAfterUs)) {
            for (std::int64_t i = begin_; i < end_; ++i)
              if (state_[i - begin_] == kClaimed) {
                item = i;
                state_[i - begin_] = kBackedUp;
                break;
              }
          }
        }
        snap = snapshot_;
        round = round_;
      }
      if (item < 0) {
        pause();
        continue;
      }
      waiting = false;
      local.clear();
      const bool ok = process_(0, item, *snap, &local);
      publish(round, item, ok, &local);
    }
    Outcome out;
    std::lock_guard<std::mutex> lock(mutex_);
    work_available_.store(false, std::memory_order_relaxed);
    out.results.swap(results_);
    out.completed = completed_;
    out.closed_early = closed_;
    snapshot_.reset();
    return out;
  }

  // Releases the helpers; call once, when no more rounds will run.
  void finish() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      finished_ = true;
      work_available_.store(true, std::memory_order_release);
    }
    cv_.notify_all();
  }

 private:
  static constexpr std::uint8_t kFree = 0, kClaimed = 1, kBackedUp = 2, kDone = 3;
  static constexpr int kBackupAfterUs = 20;
  static constexpr int kHelperSpinUs = 100;

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#else
    std::this_thread::yield();
#endif
  }

  void publish(std::uint64_t round, std::int64_t item, bool ok, std::vector<Result>* local) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (round != round_ || state_[item - begin_] == kDone) return;  // a copy finished first
    if (!ok) {
      // Out of time: nothing more is claimed and the unfinished items are given up.
      closed_ = true;
      for (auto& s : state_)
        if (s != kDone) {
          s = kDone;
          ++done_;
        }
      next_ = end_;
      return;
    }
    state_[item - begin_] = kDone;
    ++done_;
    ++completed_;
    results_.insert(results_.end(), local->begin(), local->end());
  }

  void help() {
    int slot;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      slot = ++helpers_joined_;
    }
    std::vector<Result> local;
    for (;;) {
      // Spin briefly for the next round (rounds are tens of microseconds apart), then sleep.
      const auto spin_until =
          std::chrono::steady_clock::now() + std::chrono::microseconds(kHelperSpinUs);
      while (!work_available_.load(std::memory_order_acquire) &&
             std::chrono::steady_clock::now() < spin_until)
        pause();
      std::int64_t item;
      std::shared_ptr<const Snapshot> snap;
      std::uint64_t round;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return finished_ || next_ < end_; });
        if (finished_) return;
        item = next_++;
        state_[item - begin_] = kClaimed;
        if (next_ == end_) work_available_.store(false, std::memory_order_relaxed);
        snap = snapshot_;
        round = round_;
      }
      local.clear();
      const bool ok = process_(slot, item, *snap, &local);
      publish(round, item, ok, &local);
    }
  }

  Process process_;
  int num_helpers_ = 0;  // requested (caller side only)

  std::mutex mutex_;
  std::condition_variable cv_;
  std::atomic<bool> work_available_{false};
  std::int64_t begin_ = 0, end_ = 0, next_ = 0;
  std::vector<std::uint8_t> state_;
  std::int64_t done_ = 0, completed_ = 0;
  bool closed_ = false, finished_ = false;
  std::uint64_t round_ = 0;
  int helpers_joined_ = 0;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<Result> results_;
};

}  // namespace seqace
