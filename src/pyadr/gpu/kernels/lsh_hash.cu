// LSH keys from projections proj (R, H) = S (R, L) . planes (L, H) (the projection itself is a
// cuBLAS GEMM). One thread per row.
//   sign_keys: key bit h = [proj[r, h] > 0] (strictly greater), H <= 64.
//   l2_keys:   q[r, h] = floor((proj[r, h] + offsets[h]) / width) as int64, plus a 64-bit digest of
//              the tuple (the CPU core's tuple_digest) used as the sort key; *err |= 1 when a value
//              is not finite or does not fit in int64 (integer atomicOr: deterministic).
typedef long long i64;
typedef unsigned long long u64;

__device__ __forceinline__ float pyadr_floor(float v) { return floorf(v); }
__device__ __forceinline__ double pyadr_floor(double v) { return floor(v); }
__device__ __forceinline__ float pyadr_fabs(float v) { return fabsf(v); }
__device__ __forceinline__ double pyadr_fabs(double v) { return fabs(v); }

__device__ __forceinline__ u64 pyadr_mix64(u64 x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

template <class T>
__global__ void sign_keys(const T* __restrict__ proj, u64* __restrict__ keys, i64 R, int H) {
  for (i64 r = blockIdx.x * (i64)blockDim.x + threadIdx.x; r < R; r += (i64)gridDim.x * blockDim.x) {
    const T* p = proj + r * H;
    u64 key = 0;
    for (int h = 0; h < H; ++h) key |= (u64)(p[h] > T(0)) << h;
    keys[r] = key;
  }
}

template <class T>
__global__ void l2_keys(const T* __restrict__ proj, const T* __restrict__ offsets, T width, i64* __restrict__ q,
                        u64* __restrict__ digest, int* __restrict__ err, i64 R, int H) {
  for (i64 r = blockIdx.x * (i64)blockDim.x + threadIdx.x; r < R; r += (i64)gridDim.x * blockDim.x) {
    const T* p = proj + r * H;
    u64 d = 0x9e3779b97f4a7c15ULL;
    bool bad = false;
    for (int h = 0; h < H; ++h) {
      T v = pyadr_floor((p[h] + offsets[h]) / width);
      if (!(pyadr_fabs(v) < T(9.0e18))) {
        bad = true;
        v = T(0);
      }
      const i64 qi = (i64)v;
      q[r * H + h] = qi;
      d = pyadr_mix64(d ^ (u64)qi);
    }
    digest[r] = d;
    if (bad) atomicOr(err, 1);
  }
}
