// A CPU stand-in for the CUDA features gpunn's kernels use, so the kernels can be
// compiled by the host C++ compiler and run in CI without a GPU (tests/cuda_emu).
//
//   g++ -x c++ -std=c++20 -include shim.h -DGPUNN_EMULATE -I kernels -shared file.cu
//
// Execution model: blocks run one after another in one OS thread; the threads of a
// block are cooperative fibers (ucontext), switched only at barriers. __syncthreads()
// waits for every thread of the block, a warp primitive (__shfl_*_sync, __syncwarp,
// votes) for the 32 lanes of the warp, exchanging values through a per-warp slot array
// with a warp barrier before and after. __shared__ is `static`: one copy, reused block
// after block (uninitialised at block start, in principle, as on a GPU).
//
// Misuse fails the launch with a message naming the kernel, never hangs:
//   - a barrier some threads never reach (they returned or took another branch);
//   - threads of a block waiting at different __syncthreads() calls;
//   - lanes of a warp in different kinds of warp primitive (a shuffle and a vote);
//   - a warp mask other than 0xffffffff (only whole warps are emulated);
//   - a block size that is not a multiple of 32 in [32, 1024]. A grid of 0 runs nothing.
//
// Not provided on purpose: global min()/max() (kernels use fminf/fmaxf or ternaries),
// dynamic (extern) __shared__ memory, 2-D/3-D launches (y and z are always 0 / 1).
#pragma once

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <bit>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <source_location>
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
// Kernels compute in float (gpunn::load/store), so conversions are what matters.
using __half = _Float16;
inline float __half2float(__half h) { return static_cast<float>(h); }
inline __half __float2half(float f) { return static_cast<__half>(f); }
inline __half __float2half_rn(float f) { return static_cast<__half>(f); }

// bfloat16 as cuda_bf16.h's __nv_bfloat16 behaves in kernels: the top 16 bits of a
// float, converted from float by rounding to nearest even (NaN stays NaN), as
// ml_dtypes rounds on the host.
struct __nv_bfloat16 {
  unsigned short bits;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) {
    unsigned u = std::bit_cast<unsigned>(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = static_cast<unsigned short>((u >> 16) | 0x40u);  // quiet NaN
      return;
    }
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = static_cast<unsigned short>(u >> 16);
  }
  operator float() const {
    return std::bit_cast<float>(static_cast<unsigned>(bits) << 16);
  }
};
static_assert(sizeof(__nv_bfloat16) == 2);
inline float __bfloat162float(__nv_bfloat16 h) { return static_cast<float>(h); }
inline __nv_bfloat16 __float2bfloat16(float f) { return __nv_bfloat16(f); }
#endif

namespace gpunn_emu {

enum class Wait { none, block, warp };

struct Fiber {
  ucontext_t context;
  uint3 thread;
  bool done = false;
  Wait waiting = Wait::none;
  long long generation = 0;  // of the barrier it waits at
};

// A block or warp barrier; `kind` and `site` are those of this generation's first
// arrival, which every later arrival must match.
struct Barrier {
  int arrived = 0;
  long long generation = 0;
  const char* kind = nullptr;
  std::source_location site;
};

struct Launch {
  std::string name;  // the kernel's
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber* current = nullptr;
  uint3 block_idx, block_dim, grid_dim;
  std::function<void()> body;
  std::string error;
  Barrier block;
  std::vector<Barrier> warps;
  std::vector<unsigned long long> slots;  // 32 per warp, raw 8-byte values
};

inline Launch*& launch() {
  static Launch* active = nullptr;
  return active;
}

inline Fiber& self() { return *launch()->current; }

// Counts barrier arrivals and finished threads: a scheduling round that leaves it
// unchanged while threads remain is a deadlock.
inline long long& progress() {
  static long long count = 0;
  return count;
}

// Fails the launch: the message is kept and the throw ends this fiber.
[[noreturn]] inline void fail(const std::string& message) {
  Launch& l = *launch();
  if (l.error.empty()) l.error = l.name + ": " + message;
  throw std::runtime_error(l.error);
}

inline std::string where(const std::source_location& at) {
  const char* file = std::strrchr(at.file_name(), '/');
  return std::string(file ? file + 1 : at.file_name()) + ":" + std::to_string(at.line());
}

// Waits until `expected` threads have arrived at `b`. `same_site`: the arrivals must
// also come from the same line (block barriers; warp primitives may differ in site on
// sm_70+, but not in kind).
inline void arrive(Barrier& b, int expected, Wait wait, const char* kind,
                   const std::source_location& at, bool same_site) {
  Launch& l = *launch();
  Fiber& f = self();
  if (b.arrived == 0) {
    b.kind = kind;
    b.site = at;
  } else if (std::strcmp(b.kind, kind) != 0 ||
             (same_site && (b.site.line() != at.line() ||
                            std::strcmp(b.site.file_name(), at.file_name()) != 0))) {
    const bool block = wait == Wait::block;
    fail(std::string(block ? "threads of block " : "lanes of a warp in block ") +
         std::to_string(l.block_idx.x) + " wait at different " +
         (block ? "__syncthreads() calls" : "warp primitives") + " (" + b.kind + " at " +
         where(b.site) + " and " + kind + " at " + where(at) + ")");
  }
  f.generation = b.generation;
  ++progress();
  if (++b.arrived == expected) {
    b.arrived = 0;
    ++b.generation;
    return;
  }
  f.waiting = wait;
  while (b.generation == f.generation) swapcontext(&f.context, &l.scheduler);
  f.waiting = Wait::none;
}

inline int lane() { return static_cast<int>(self().thread.x % 32); }
inline int warp() { return static_cast<int>(self().thread.x / 32); }

inline void block_barrier(const std::source_location& at) {
  Launch& l = *launch();
  arrive(l.block, static_cast<int>(l.fibers.size()), Wait::block, "__syncthreads()", at,
         true);
}

inline void warp_barrier(const char* kind, const std::source_location& at) {
  arrive(launch()->warps[warp()], 32, Wait::warp, kind, at, false);
}

inline void require_full_warp(unsigned mask, const char* kind) {
  if (mask != 0xffffffffu) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", mask);
    fail(std::string(kind) + " with mask " + hex +
         ": the emulator runs whole warps only (mask 0xffffffff)");
  }
}

// Every lane publishes `raw`; then `read(slots of this warp)` gives each lane its result.
template <typename Read>
inline auto warp_collective(unsigned long long raw, const char* kind,
                            const std::source_location& at, Read read) {
  unsigned long long* slots = &launch()->slots[32 * warp()];
  warp_barrier(kind, at);  // the previous collective's reads are done
  slots[lane()] = raw;
  warp_barrier(kind, at);  // every lane has written
  auto out = read(slots);
  warp_barrier(kind, at);
  return out;
}

// Returns lane `source`'s `value` (the caller's own when `source` is outside the warp).
template <typename T>
inline T shuffle(unsigned mask, T value, int source, const std::source_location& at) {
  static_assert(sizeof(T) <= 8, "shuffle of a type wider than 8 bytes");
  require_full_warp(mask, "a shuffle");
  unsigned long long raw = 0;
  std::memcpy(&raw, &value, sizeof(T));
  return warp_collective(raw, "a shuffle", at, [&](const unsigned long long* slots) {
    T out = value;
    if (source >= 0 && source < 32) std::memcpy(&out, &slots[source], sizeof(T));
    return out;
  });
}

// The first lane of the caller's `width`-lane segment (width: a power of 2 <= 32).
inline int segment(int width) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    fail("shuffle width must be a power of 2 in [1, 32], got " + std::to_string(width));
  return lane() & ~(width - 1);
}

inline unsigned ballot(unsigned mask, int predicate, const std::source_location& at) {
  require_full_warp(mask, "a vote");
  return warp_collective(predicate != 0, "a vote", at, [](const unsigned long long* s) {
    unsigned bits = 0;
    for (int i = 0; i < 32; ++i) bits |= static_cast<unsigned>(s[i] != 0) << i;
    return bits;
  });
}

// Kernels by name expression (GPUNN_EXPORT), each behind a launcher that unpacks
// cuLaunchKernel-style arguments: args[i] points at the i-th argument's value.
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
  registry()[name] = [fn](void** args) { call(fn, args, std::index_sequence_for<A...>{}); };
  return true;
}

}  // namespace gpunn_emu

#define threadIdx (::gpunn_emu::self().thread)
#define blockIdx (::gpunn_emu::launch()->block_idx)
#define blockDim (::gpunn_emu::launch()->block_dim)
#define gridDim (::gpunn_emu::launch()->grid_dim)

// The trailing std::source_location parameters record the caller's line.
using gpunn_emu_site = std::source_location;
#define GPUNN_EMU_SITE gpunn_emu_site at = gpunn_emu_site::current()

inline void __syncthreads(GPUNN_EMU_SITE) { gpunn_emu::block_barrier(at); }
inline void __syncwarp(unsigned mask = 0xffffffffu, GPUNN_EMU_SITE) {
  gpunn_emu::require_full_warp(mask, "__syncwarp()");
  gpunn_emu::warp_barrier("__syncwarp()", at);
}

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32, GPUNN_EMU_SITE) {
  const int base = gpunn_emu::segment(width);
  return gpunn_emu::shuffle(mask, v, base + (src & (width - 1)), at);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32,
                         GPUNN_EMU_SITE) {
  const int base = gpunn_emu::segment(width), lane = gpunn_emu::lane();
  const int src = lane ^ lane_mask;
  return gpunn_emu::shuffle(mask, v, (src & ~(width - 1)) == base ? src : lane, at);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32,
                          GPUNN_EMU_SITE) {
  const int base = gpunn_emu::segment(width), lane = gpunn_emu::lane();
  const int src = lane + static_cast<int>(delta);
  return gpunn_emu::shuffle(mask, v, src < base + width ? src : lane, at);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32,
                        GPUNN_EMU_SITE) {
  const int base = gpunn_emu::segment(width), lane = gpunn_emu::lane();
  const int src = lane - static_cast<int>(delta);
  return gpunn_emu::shuffle(mask, v, src >= base ? src : lane, at);
}
inline unsigned __ballot_sync(unsigned mask, int p, GPUNN_EMU_SITE) {
  return gpunn_emu::ballot(mask, p, at);
}
inline int __any_sync(unsigned mask, int p, GPUNN_EMU_SITE) {
  return gpunn_emu::ballot(mask, p, at) != 0;
}
inline int __all_sync(unsigned mask, int p, GPUNN_EMU_SITE) {
  return gpunn_emu::ballot(mask, p, at) == 0xffffffffu;
}

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

// CUDA device functions the host library lacks (fast-math ones computed exactly).
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

// Bit casts.
template <typename To, typename From> inline To gpunn_emu_bits(From from) {
  static_assert(sizeof(To) == sizeof(From));
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}
inline unsigned __float_as_uint(float f) { return gpunn_emu_bits<unsigned>(f); }
inline int __float_as_int(float f) { return gpunn_emu_bits<int>(f); }
inline float __uint_as_float(unsigned u) { return gpunn_emu_bits<float>(u); }
inline float __int_as_float(int i) { return gpunn_emu_bits<float>(i); }
inline long long __double_as_longlong(double d) { return gpunn_emu_bits<long long>(d); }
inline double __longlong_as_double(long long i) { return gpunn_emu_bits<double>(i); }
using std::isfinite;
using std::isinf;
using std::isnan;

namespace gpunn_emu {

constexpr std::size_t STACK_BYTES = 64 << 10;

// The stack of thread `t`: mapped on first use and reused by every later launch, with
// a no-access page below it, so an overflow crashes instead of corrupting a neighbour.
inline char* stack(std::size_t t) {
  static std::vector<char*> pool;
  static const std::size_t guard = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  while (pool.size() <= t) {
    void* p = mmap(nullptr, guard + STACK_BYTES, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED || mprotect(p, guard, PROT_NONE) != 0) return nullptr;
    pool.push_back(static_cast<char*>(p) + guard);
  }
  return pool[t];
}

inline void fiber_main() {
  Launch& l = *launch();
  try {
    l.body();
  } catch (const std::exception& e) {
    if (l.error.empty()) l.error = l.name + ": " + e.what();
  } catch (...) {
    if (l.error.empty()) l.error = l.name + ": an unknown exception";
  }
  l.current->done = true;
  ++progress();
}  // returns to the scheduler through uc_link

// Runs one block: every fiber from the start, round-robin between barriers.
inline void run_block(Launch& l) {
  for (std::size_t t = 0; t < l.fibers.size(); ++t) {
    Fiber& f = l.fibers[t];
    f = Fiber{};
    f.thread = {static_cast<unsigned>(t), 0, 0};
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = stack(t);
    f.context.uc_stack.ss_size = STACK_BYTES;
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
      for (const Fiber& f : l.fibers) block |= !f.done && f.waiting == Wait::block;
      l.error = l.name + ": " + (block ? "__syncthreads()" : "a warp primitive") +
                " that some threads of the " + (block ? "block" : "warp") +
                " never reach (they returned or took another branch), in block " +
                std::to_string(l.block_idx.x);
    }
  }
}

}  // namespace gpunn_emu

// Runs kernel `name` on `grid` blocks of `block` threads; args[i] points at the i-th
// argument's value (as for cuLaunchKernel). 0 on success, else 1 and a message in err.
extern "C" int gpunn_emu_launch(const char* name, unsigned grid, unsigned block,
                                void** args, char* err, std::size_t err_len) {
  using namespace gpunn_emu;
  static std::mutex one_at_a_time;  // __shared__ statics and the scheduler are global
  std::lock_guard<std::mutex> lock(one_at_a_time);
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
  if (stack(block - 1) == nullptr)
    return write_error(std::string(name) + ": cannot map the fibers' stacks");
  Launch l;
  l.name = name;
  l.fibers.resize(block);
  l.warps.assign(block / 32, Barrier{});
  l.slots.assign(block, 0);
  l.block_dim = {block, 1, 1};
  l.grid_dim = {grid, 1, 1};
  Launcher& run = found->second;
  l.body = [&run, args] { run(args); };
  launch() = &l;
  for (unsigned b = 0; b < grid && l.error.empty(); ++b) {
    l.block_idx = {b, 0, 0};
    run_block(l);
  }
  launch() = nullptr;
  return l.error.empty() ? 0 : write_error(l.error);
}

// The registered names, one per line, into buf (truncated to len); returns the length
// of the whole list, so a caller can size buf with a first call of len 0.
extern "C" int gpunn_emu_names(char* buf, std::size_t len) {
  std::string all;
  for (const auto& entry : gpunn_emu::registry()) all += entry.first + "\n";
  if (len > 0) std::snprintf(buf, len, "%s", all.c_str());
  return static_cast<int>(all.size());
}
