// Low-latency fork-join for batch-1 work: a few equal shards, one per thread.
//
// A batch-1 layer here is 0.05-0.3 ms of work. Through TF's intra-op pool
// (tensorflow::Shard -> Eigen parallelFor) the calling thread blocks on a
// barrier and is woken by the OS when the other shard ends, and a sleeping pool
// thread is woken the same way: tens of microseconds per op, about what the
// second thread saves (issue 17: 2 threads ran XNOR layers at 0.9-1.2x one).
// This pool does what mobile inference runtimes (pthreadpool, ruy) do instead:
// helpers spin on a per-helper ticket for a short while after each job, so the
// back-to-back ops of one forward pass find them awake; the caller takes over
// any shard whose helper has not started and spins until the rest are done;
// idle helpers then sleep on a condition variable (protocol: fork_join.cc).
#ifndef SKETCHTF_OPS_FORK_JOIN_H_
#define SKETCHTF_OPS_FORK_JOIN_H_

#include <cstdint>
#include <functional>

#include "tensorflow/core/framework/op_kernel.h"

namespace sketchtf {

// Runs fn(s) for every s in [0, shards): s = 0 on the calling thread, the rest
// on spinning helpers, one shard each (static and equal by the caller's plan).
// Falls back to TF's intra-op pool (tensorflow::Shard, cost_per_shard cycles a
// shard) when SKETCHTF_XNOR_SPLIT=tfpool (the side-by-side baseline) or while
// another op holds the helpers (concurrent inter-op work).
void RunShards(tensorflow::OpKernelContext* ctx, int64_t shards, int64_t cost_per_shard,
               const std::function<void(int64_t)>& fn);

// The threads an op may split over: TF's intra-op count, 1 under
// SKETCHTF_XNOR_SPLIT=serial.
int64_t OpThreads(tensorflow::OpKernelContext* ctx);

// Shards for `work` units on `threads` threads: at most one per
// `min_work_per_shard` units (a shard must outweigh its ~1 us hand-off, also on
// a many-core server with as many intra-op threads), at least one.
// SKETCHTF_MIN_SHARD_WORK (read on every call; tests) replaces every minimum:
// 0 gives each thread a shard however small the op.
int64_t ShardsFor(int64_t threads, int64_t work, int64_t min_work_per_shard);

// How long (microseconds) an idle helper spins before it sleeps:
// SKETCHTF_SPIN_US, default 200 (a forward pass's gap between two ops is
// 5-50 us; a helper left over after the last op burns at most this much).
int64_t SpinMicros();

}  // namespace sketchtf

#endif  // SKETCHTF_OPS_FORK_JOIN_H_
