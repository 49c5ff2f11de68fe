// The spinning fork-join pool behind RunShards (see fork_join.h for why).
//
// Protocol: each helper owns a slot. The caller (holding the pool's job lock)
// writes a slot's fn and shard, marks it unclaimed for the new ticket t
// (claim = 2t), then publishes t. Whoever moves claim 2t -> 2t+1 first runs
// the shard: the helper when it sees t, or the caller itself once its own
// shard is done (a helper the OS has not run yet, or one asleep, costs one
// shard's time on the caller, never a stall). A stale helper cannot claim: the
// claim word holds only the current ticket. A slot is rewritten only after its
// `done` reached t, so no shard runs twice and helpers share nothing.
#include "fork_join.h"

#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SKETCHTF_PAUSE() _mm_pause()
#else
#define SKETCHTF_PAUSE() std::this_thread::yield()
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "op_common.h"
#include "tensorflow/core/util/work_sharder.h"

namespace sketchtf {
namespace {

using Clock = std::chrono::steady_clock;

struct alignas(64) Slot {
  std::atomic<uint64_t> ticket{0};
  std::atomic<uint64_t> claim{1};  // 2t: ticket t unclaimed, 2t+1: claimed
  std::atomic<uint64_t> done{0};
  const std::function<void(int64_t)>* fn = nullptr;
  int64_t shard = 0;
};

class SpinPool {
 public:
  // False when another op holds the pool (the caller then uses TF's pool).
  bool TryRun(int64_t shards, const std::function<void(int64_t)>& fn) {
    std::unique_lock<std::mutex> job(run_mu_, std::try_to_lock);
    if (!job.owns_lock()) return false;
    // Helper threads do not survive fork(): a child starts a pool of its own.
    if (pid_ != getpid()) {
      slots_.clear();  // the parent's slots stay allocated: their threads are gone here
      pid_ = getpid();
    }
    const int64_t helpers = shards - 1;
    while (static_cast<int64_t>(slots_.size()) < helpers) {
      slots_.push_back(new Slot);  // never freed: a detached helper reads it forever
      Slot* s = slots_.back();
      std::thread([this, s] { Loop(s); }).detach();
    }
    const uint64_t ticket = ++ticket_;
    for (int64_t i = 0; i < helpers; ++i) {
      slots_[i]->fn = &fn;
      slots_[i]->shard = i + 1;
      slots_[i]->claim.store(2 * ticket, std::memory_order_seq_cst);
      slots_[i]->ticket.store(ticket, std::memory_order_seq_cst);
    }
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      std::lock_guard<std::mutex> lock(mu_);
      cv_.notify_all();
    }
    fn(0);
    for (int64_t i = 0; i < helpers; ++i) {
      if (Claim(slots_[i], ticket)) {  // its helper has not started: run it here
        fn(i + 1);
        slots_[i]->done.store(ticket, std::memory_order_release);
      }
    }
    for (int64_t i = 0; i < helpers; ++i) {
      // A claimed shard is running on its helper; should the OS deschedule
      // it, stop hogging the core after 1 ms.
      const Clock::time_point t0 = Clock::now();
      for (uint32_t n = 1; slots_[i]->done.load(std::memory_order_acquire) != ticket; ++n) {
        SKETCHTF_PAUSE();
        if ((n & 1023) == 0 && Clock::now() - t0 > std::chrono::milliseconds(1))
          std::this_thread::yield();
      }
    }
    return true;
  }

 private:
  static bool Claim(Slot* s, uint64_t ticket) {
    uint64_t expected = 2 * ticket;
    return s->claim.compare_exchange_strong(expected, 2 * ticket + 1, std::memory_order_acq_rel);
  }

  void Loop(Slot* s) {
    const std::chrono::microseconds spin(SpinMicros());
    uint64_t seen = 0;
    for (;;) {
      const Clock::time_point t0 = Clock::now();
      uint64_t t;
      for (uint32_t n = 1; (t = s->ticket.load(std::memory_order_acquire)) == seen; ++n) {
        SKETCHTF_PAUSE();
        // Give the core away whenever another thread wants it (TF's own pools
        // run the float layers between ours): spinning must not slow them.
        if ((n & 15) == 0) std::this_thread::yield();
        if ((n & 255) == 0 && Clock::now() - t0 > spin) {
          std::unique_lock<std::mutex> lock(mu_);
          sleepers_.fetch_add(1, std::memory_order_seq_cst);
          cv_.wait(lock, [&] { return s->ticket.load(std::memory_order_seq_cst) != seen; });
          sleepers_.fetch_sub(1, std::memory_order_seq_cst);
        }
      }
      seen = t;
      if (Claim(s, t)) {
        (*s->fn)(s->shard);
        s->done.store(t, std::memory_order_release);
      }
    }
  }

  std::mutex run_mu_;  // one job at a time; guards slots_, ticket_, pid_
  std::vector<Slot*> slots_;
  uint64_t ticket_ = 0;
  pid_t pid_ = getpid();
  std::mutex mu_;  // for sleeping helpers
  std::condition_variable cv_;
  std::atomic<int> sleepers_{0};
};

SpinPool& Pool() {
  static SpinPool* pool = new SpinPool;  // leaked: helpers outlive static destructors
  return *pool;
}

}  // namespace

int64_t SpinMicros() {
  static const int64_t us = [] {
    const char* env = std::getenv("SKETCHTF_SPIN_US");
    const long v = env ? std::strtol(env, nullptr, 10) : 200;
    return static_cast<int64_t>(v >= 0 ? v : 200);
  }();
  return us;
}

int64_t OpThreads(tensorflow::OpKernelContext* ctx) {
  if (SplitMode() == SplitModeT::kSerial) return 1;
  return std::max(1, ctx->device()->tensorflow_cpu_worker_threads()->num_threads);
}

int64_t ShardsFor(int64_t threads, int64_t work, int64_t min_work_per_shard) {
  if (const char* env = std::getenv("SKETCHTF_MIN_SHARD_WORK")) min_work_per_shard = std::strtoll(env, nullptr, 10);
  if (min_work_per_shard <= 0) return std::max<int64_t>(1, threads);
  return std::max<int64_t>(1, std::min(threads, work / min_work_per_shard));
}

void RunShards(tensorflow::OpKernelContext* ctx, int64_t shards, int64_t cost_per_shard,
               const std::function<void(int64_t)>& fn) {
  if (shards <= 1) {
    if (shards == 1) fn(0);
    return;
  }
  auto* pool = ctx->device()->tensorflow_cpu_worker_threads();
  if (SplitMode() != SplitModeT::kTfPool && Pool().TryRun(shards, fn)) return;
  tensorflow::Shard(pool->num_threads, pool->workers, shards,
                    cost_per_shard, [&](int64_t begin, int64_t end) {
                      for (int64_t s = begin; s < end; ++s) fn(s);
                    });
}

}  // namespace sketchtf
