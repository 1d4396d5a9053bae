// A process-wide pool of helper threads, created on first use and grown on demand.
//
// Threads are kept between calls because creating and joining them costs tens of microseconds,
// a large share of a 1 ms pose estimate. Jobs must own everything they touch (capture
// shared_ptrs): the submitter never waits for a job, so a job may still be running after the
// call that submitted it has returned.
//
// Helpers are strictly best effort. On Linux they run under SCHED_IDLE: they use a CPU that
// would otherwise idle and never preempt the caller or anyone else. Without it, waking a
// helper on a saturated machine (a robot running its whole stack on 2 cores) lets the woken
// thread preempt the caller, which then waits milliseconds for its next time slice; we
// measured 2-thread calls 2-5x slower than 1-thread calls that way.
#pragma once

#include <condition_variable>
#include <deque>
#include <algorithm>
#include <functional>
#include <mutex>
#include <thread>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define SEQACE_HAVE_GETPID 1
#endif
#if defined(__linux__)
#include <sched.h>
#endif

namespace seqace {

class ThreadPool {
 public:
  // The shared pool. A child process after fork() gets a fresh one: the parent's threads do
  // not exist there.
  static ThreadPool& shared() {
    static std::mutex guard;
    static ThreadPool* pool = nullptr;
#ifdef SEQACE_HAVE_GETPID
    static pid_t owner = 0;
    std::lock_guard<std::mutex> lock(guard);
    if (pool == nullptr || owner != getpid()) {
      pool = new ThreadPool();  // never deleted: threads may outlive static destruction
      owner = getpid();
    }
#else
    std::lock_guard<std::mutex> lock(guard);
    if (pool == nullptr) pool = new ThreadPool();
#endif
    return *pool;
  }

  // Queues `copies` runs of `job` and returns true, or returns false at once if the pool is
  // busy (its lock is held, possibly by a preempted idle-priority thread): the caller must
  // never block on a helper. The pool grows to the largest `copies` ever asked for and no
  // further: a job that finds every thread busy (say, a previous call's helper that is just
  // returning) waits in the queue rather than spawning a thread per call.
  bool submit(const std::function<void()>& job, int copies) {
    {
      std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
      if (!lock.owns_lock()) return false;
      // Queued jobs keep their call's data alive; when idle-priority threads are starved for
      // long (a saturated CPU), stop queueing rather than pile up memory.
      if (!jobs_.empty() && jobs_.size() + copies > static_cast<size_t>(kMaxQueued)) return false;
      for (int i = 0; i < copies; ++i) jobs_.push_back(job);
      for (; threads_ < std::min(copies, kMaxThreads); ++threads_)
        std::thread([this] { loop(); }).detach();
    }
    cv_.notify_all();
    return true;
  }

 private:
  static constexpr int kMaxThreads = 256;
  static constexpr int kMaxQueued = 16;

  void loop() {
#if defined(__linux__) && defined(SCHED_IDLE)
    sched_param param{};
    param.sched_priority = 0;
    sched_setscheduler(0, SCHED_IDLE, &param);  // this thread only; failure leaves it normal
#endif
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      cv_.wait(lock, [&] { return !jobs_.empty(); });
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      job = nullptr;  // release what the job owns before sleeping
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  int threads_ = 0;
};

}  // namespace seqace
