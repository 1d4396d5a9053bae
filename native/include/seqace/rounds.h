// Numbered work items processed in rounds by the calling thread plus pool helpers.
//
// RANSAC needs a barrier after each round: the best hypothesis (a read-only Snapshot given to
// every item of the round) is updated between rounds. Rounds are tens of microseconds long, and
// on a busy robot CPU any thread can be preempted for a whole scheduler time slice
// (milliseconds), so:
//   * the caller never waits for a helper: once no item is left to claim, it re-runs items that
//     are still in flight elsewhere ("backup" execution). Items are pure functions of
//     (item, snapshot), so a duplicate gives the same results; the first to finish publishes
//     them and later copies are dropped;
//   * nothing on the caller's path takes a lock that a helper could hold while preempted:
//     claiming and publishing are atomic operations on the round's own data;
//   * every round's data lives as long as this object, and helpers hold a shared_ptr to it,
//     so a straggler can finish safely after the caller has moved on or returned.
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

  // Asks the shared pool for n helpers (slots 1..n); they join whenever a thread is free.
  // False if the pool was busy (try again later).
  bool add_helpers(int n) {
    if (n <= 0) return false;
    auto self = this->shared_from_this();
    if (!ThreadPool::shared().submit([self] { self->help(); }, n)) return false;
    num_helpers_ += n;
    return true;
  }
  int num_helpers() const { return num_helpers_; }

  struct Outcome {
    std::vector<Result> results;  // in item order
    std::int64_t completed = 0;   // items run to the end
    bool closed_early = false;
  };

  // Runs items [begin, end) with `snapshot`; returns when each has been done once (or the
  // round was closed early).
  Outcome run(std::int64_t begin, std::int64_t end, std::shared_ptr<const Snapshot> snapshot) {
    rounds_.push_back(std::make_unique<Round>(begin, end, std::move(snapshot)));
    Round* rd = rounds_.back().get();
    current_.store(rd, std::memory_order_seq_cst);
    wake_helpers();

    std::vector<Result> local;
    auto wait_start = std::chrono::steady_clock::now();
    bool waiting = false;
    for (;;) {
      std::int64_t i = rd->next.load(std::memory_order_relaxed) < rd->n
                           ? rd->next.fetch_add(1, std::memory_order_relaxed)
                           : rd->n;
      if (i < rd->n) {
        mark_claimed(rd, i);
      } else {
        if (rd->done.load(std::memory_order_acquire) == rd->n ||
            rd->closed.load(std::memory_order_acquire))
          break;
        // Everything is claimed: give helpers a moment, then back up their items.
        i = -1;
        const auto now = std::chrono::steady_clock::now();
        if (!waiting) {
          waiting = true;
          wait_start = now;
        } else if (now - wait_start > std::chrono::microseconds(kBackupAfterUs)) {
          // Every item is claimed, so any that is not done is in flight (its claimer may not
          // even have marked it yet).
          for (std::int64_t k = 0; k < rd->n && i < 0; ++k) {
            std::uint8_t s = rd->state[k].load(std::memory_order_relaxed);
            while (s <= kClaimed && i < 0)
              if (rd->state[k].compare_exchange_weak(s, kBackedUp)) i = k;
          }
        }
        if (i < 0) {
          pause();
          continue;
        }
      }
      waiting = false;
      local.clear();
      const bool ok = process_(0, rd->begin + i, *rd->snapshot, &local);
      publish(rd, i, ok, &local);
    }

    Outcome out;
    out.closed_early = rd->closed.load(std::memory_order_acquire);
    for (std::int64_t k = 0; k < rd->n; ++k) {
      if (rd->state[k].load(std::memory_order_acquire) != kDone) continue;
      ++out.completed;
      out.results.insert(out.results.end(), rd->results[k].begin(), rd->results[k].end());
    }
    return out;
  }

  // Releases the helpers; call once, when no more rounds will run.
  void finish() {
    finished_.store(true, std::memory_order_seq_cst);
    wake_helpers();
  }

 private:
  static constexpr std::uint8_t kFree = 0, kClaimed = 1, kBackedUp = 2, kPublishing = 3, kDone = 4;
  static constexpr int kBackupAfterUs = 10;
  static constexpr int kHelperSpinUs = 50;
  static constexpr int kSleepMs = 20;

  struct Round {
    Round(std::int64_t b, std::int64_t e, std::shared_ptr<const Snapshot> s)
        : begin(b), n(e - b), snapshot(std::move(s)), state(new std::atomic<std::uint8_t>[e - b]),
          results(new std::vector<Result>[e - b]) {
      for (std::int64_t k = 0; k < n; ++k) state[k].store(kFree, std::memory_order_relaxed);
    }
    const std::int64_t begin, n;
    const std::shared_ptr<const Snapshot> snapshot;
    std::atomic<std::int64_t> next{0};
    std::unique_ptr<std::atomic<std::uint8_t>[]> state;
    std::unique_ptr<std::vector<Result>[]> results;  // written by the item's publisher only
    std::atomic<std::int64_t> done{0};
    std::atomic<bool> closed{false};
  };

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#else
    std::this_thread::yield();
#endif
  }

  // A hint for backup execution; never overwrites a later state (a backup may have finished).
  static void mark_claimed(Round* rd, std::int64_t i) {
    std::uint8_t s = kFree;
    rd->state[i].compare_exchange_strong(s, kClaimed, std::memory_order_relaxed);
  }

  // The first copy of item i to get here publishes its results.
  static void publish(Round* rd, std::int64_t i, bool ok, std::vector<Result>* local) {
    std::uint8_t s = rd->state[i].load(std::memory_order_relaxed);
    do {
      if (s >= kPublishing) return;  // another copy won
    } while (!rd->state[i].compare_exchange_weak(s, kPublishing, std::memory_order_acq_rel));
    if (!ok) {
      // Out of time: nothing more is claimed; unfinished items are given up.
      rd->next.store(rd->n, std::memory_order_relaxed);
      rd->closed.store(true, std::memory_order_release);
      rd->state[i].store(kFree, std::memory_order_release);
      return;
    }
    rd->results[i].swap(*local);
    rd->state[i].store(kDone, std::memory_order_release);
    rd->done.fetch_add(1, std::memory_order_acq_rel);
  }

  // Never blocks: a helper may hold sleep_mutex_ while preempted. If the lock is taken the
  // notification can be lost, which costs at most one sleep period of that helper's help.
  void wake_helpers() {
    // seq_cst pairs with the sleeper count in help(): either we see the sleeper, or it sees
    // the new round. Taking the mutex orders the notification after the sleeper's last check.
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::unique_lock<std::mutex> lock(sleep_mutex_, std::try_to_lock);
      if (lock.owns_lock()) lock.unlock();
      sleep_cv_.notify_all();
    }
  }

  void help() {
    const int slot = helpers_joined_.fetch_add(1) + 1;
    std::vector<Result> local;
    Round* last_seen = nullptr;
    for (;;) {
      if (finished_.load(std::memory_order_acquire)) return;
      Round* rd = current_.load(std::memory_order_acquire);
      if (rd != nullptr && rd->next.load(std::memory_order_relaxed) < rd->n) {
        const std::int64_t i = rd->next.fetch_add(1, std::memory_order_relaxed);
        if (i < rd->n) {
          mark_claimed(rd, i);
          local.clear();
          const bool ok = process_(slot, rd->begin + i, *rd->snapshot, &local);
          publish(rd, i, ok, &local);
        }
        continue;
      }
      // No work. Spin briefly for the next round (they are tens of microseconds apart), then
      // sleep until the caller publishes one or finishes.
      last_seen = rd;
      const auto spin_until =
          std::chrono::steady_clock::now() + std::chrono::microseconds(kHelperSpinUs);
      while (current_.load(std::memory_order_acquire) == last_seen &&
             !finished_.load(std::memory_order_acquire) &&
             std::chrono::steady_clock::now() < spin_until)
        pause();
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        // Timed, so that a lost notification (see wake_helpers) costs a bounded delay.
        while (!finished_.load(std::memory_order_seq_cst) &&
               current_.load(std::memory_order_seq_cst) == last_seen)
          sleep_cv_.wait_for(lock, std::chrono::milliseconds(kSleepMs));
      }
      sleepers_.fetch_sub(1, std::memory_order_seq_cst);
    }
  }

  Process process_;
  int num_helpers_ = 0;                          // caller side only
  std::vector<std::unique_ptr<Round>> rounds_;   // caller side only; kept until destruction
  std::atomic<Round*> current_{nullptr};
  std::atomic<bool> finished_{false};
  std::atomic<int> helpers_joined_{0};
  std::atomic<int> sleepers_{0};
  std::mutex sleep_mutex_;
  std::condition_variable sleep_cv_;
};

}  // namespace seqace
