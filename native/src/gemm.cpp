// One GEMM interface for the whole core: C(m x n) = alpha * op(A) * op(B) + beta * C, row-major.
//
// Built-in: BLIS-style blocking (KC x NC panels of B packed once per block, A read in place)
// around an MR x NR register-blocked micro-kernel written with GCC vector
// extensions and compiled for AVX-512, AVX2+FMA and a baseline; the CPU picks at run time.
// It parallelises over row panels with OpenMP only when called outside a parallel region, so
// kernels may call it from inside their own OpenMP loops (one level of parallelism per phase).
// BLAS (SciPy's, injected by the Python build) is used only when selected and never inside a
// parallel region.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gemm.hpp"

namespace pyadr {
namespace {

std::atomic<sgemm_fn> g_sgemm{nullptr};
std::atomic<dgemm_fn> g_dgemm{nullptr};
std::atomic<int> g_provider{static_cast<int>(GemmProvider::Builtin)};

constexpr int64_t KC = 256;
constexpr int64_t NC = 512;

template <class T>
struct PanelArgs {
  int64_t i0, i1;       // rows of C this call computes
  int64_t kc, nc;       // depth of this block, columns of this block
  const T* A;           // A(i, p) = transA ? A[p * lda + i] : A[i * lda + p], offset to (0, pc)
  int64_t lda;
  bool transA;
  const T* Bp;          // B block as ceil(nc / NR) panels of (kc x NR): Bp + (j / NR) * bpanel
  int64_t bpanel, brow; // panel j's row p at + p * brow (packed: kc * NR and NR; in place: NR, ldb)
  T* C;                 // offset to (0, jc)
  int64_t ldc;
  T alpha, beta;
};

// MR x NR micro-kernel: A read in place (TA: A(i, p) = A[p * lda + i], else A[i * lda + p]),
// B from a packed panel (kc x NR). n is small in convolutions (M output channels), so packing
// A would cost as much as the arithmetic it feeds.
template <class T, int MR, int NRV, int VL, bool TA>
PYADR_INLINE void micro_kernel(int64_t kc, const T* PYADR_RESTRICT A, int64_t lda, const T* PYADR_RESTRICT Bp,
                               int64_t brow, T* C, int64_t ldc, T alpha, T beta, int64_t mr, int64_t nr) {
  typedef T V __attribute__((vector_size(VL * sizeof(T))));
  constexpr int NR = NRV * VL;
  V acc[MR][NRV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int v = 0; v < NRV; ++v) acc[i][v] = V{};
  const T* rows[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) rows[i] = TA ? A + i : A + i * lda;
  for (int64_t p = 0; p < kc; ++p) {
    V bv[NRV];
#pragma GCC unroll 4
    for (int v = 0; v < NRV; ++v) std::memcpy(&bv[v], Bp + p * brow + v * VL, sizeof(V));
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const T a = TA ? rows[0][p * lda + i] : rows[i][p];
#pragma GCC unroll 4
      for (int v = 0; v < NRV; ++v) acc[i][v] += a * bv[v];
    }
  }
  if (mr == MR && nr == NR) {
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
      for (int v = 0; v < NRV; ++v) {
        T* c = C + i * ldc + v * VL;
        V out = alpha * acc[i][v];
        if (beta != T(0)) {
          V old;
          std::memcpy(&old, c, sizeof(V));
          out += beta * old;
        }
        std::memcpy(c, &out, sizeof(V));
      }
  } else {
    T tile[MR * NR];
    for (int i = 0; i < MR; ++i)
      for (int v = 0; v < NRV; ++v) std::memcpy(tile + i * NR + v * VL, &acc[i][v], sizeof(V));
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t j = 0; j < nr; ++j) {
        T out = alpha * tile[i * NR + j];
        if (beta != T(0)) out += beta * C[i * ldc + j];
        C[i * ldc + j] = out;
      }
  }
}

// Rows of at most this many bytes are read in place by the kernels (B's rows, transposed A's):
// conv layers' M output channels or L-long sub-vectors. Wider ones are packed.
constexpr int64_t kInPlaceRow = 512;

// Rows [i0, i1) of one (pc, jc) block: each MR-row panel against every NR panel of B. A panel
// with fewer than MR rows, or of a wide transposed A, is copied (zero-padded) into a (kc x MR) buffer.
template <class T, int MR, int NRV, int VL>
PYADR_INLINE void row_panels(const PanelArgs<T>& a) {
  constexpr int NR = NRV * VL;
  // A transposed A is packed when its rows are wide (its MR values per p sit one lda apart: a
  // TLB miss each); narrow ones (the reuse weight gradient's centroids) are read in place.
  const bool wide_transA = a.transA && a.lda * int64_t(sizeof(T)) > kInPlaceRow;
  for (int64_t i = a.i0; i < a.i1; i += MR) {
    const int64_t mr = std::min<int64_t>(MR, a.i1 - i);
    alignas(64) T edge[KC * MR];
    const T* Ai = a.transA ? a.A + i : a.A + i * a.lda;
    const bool packed = mr < MR || wide_transA;
    if (packed) {
      if (a.transA) {
        for (int64_t p = 0; p < a.kc; ++p)
          for (int64_t r = 0; r < MR; ++r) edge[p * MR + r] = r < mr ? Ai[p * a.lda + r] : T(0);
      } else {
        for (int64_t r = 0; r < MR; ++r)
          for (int64_t p = 0; p < a.kc; ++p) edge[p * MR + r] = r < mr ? Ai[r * a.lda + p] : T(0);
      }
    }
    for (int64_t j = 0; j < a.nc; j += NR) {
      const int64_t nr = std::min<int64_t>(NR, a.nc - j);
      const T* Bj = a.Bp + (j / NR) * a.bpanel;
      T* Cij = a.C + i * a.ldc + j;
      if (packed)
        micro_kernel<T, MR, NRV, VL, true>(a.kc, edge, MR, Bj, a.brow, Cij, a.ldc, a.alpha, a.beta, mr, nr);
      else if (a.transA)
        micro_kernel<T, MR, NRV, VL, true>(a.kc, Ai, a.lda, Bj, a.brow, Cij, a.ldc, a.alpha, a.beta, mr, nr);
      else
        micro_kernel<T, MR, NRV, VL, false>(a.kc, Ai, a.lda, Bj, a.brow, Cij, a.ldc, a.alpha, a.beta, mr, nr);
    }
  }
}

template <class T>
struct Kernel {
  int MR, NR;
  void (*run)(const PanelArgs<T>&);
};

#define PYADR_X86_AVX512 "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi2"
#define PYADR_X86_AVX2 "avx2,fma,bmi2"

#if PYADR_HAVE_DISPATCH
__attribute__((target(PYADR_X86_AVX512))) void rows_f32_avx512(const PanelArgs<float>& a) {
  row_panels<float, 12, 2, 16>(a);
}
__attribute__((target(PYADR_X86_AVX512))) void rows_f64_avx512(const PanelArgs<double>& a) {
  row_panels<double, 12, 2, 8>(a);
}
// 8 x 48 (24 accumulators, 3 B vectors and 8 broadcasts per step, 11 loads per 24 FMAs against
// 12 x 32's 14): for gemm_panels, whose m is a layer's output channels (64, 128: multiples of 8,
// where 12-row panels leave a third of the last one empty) and whose n (K) is wide.
__attribute__((target(PYADR_X86_AVX512))) void rows_f32_avx512_wide(const PanelArgs<float>& a) {
  row_panels<float, 8, 3, 16>(a);
}
__attribute__((target(PYADR_X86_AVX512))) void rows_f64_avx512_wide(const PanelArgs<double>& a) {
  row_panels<double, 8, 3, 8>(a);
}
__attribute__((target(PYADR_X86_AVX2))) void rows_f32_avx2(const PanelArgs<float>& a) {
  row_panels<float, 6, 2, 8>(a);
}
__attribute__((target(PYADR_X86_AVX2))) void rows_f64_avx2(const PanelArgs<double>& a) {
  row_panels<double, 6, 2, 4>(a);
}
#endif
void rows_f32_base(const PanelArgs<float>& a) { row_panels<float, 4, 2, 4>(a); }
void rows_f64_base(const PanelArgs<double>& a) { row_panels<double, 4, 2, 2>(a); }

int cpu_level() {
#if PYADR_HAVE_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma"))
    return 2;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
  return 0;
}

// The CPU's level, lowered by PYADR_SIMD=avx2|baseline (testing the other kernels on one machine;
// a level above the CPU's is clamped to it, simd_level() says which ran). Only the GEMM kernels
// follow it: the row operations dispatch through target_clones on the CPU alone. An unknown value
// is ignored with a warning on stderr (this runs lazily, possibly inside a parallel region or
// behind a noexcept C entry point, so it cannot throw); simd_level() then names it too.
bool g_bad_simd_env = false;

int detect_level() {
  const int cpu = cpu_level();
  const char* env = std::getenv("PYADR_SIMD");
  if (!env || !*env) return cpu;
  const std::string want(env);
  int lv;
  if (want == "avx512") lv = 2;
  else if (want == "avx2") lv = 1;
  else if (want == "baseline") lv = 0;
  else {
    std::fprintf(stderr, "pyadr: PYADR_SIMD='%s' ignored: use avx512, avx2 or baseline (or unset)\n", env);
    g_bad_simd_env = true;
    return cpu;
  }
  return std::min(lv, cpu);
}

int level() {
  static const int lv = detect_level();
  return lv;
}

template <class T>
Kernel<T> kernel();
template <>
Kernel<float> kernel<float>() {
#if PYADR_HAVE_DISPATCH
  if (level() == 2) return {12, 32, rows_f32_avx512};
  if (level() == 1) return {6, 16, rows_f32_avx2};
#endif
  return {4, 8, rows_f32_base};
}
template <>
Kernel<double> kernel<double>() {
#if PYADR_HAVE_DISPATCH
  if (level() == 2) return {12, 16, rows_f64_avx512};
  if (level() == 1) return {6, 8, rows_f64_avx2};
#endif
  return {4, 4, rows_f64_base};
}

// The kernel of gemm_panels: 8 x 48 on AVX-512, else the default's.
template <class T>
Kernel<T> wide_kernel();
template <>
Kernel<float> wide_kernel<float>() {
#if PYADR_HAVE_DISPATCH
  if (level() == 2) return {8, 48, rows_f32_avx512_wide};
#endif
  return kernel<float>();
}
template <>
Kernel<double> wide_kernel<double>() {
#if PYADR_HAVE_DISPATCH
  if (level() == 2) return {8, 24, rows_f64_avx512_wide};
#endif
  return kernel<double>();
}

// Packs B(pc:pc+kc, jc:jc+nc) into NR-wide panels, zero-padded. B(p, j) = B[p * rsB + j * csB].
template <class T>
void pack_B(const T* B, int64_t rsB, int64_t csB, int64_t kc, int64_t nc, int NR, T* out) {
  for (int64_t j0 = 0; j0 < nc; j0 += NR) {
    const int64_t nr = std::min<int64_t>(NR, nc - j0);
    T* panel = out + (j0 / NR) * kc * NR;
    if (csB == 1) {
      for (int64_t p = 0; p < kc; ++p) {
        const T* src = B + p * rsB + j0;
        T* dst = panel + p * NR;
        int64_t j = 0;
        for (; j < nr; ++j) dst[j] = src[j];
        for (; j < NR; ++j) dst[j] = T(0);
      }
    } else {
      for (int64_t j = 0; j < NR; ++j) {
        if (j < nr) {
          const T* src = B + (j0 + j) * csB;
          for (int64_t p = 0; p < kc; ++p) panel[p * NR + j] = src[p * rsB];
        } else {
          for (int64_t p = 0; p < kc; ++p) panel[p * NR + j] = T(0);
        }
      }
    }
  }
}

// B laid out for the kernel: its panels' start, the distance between panels and between rows.
template <class T>
struct PanelB {
  const T* data;
  int64_t panel, row;
};

// The block loop shared by gemm_builtin and gemm_packed: `panel(jc, pc, kc, nc)` returns the
// B block (ceil(nc / NR) panels of kc x NR) for columns [jc, jc + nc) and depth [pc, pc + kc).
template <class T, class PanelFn>
void run_blocks(const Kernel<T>& ker, bool ta, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
                T beta, T* C, int64_t ldc, PanelFn panel) {
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
    return;
  }
  const int64_t csA = ta ? lda : 1;
  const bool top = !detail::in_parallel();
  const int64_t panels = (m + ker.MR - 1) / ker.MR;
  const int nthreads = (top && m * n * k > (int64_t(1) << 18)) ? detail::threads_for(panels) : 1;
  const int64_t ncb = NC / ker.NR * ker.NR;  // column blocks of whole panels (NC for NR = 2^i)
  for (int64_t jc = 0; jc < n; jc += ncb) {
    const int64_t nc = std::min<int64_t>(ncb, n - jc);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min<int64_t>(KC, k - pc);
      const PanelB<T> Bp = panel(jc, pc, kc, nc);
      PanelArgs<T> args{0,      m,   kc,          nc,   A + pc * csA, lda, ta, Bp.data, Bp.panel, Bp.row,
                        C + jc, ldc, alpha, pc == 0 ? beta : T(1)};
      if (nthreads == 1) {
        ker.run(args);
      } else {
#ifdef _OPENMP
#pragma omp parallel for num_threads(nthreads) schedule(static)
#endif
        for (int t = 0; t < nthreads; ++t) {
          PanelArgs<T> mine = args;
          mine.i0 = (panels * t / nthreads) * ker.MR;
          mine.i1 = std::min<int64_t>(m, (panels * (t + 1) / nthreads) * ker.MR);
          if (mine.i0 < mine.i1) ker.run(mine);
        }
      }
    }
  }
}

template <class T>
void gemm_builtin(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
                  const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const Kernel<T> ker = kernel<T>();
  const int64_t rsB = tb ? 1 : ldb, csB = tb ? ldb : 1;
  // A narrow row-major B (n a multiple of NR, rows of at most kInPlaceRow bytes: conv layers'
  // M output channels) is read in place: its rows are already NR-wide panels side by side, and
  // packing it (the whole of Gamma in the reuse weight gradient) would cost a full copy.
  if (!tb && n % ker.NR == 0 && ldb * int64_t(sizeof(T)) <= kInPlaceRow) {
    run_blocks(ker, ta, m, n, k, alpha, A, lda, beta, C, ldc, [&](int64_t jc, int64_t pc, int64_t, int64_t) {
      return PanelB<T>{B + pc * ldb + jc, ker.NR, ldb};
    });
    return;
  }
  static thread_local detail::Buffer<T> packed;
  packed.resize(static_cast<size_t>(KC * (NC + ker.NR)));
  T* Bp = packed.data();
  run_blocks(ker, ta, m, n, k, alpha, A, lda, beta, C, ldc, [&](int64_t jc, int64_t pc, int64_t kc, int64_t nc) {
    pack_B(B + pc * rsB + jc * csB, rsB, csB, kc, nc, ker.NR, Bp);
    return PanelB<T>{Bp, kc * ker.NR, ker.NR};
  });
}

template <class T, class Fn>
bool gemm_blas(Fn fn, bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda,
               const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const int64_t lim = 0x7fffffff;
  if (!fn || detail::in_parallel() || m > lim || n > lim || k > lim || lda > lim || ldb > lim || ldc > lim)
    return false;
  // Row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T.
  const char tA = tb ? 'T' : 'N', tB = ta ? 'T' : 'N';
  const int M = static_cast<int>(n), N = static_cast<int>(m), Kk = static_cast<int>(k);
  const int LDA = static_cast<int>(std::max<int64_t>(ldb, 1)), LDB = static_cast<int>(std::max<int64_t>(lda, 1));
  const int LDC = static_cast<int>(std::max<int64_t>(ldc, 1));
  fn(&tA, &tB, &M, &N, &Kk, &alpha, B, &LDA, A, &LDB, &beta, C, &LDC);
  return true;
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (gemm_provider() == GemmProvider::Blas && k > 0 &&
      gemm_blas(g_sgemm.load(), ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
    return;
  gemm_builtin(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* A,
                  int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (gemm_provider() == GemmProvider::Blas && k > 0 &&
      gemm_blas(g_dgemm.load(), ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc))
    return;
  gemm_builtin(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

namespace detail {

// Blocks stored in run_blocks' order (jc outer, pc inner), each ceil(nc / NR) * NR * kc values.
template <class T>
PackedB<T>::PackedB(bool transB, int64_t k, int64_t n, const T* B, int64_t ldb)
    : tb_(transB), k_(k), n_(n), B_(B), ldb_(ldb), NR_(kernel<T>().NR) {
  const int64_t rsB = tb_ ? 1 : ldb, csB = tb_ ? ldb : 1;
  const int64_t np = (n + NR_ - 1) / NR_ * NR_;
  data_.resize(static_cast<size_t>(np * std::max<int64_t>(k, 1)));
  T* out = data_.data();
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min<int64_t>(NC, n - jc);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min<int64_t>(KC, k - pc);
      offsets_.push_back(out - data_.data());
      pack_B(B + pc * rsB + jc * csB, rsB, csB, kc, nc, NR_, out);
      out += (nc + NR_ - 1) / NR_ * NR_ * kc;
    }
  }
}

template <class T>
void gemm_packed(bool transA, int64_t m, T alpha, const T* A, int64_t lda, const PackedB<T>& B, T beta, T* C,
                 int64_t ldc) {
  const int64_t n = B.n_, k = B.k_;
  if (m <= 0 || n <= 0) return;
  if (gemm_provider() == GemmProvider::Blas && !in_parallel()) {
    gemm<T>(transA, B.tb_, m, n, k, alpha, A, lda, B.B_, B.ldb_, beta, C, ldc);
    return;
  }
  const int64_t kblocks = (k + KC - 1) / KC;
  run_blocks(kernel<T>(), transA, m, n, k, alpha, A, lda, beta, C, ldc,
             [&](int64_t jc, int64_t pc, int64_t kc, int64_t) {
               return PanelB<T>{B.data_.data() + B.offsets_[(jc / NC) * kblocks + pc / KC], kc * B.NR_, B.NR_};
             });
}

template <class T>
int gemm_panel_width() {
  return wide_kernel<T>().NR;
}

template <class T>
void gemm_panels(bool transA, int64_t m, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, const T* Bp,
                 int64_t panel, T beta, T* C, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  const Kernel<T> ker = wide_kernel<T>();
  run_blocks(ker, transA, m, n, k, alpha, A, lda, beta, C, ldc, [&](int64_t jc, int64_t pc, int64_t, int64_t) {
    return PanelB<T>{Bp + (jc / ker.NR) * panel + pc * ker.NR, panel, ker.NR};
  });
}

template int gemm_panel_width<float>();
template int gemm_panel_width<double>();
template void gemm_panels<float>(bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                 int64_t, float, float*, int64_t);
template void gemm_panels<double>(bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                                  int64_t, double, double*, int64_t);
template class PackedB<float>;
template class PackedB<double>;
template void gemm_packed<float>(bool, int64_t, float, const float*, int64_t, const PackedB<float>&, float, float*,
                                 int64_t);
template void gemm_packed<double>(bool, int64_t, double, const double*, int64_t, const PackedB<double>&, double,
                                  double*, int64_t);

}  // namespace detail

void set_blas(sgemm_fn s, dgemm_fn d) {
  g_sgemm.store(s);
  g_dgemm.store(d);
  if (!s || !d) g_provider.store(static_cast<int>(GemmProvider::Builtin));
}

bool blas_available() { return g_sgemm.load() != nullptr && g_dgemm.load() != nullptr; }

void set_gemm_provider(GemmProvider p) {
  if (p == GemmProvider::Blas && !blas_available())
    throw Error("gemm provider 'blas' requested but no BLAS was injected (is SciPy installed?)");
  g_provider.store(static_cast<int>(p));
}

GemmProvider gemm_provider() { return static_cast<GemmProvider>(g_provider.load()); }

const char* simd_level() {
  const int lv = level();
  if (g_bad_simd_env) return lv == 2 ? "avx512 (PYADR_SIMD ignored)" : lv == 1 ? "avx2 (PYADR_SIMD ignored)"
                                                                         : "baseline (PYADR_SIMD ignored)";
  switch (lv) {
    case 2: return "avx512";
    case 1: return "avx2";
    default: return "baseline";
  }
}

}  // namespace pyadr
