// A CPU stand-in for the CUDA features gpunn's kernels use, so the kernels can be
// compiled by the host C++ compiler and run in CI without a GPU (tests/cuda_emu).
//
//   g++ -x c++ -std=c++20 -include shim.h -DGPUNN_EMULATE -I kernels -shared file.cu
//
// Execution model: blocks run one after another; the threads of a block are
// cooperative fibers (ucontext), switched only at barriers. __syncthreads() waits for
// every thread of the block, a warp primitive (__shfl_*_sync, __syncwarp, votes) for the
// 32 lanes of the warp, exchanging values through a per-warp slot array. A barrier that
// some threads never reach (they returned, or took another branch) fails the launch
// with a message instead of hanging. __shared__ is `static`: one copy, reused block
// after block, as on a GPU (uninitialised at block start, in principle).
//
// Not provided on purpose: global min()/max() (kernels use fminf/fmaxf or ternaries).
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static

struct uint3 {
  unsigned x, y, z;
};
using dim3 = uint3;

#if defined(GPUNN_HALF)
using __half = _Float16;
inline float __half2float(__half h) { return static_cast<float>(h); }
inline __half __float2half(float f) { return static_cast<__half>(f); }
inline __half __float2half_rn(float f) { return static_cast<__half>(f); }
#endif

namespace gpunn_emu {

struct Fiber {
  ucontext_t context;
  std::vector<char> stack;
  uint3 thread;
  bool done = false;
  int waiting = 0;  // 0 running, 1 at a block barrier, 2 at a warp barrier
  long long generation = 0;  // the barrier generation it waits for
};

struct Launch {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber* current = nullptr;
  uint3 block_idx, block_dim, grid_dim;
  std::function<void()> body;
  std::string error;
  // block barrier
  int block_arrived = 0;
  long long block_generation = 0;
  // warp barriers and shuffle slots, per warp
  std::vector<int> warp_arrived;
  std::vector<long long> warp_generation;
  std::vector<unsigned long long> slots;  // 32 per warp, raw 8-byte values
};

inline Launch*& launch() {
  static Launch* active = nullptr;
  return active;
}

inline Fiber& self() { return *launch()->current; }

// Counts every barrier arrival and finished thread: a scheduling round that leaves it
// unchanged while threads remain is a deadlock.
inline long long& progress() {
  static long long count = 0;
  return count;
}

inline void yield_to_scheduler() {
  Launch& l = *launch();
  swapcontext(&l.current->context, &l.scheduler);
}

inline void fail(const std::string& message) {
  Launch& l = *launch();
  if (l.error.empty()) l.error = message;
  throw std::runtime_error(message);
}

// Every thread of the block arrives before any leaves.
inline void block_barrier() {
  Launch& l = *launch();
  Fiber& f = self();
  const int n = static_cast<int>(l.fibers.size());
  f.generation = l.block_generation;
  ++progress();
  if (++l.block_arrived == n) {
    l.block_arrived = 0;
    ++l.block_generation;
    return;
  }
  f.waiting = 1;
  while (l.block_generation == f.generation) yield_to_scheduler();
  f.waiting = 0;
}

inline int lane() { return static_cast<int>(self().thread.x % 32); }
inline int warp() { return static_cast<int>(self().thread.x / 32); }

// The 32 lanes of this warp arrive before any leaves.
inline void warp_barrier() {
  Launch& l = *launch();
  Fiber& f = self();
  const int w = warp();
  f.generation = l.warp_generation[w];
  ++progress();
  if (++l.warp_arrived[w] == 32) {
    l.warp_arrived[w] = 0;
    ++l.warp_generation[w];
    return;
  }
  f.waiting = 2;
  while (l.warp_generation[w] == f.generation) yield_to_scheduler();
  f.waiting = 0;
}

// Every lane publishes `value`, then reads lane `source`'s (its own when out of range).
template <typename T>
inline T exchange(T value, int source) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  Launch& l = *launch();
  unsigned long long* slots = &l.slots[32 * warp()];
  unsigned long long raw = 0;
  std::memcpy(&raw, &value, sizeof(T));
  warp_barrier();
  slots[lane()] = raw;
  warp_barrier();
  T out = value;
  if (source >= 0 && source < 32) std::memcpy(&out, &slots[source], sizeof(T));
  warp_barrier();
  return out;
}

using Launcher = std::function<void(void**)>;

inline std::map<std::string, Launcher>& registry() {
  static std::map<std::string, Launcher> kernels;
  return kernels;
}

template <typename... A, std::size_t... I>
inline void call(void (*fn)(A...), void** args, std::index_sequence<I...>) {
  fn(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

template <typename... A>
inline bool register_kernel(const char* name, void (*fn)(A...)) {
  registry()[name] = [fn](void** args) {
    call(fn, args, std::index_sequence_for<A...>{});
  };
  return true;
}

}  // namespace gpunn_emu

#define threadIdx (::gpunn_emu::self().thread)
#define blockIdx (::gpunn_emu::launch()->block_idx)
#define blockDim (::gpunn_emu::launch()->block_dim)
#define gridDim (::gpunn_emu::launch()->grid_dim)

inline void __syncthreads() { gpunn_emu::block_barrier(); }
inline void __syncwarp(unsigned = 0xffffffffu) { gpunn_emu::warp_barrier(); }

template <typename T> inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
  const int base = gpunn_emu::lane() & ~(width - 1);
  return gpunn_emu::exchange(v, base + (src % width));
}
template <typename T> inline T __shfl_xor_sync(unsigned, T v, int mask, int width = 32) {
  const int lane = gpunn_emu::lane();
  const int src = lane ^ mask;
  const bool inside = (src & ~(width - 1)) == (lane & ~(width - 1));
  return gpunn_emu::exchange(v, inside ? src : lane);
}
template <typename T> inline T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
  const int lane = gpunn_emu::lane();
  const int src = lane + static_cast<int>(d);
  const bool inside = (src & ~(width - 1)) == (lane & ~(width - 1));
  return gpunn_emu::exchange(v, inside ? src : lane);
}
template <typename T> inline T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
  const int lane = gpunn_emu::lane();
  const int src = lane - static_cast<int>(d);
  const bool inside = src >= (lane & ~(width - 1));
  return gpunn_emu::exchange(v, inside ? src : lane);
}
inline unsigned __ballot_sync(unsigned, int predicate) {
  unsigned bits = 0;
  for (int i = 0; i < 32; ++i)
    bits |= static_cast<unsigned>(gpunn_emu::exchange(predicate ? 1 : 0, i)) << i;
  return bits;
}
inline int __any_sync(unsigned m, int p) { return __ballot_sync(m, p) != 0; }
inline int __all_sync(unsigned m, int p) { return __ballot_sync(m, p) == 0xffffffffu; }

// Blocks run one at a time in one OS thread, so atomics are plain read-modify-writes.
template <typename T> inline T atomicAdd(T* a, T v) { T old = *a; *a = old + v; return old; }
template <typename T> inline T atomicExch(T* a, T v) { T old = *a; *a = v; return old; }
template <typename T> inline T atomicMax(T* a, T v) { T old = *a; *a = old < v ? v : old; return old; }
template <typename T> inline T atomicMin(T* a, T v) { T old = *a; *a = v < old ? v : old; return old; }
template <typename T> inline T atomicCAS(T* a, T cmp, T v) {
  T old = *a;
  if (old == cmp) *a = v;
  return old;
}

// CUDA device functions the host library lacks.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : (x > 1.f ? 1.f : x); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
template <typename T> inline T __ldg(const T* p) { return *p; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __int_as_float(int u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline long long __double_as_longlong(double d) { long long u; std::memcpy(&u, &d, 8); return u; }
inline double __longlong_as_double(long long u) { double d; std::memcpy(&d, &u, 8); return d; }
using std::isfinite;
using std::isinf;
using std::isnan;

namespace gpunn_emu {

constexpr std::size_t STACK_BYTES = 1 << 16;

inline void fiber_main() {
  Launch& l = *launch();
  try {
    l.body();
  } catch (const std::exception& e) {
    if (l.error.empty()) l.error = e.what();
  }
  l.current->done = true;
  ++progress();
}  // returns to the scheduler through uc_link

// Runs one block: every fiber from the start, round-robin between barriers.
inline void run_block(Launch& l, const std::string& name) {
  for (std::size_t t = 0; t < l.fibers.size(); ++t) {
    Fiber& f = l.fibers[t];
    f.done = false;
    f.waiting = 0;
    f.thread = {static_cast<unsigned>(t), 0, 0};
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.data();
    f.context.uc_stack.ss_size = f.stack.size();
    f.context.uc_link = &l.scheduler;
    makecontext(&f.context, fiber_main, 0);
  }
  std::size_t live = l.fibers.size();
  while (live > 0 && l.error.empty()) {
    const long long before = progress();
    live = 0;
    for (Fiber& f : l.fibers) {
      if (f.done) continue;
      l.current = &f;
      swapcontext(&l.scheduler, &f.context);
      if (!l.error.empty()) return;
      live += f.done ? 0 : 1;
    }
    if (live > 0 && progress() == before) {
      bool block = false;
      for (const Fiber& f : l.fibers) block |= !f.done && f.waiting == 1;
      l.error = name + ": " + (block ? "__syncthreads()" : "a warp primitive") +
                " that some threads of the " + (block ? "block" : "warp") +
                " never reach (they returned or took another branch)";
    }
  }
}

}  // namespace gpunn_emu

extern "C" int gpunn_emu_launch(const char* name, unsigned grid, unsigned block,
                                void** args, char* err, std::size_t err_len) {
  using namespace gpunn_emu;
  auto write_error = [&](const std::string& message) {
    std::snprintf(err, err_len, "%s", message.c_str());
    return 1;
  };
  auto found = registry().find(name);
  if (found == registry().end())
    return write_error(std::string("no kernel registered as ") + name);
  if (block == 0 || block > 1024 || block % 32 != 0)
    return write_error(std::string(name) + ": block size must be a multiple of 32 " +
                       "in [32, 1024], got " + std::to_string(block));
  Launch l;
  l.fibers.resize(block);
  for (Fiber& f : l.fibers) f.stack.resize(STACK_BYTES);
  l.warp_arrived.assign(block / 32, 0);
  l.warp_generation.assign(block / 32, 0);
  l.slots.assign(block, 0);
  l.block_dim = {block, 1, 1};
  l.grid_dim = {grid, 1, 1};
  Launcher& run = found->second;
  l.body = [&run, args] { run(args); };
  launch() = &l;
  for (unsigned b = 0; b < grid && l.error.empty(); ++b) {
    l.block_idx = {b, 0, 0};
    run_block(l, name);
  }
  launch() = nullptr;
  return l.error.empty() ? 0 : write_error(l.error);
}

extern "C" int gpunn_emu_names(char* buf, std::size_t len) {
  std::string all;
  for (const auto& entry : gpunn_emu::registry()) all += entry.first + "\n";
  std::snprintf(buf, len, "%s", all.c_str());
  return static_cast<int>(all.size());
}
