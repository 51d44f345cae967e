// Deep-reuse convolution (DESIGN.md "Semantics"), forward and backward.
//
// Forward, one fused pass per sub-matrix j (threads own whole blocks, rows visited in order, so
// ids and sums do not depend on the thread count):
//   gather S (R, Lj) from the padded input via column runs  ->  project on planes  ->  keys
//   -> ClusterTable id (first occurrence)  ->  centroid sums += S[r]
// The im2col matrix is never built. With order "hwc" and L | C every sub-vector is a slice of one
// pixel's channel vector, so its key is computed once per input pixel instead of once per row
// (kh*kw times less hashing), the keys are numbered once per call, and block j's id of a row is
// remap_j[number of its slice] (an array, no per-block hash table). A cluster's first row is
// copied into its sum, later rows added (ids are numbered by first occurrence: no zero-fill).
// With stride 1 and scope batch the pixel path takes only ids and counts from that pass; the
// sums come from sliding windows over the slices (centroid_windows.cpp: 3.2x fewer additions on
// a 5x5 kernel).
// Then Yc_j (nc_j, M) = centroids_j . Wm_j and y[n] = b + sum_j Yc_j[id_j(n)], blocks taken in
// groups whose Yc tables fit kTableBudget (rows read them at random).
// Backward: Gamma_j = cluster sums of dY; dWm_j = centroids_j^T Gamma_j;
// D_j = (Gamma_j / |c|) Wm_j^T; dX[n, block j] = D_j[id_j(n)], scattered back (col2im) per image,
// block groups in turn as in the reconstruction, each image unpadded to NCHW once complete.
// ReuseParams::exact: a product named there ignores the clusters and is computed by the exact
// path (conv2d_forward_exact; conv2d_backward_exact from the kept input and Wm's weights).
// Steps: forward = number_pixel_slices (pixel path) -> group_blocks (BlockGrouper per block)
// -> products_to_output (block_products + reconstruct); backward = rows_from_nchw ->
// block_gradients per block -> scatter_input_grad. The pieces shared with the inference cache
// (tiles of sub-vectors, hashing, key ids, products, reconstruction) are in reuse_steps.hpp.
#include <algorithm>
#include <atomic>
#include <string>

#include "centroid_windows.hpp"
#include "cluster.hpp"
#include "conv_common.hpp"
#include "layout.hpp"
#include "lsh_hash.hpp"
#include "reuse_steps.hpp"
#include "rowops.hpp"
#include "pyadr/params.hpp"

namespace pyadr {
namespace {

using detail::Buffer;
using detail::Run;

using detail::Blocks;
using detail::kTileRows;

// Blocks that share one sweep of the input (see conv2d_forward_reuse).
constexpr int64_t kChunkBlocks = 4;

// Runs `body(j)` for every block: blocks in parallel when there are enough of them; otherwise
// serially, leaving the threads to the GEMMs inside.
template <class F>
void for_each_block(int64_t nb, F body) {
  const int nt = detail::threads_for(nb);
  if (nt > 1 && nb >= num_threads()) {
    detail::ParallelErrors errors;
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
#endif
    for (int64_t j = 0; j < nb; ++j) errors.run([&] { body(j); });
    errors.rethrow();
  } else {
    for (int64_t j = 0; j < nb; ++j) body(j);
  }
}

// Keys of every L-long slice of the padded NHWC input (the "hwc, L | C" fast path): one 64-bit
// key per slice (sign bits or packed l2 values), or with `tuples` the full l2 tuples (count, H).
// ok is false when some l2 value does not fit the packed key; the caller then asks for tuples.
struct PixelKeys {
  std::vector<uint64_t> keys;  // (count)
  std::vector<int64_t> q;      // (count, H), tuples only
  bool ok = true;
};

template <class T>
PixelKeys pixel_keys(const T* xp, int64_t count, int L, const ReuseParams<T>& p, const T* Pp, int HB, bool tuples) {
  PixelKeys keys;
  if (tuples) keys.q.resize(static_cast<size_t>(count) * p.H);
  else keys.keys.resize(count);
  const int64_t ntiles = (count + kTileRows - 1) / kTileRows;
  detail::ParallelErrors errors;
  std::atomic<bool> overflow{false};
#ifdef _OPENMP
#pragma omp parallel num_threads(detail::threads_for(ntiles))
#endif
  {
    Buffer<T> proj;
    errors.run([&] { proj.resize(kTileRows * HB); });
    const T* rows[kTileRows];
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t t = 0; t < ntiles; ++t) {
      const int64_t r0 = t * kTileRows, len = std::min(kTileRows, count - r0);
      errors.run([&] {
        for (int64_t r = 0; r < len; ++r) rows[r] = xp + (r0 + r) * L;
        if (!detail::hash_tile(rows, len, L, Pp, HB, p, tuples, proj.data(),
                               tuples ? nullptr : keys.keys.data() + r0, tuples ? keys.q.data() + r0 * p.H : nullptr))
          overflow = true;
      });
    }
  }
  errors.rethrow();
  keys.ok = !overflow;
  return keys;
}

// Read-only inputs shared by the BlockGroupers of one forward call.
template <class T>
struct GroupInputs {
  const ConvGeom& g;
  const detail::Layout& lay;
  const Blocks& bl;
  const ReuseParams<T>& p;
  const T* xp;
  const T* Pp;  // planes padded to (L, HB)
  int HB;
  bool pixel_path;
  // Pixel path: the keys of all slices numbered once, by first occurrence, in one table
  // (pixel_gid, count); blocks then map these numbers to their own ids through an array.
  const int32_t* pixel_gid;
  int32_t n_gid;
  int64_t group_rows;
};

// Hashes, groups and sums the sub-vectors of one block j, a tile of rows at a time, in row order
// (ids numbered by first occurrence). l2 keys are packed into 64 bits when every quantised value
// fits (64/H bits each); after an overflow the block is marked and must be redone with tuples.
template <class T>
class BlockGrouper {
 public:
  // sums: false when the centroid sums come from elsewhere (window_centroid_sums): ids and counts only.
  BlockGrouper(const GroupInputs<T>& in, int64_t j, bool tuples, ReuseState<T>& st, bool sums = true)
      : in_(in), Lj_(in.bl.len[j]), runs_(in.bl.runs[j]), tuples_(tuples), sums_(sums),
        l2_(in.p.hash == HashKind::L2), H_(in.p.H), cent_(st.centroids[j]), cnt_(st.counts[j]),
        ids_(st.ids.data() + j * in.g.N()), S_(kTileRows * Lj_),
        proj_(in.pixel_path ? 0 : kTileRows * in.HB), keys_(in.pixel_path ? 0 : kTileRows),
        q_(l2_ && !in.pixel_path ? kTileRows * H_ : 0) {  // hashing scratch: rows hashed here only
    cent_.clear();
    cnt_.clear();
    if (in.pixel_path) {
      // A block has at most n_gid clusters per scope group: reserving them saves the copies of a
      // growing vector (batch scope: all of them).
      remap_.assign(in.n_gid, -1);
      touched_.resize(static_cast<size_t>(in.n_gid) + 1);  // + 1: the loop writes one past
      cent_.reserve(static_cast<size_t>(in.n_gid) * Lj_);
      cnt_.reserve(in.n_gid);
    } else {
      table_.reset(in.group_rows, l2_ ? 64 : H_, tuples ? H_ : 0);
    }
  }

  bool overflowed() const { return overflow_; }

  // Rows [n0, n0 + len) whose bases in xp are base_off[r] (row_base); on the pixel path
  // base_slice[r] = base_off[r] / L.
  void tile(int64_t n0, int64_t len, const int64_t* base_off, const int64_t* base_slice) {
    if (overflow_) return;
    if (!sums_) {  // the pixel path (keys known per slice): ids and counts only
      tile_pixel_ids(n0, len, base_slice);
      return;
    }
    detail::tile_subvectors(in_.xp, base_off, len, runs_, Lj_, S_.data(), rowp_);
    const int32_t first_new = nc_;
    if (in_.pixel_path) {
      tile_pixel_ids(n0, len, base_slice);
    } else if (!tile_hashed_ids(n0, len)) {
      overflow_ = true;
      return;
    }
    detail::scatter_first_ptrs(cent_.data(), ids_ + n0, rowp_, len, Lj_, first_new);
  }

  // Sums -> means (without sums_: sized only, the caller fills and scales them).
  void finish() {
    cent_.resize(static_cast<size_t>(nc_) * Lj_);  // the pixel path sized them ahead
    cnt_.resize(nc_);
    if (sums_) detail::scale_rows(cent_.data(), cnt_.data(), nc_, Lj_);
  }

  // Pixel path, scope batch: the slice key number of each cluster, in id order (nc of them).
  const int32_t* cluster_gids() const { return touched_.data(); }

 private:
  // Pixel path: block id = remap_[global number of the row's slice], assigned at first occurrence.
  // Counts and sums are sized for the tile's worst case first, so the loop has no branch on
  // "new cluster" (taken for a fifth of the rows at rc 0.2: mispredicted).
  void tile_pixel_ids(int64_t n0, int64_t len, const int64_t* base_slice) {
    const int64_t slice0 = runs_[0].src / in_.p.L;
    const bool batch = in_.group_rows == in_.g.N();  // then at most n_gid clusters in all
    size_t need = static_cast<size_t>(nc_) + len;
    if (batch) need = std::min(need, static_cast<size_t>(in_.n_gid));
    if (cnt_.size() < need) {
      size_t want = std::max(need, cnt_.size() + cnt_.size() / 2);
      if (batch) want = std::min(want, static_cast<size_t>(in_.n_gid));
      cnt_.resize(want, 0);
      cent_.resize(want * Lj_);
    }
    int32_t* remap = remap_.data();
    int32_t* touched = touched_.data();
    int32_t* cnt = cnt_.data();
    const int32_t* pixel_gid = in_.pixel_gid + slice0;
    int32_t nc = nc_;
    for (int64_t r = 0; r < len; ++r) {
      const int64_t n = n0 + r;
      if (n == next_group_) {
        for (int32_t t = 0; t < ntouched_; ++t) remap[touched[t]] = -1;
        ntouched_ = 0;
        next_group_ += in_.group_rows;
      }
      const int32_t gid = pixel_gid[base_slice[r]];
      const int32_t old = remap[gid];
      const int32_t fresh = old < 0;
      const int32_t id = fresh ? nc : old;
      remap[gid] = id;
      touched[ntouched_] = gid;
      ntouched_ += fresh;
      nc += fresh;
      ++cnt[id];
      ids_[n] = id;
    }
    nc_ = nc;
  }

  // Hashes the tile's sub-vectors and looks their keys up; false on a packed-key overflow.
  bool tile_hashed_ids(int64_t n0, int64_t len) {
    const int H = H_;
    if (!detail::hash_tile(rowp_, len, Lj_, in_.Pp, in_.HB, in_.p, tuples_, proj_.data(), keys_.data(), q_.data()))
      return false;
    for (int64_t r = 0; r < len; ++r) {
      const int64_t n = n0 + r;
      if (n == next_group_) {
        table_.clear();
        next_group_ += in_.group_rows;
      }
      const int64_t* qr = tuples_ ? q_.data() + r * H : nullptr;
      const uint64_t key = tuples_ ? detail::tuple_digest(qr, H) : keys_[r];
      const int32_t id = table_.find_or_insert(key, qr, nc_);
      if (id == nc_) new_cluster();
      ++cnt_[id];
      ids_[n] = id;
    }
    return true;
  }

  int32_t new_cluster() {
    cnt_.push_back(0);
    cent_.resize(static_cast<size_t>(nc_ + 1) * Lj_);  // uninitialised: its first member is copied in
    return nc_++;
  }

  const GroupInputs<T>& in_;
  const int64_t Lj_;
  const std::vector<Run>& runs_;
  const bool tuples_, sums_, l2_;
  const int H_;
  UninitVector<T>& cent_;
  std::vector<int32_t>& cnt_;
  int32_t* ids_;
  Buffer<T> S_, proj_;
  std::vector<uint64_t> keys_;
  std::vector<int64_t> q_;
  const T* rowp_[kTileRows];
  detail::KeyIds table_;
  std::vector<int32_t> remap_, touched_;  // pixel path: gid -> block id; gids set this scope group
  int32_t ntouched_ = 0;
  int32_t nc_ = 0;
  int64_t next_group_ = 0;  // first row of the next scope group: the table is cleared there
  bool overflow_ = false;
};

}  // namespace

template <class T>
int64_t ReuseState<T>::block_len(int64_t j) const {
  return std::min<int64_t>(L, g.K() - j * L);
}

template <class T>
double ReuseState<T>::remaining_ratio() const {
  if (nblocks == 0 || g.N() == 0) return 1.0;
  double s = 0;
  for (int64_t j = 0; j < nblocks; ++j) s += double(clusters(j)) / double(g.N());
  return s / double(nblocks);
}

template <class T>
size_t ReuseState<T>::bytes() const {
  size_t total = ids.size() * sizeof(int32_t) + (Wm.size() + x.size()) * sizeof(T);
  for (const auto& c : counts) total += c.size() * sizeof(int32_t);
  for (const auto& c : centroids) total += c.size() * sizeof(T);
  return total;
}

namespace {

// Pixel path ("hwc", L | C): the keys of every L-long slice of the padded input, numbered once
// by first occurrence (one table for the whole call, slices in order); l2 keys as full tuples
// when some value does not fit a packed key.
struct PixelIds {
  std::vector<int32_t> gid;  // (count) number of each slice's key
  int32_t n = 0;             // distinct keys
  bool tuples = false;
};

template <class T>
PixelIds number_pixel_slices(const T* xp, int64_t count, const ReuseParams<T>& p, const T* Pp, int HB) {
  const int H = p.H;
  PixelIds ids;
  PixelKeys pk = pixel_keys(xp, count, p.L, p, Pp, HB, false);
  if (!pk.ok) {
    pk = pixel_keys(xp, count, p.L, p, Pp, HB, true);
    ids.tuples = true;
  }
  ids.gid.resize(count);
  detail::ClusterTable table;
  table.reset(count, p.hash == HashKind::L2 ? 64 : H, ids.tuples ? H : 0);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t* qi = ids.tuples ? pk.q.data() + i * H : nullptr;
    const uint64_t key = ids.tuples ? detail::tuple_digest(qi, H) : pk.keys[i];
    const int32_t id = table.find_or_insert(key, qi, ids.n);
    if (id == ids.n) ++ids.n;
    ids.gid[i] = id;
  }
  return ids;
}

// Hash, group and sum every block into st (ids, counts, centroids). Blocks are grouped in
// chunks; a chunk's blocks advance together tile by tile, so a tile of input rows is read from
// cache by all of them (one sweep of the input per chunk, not per block). rbase: row_bases;
// rslice (pixel path): rbase / L.
template <class T>
void group_blocks(const GroupInputs<T>& in, const int64_t* rbase, const int64_t* rslice, bool tuples,
                  ReuseState<T>& st) {
  const int64_t nb = in.bl.nb, N = in.g.N();
  // Pixel path with stride 1 and scope batch: the groupers give ids and counts, and the sums come
  // from sliding windows over the slices (centroid_windows.cpp), kh*kw times fewer additions.
  const bool windows = in.pixel_path && detail::window_sums_apply(in.g, in.group_rows == N);
  std::vector<std::vector<int32_t>> gids(windows ? nb : 0);
  // About kChunkBlocks blocks per chunk, the chunks a multiple of the threads and their sizes
  // within one of each other (25 blocks on 2 threads: 8 chunks of 3-4, not 7 of 4 and 1).
  const int64_t nt = num_threads();
  int64_t nchunks = std::max<int64_t>(1, (nb + kChunkBlocks - 1) / kChunkBlocks);
  if (nb >= nt) nchunks = std::min(nb, (nchunks + nt - 1) / nt * nt);
  for_each_block(nchunks, [&](int64_t c) {
    const int64_t j0 = c * nb / nchunks, j1 = (c + 1) * nb / nchunks;
    std::vector<std::unique_ptr<BlockGrouper<T>>> gr;
    for (int64_t j = j0; j < j1; ++j) gr.emplace_back(new BlockGrouper<T>(in, j, tuples, st, !windows));
    auto sweep = [&](BlockGrouper<T>* only) {
      for (int64_t n0 = 0; n0 < N; n0 += kTileRows) {
        const int64_t len = std::min(kTileRows, N - n0);
        const int64_t* base_slice = rslice ? rslice + n0 : nullptr;
        if (only) {
          only->tile(n0, len, rbase + n0, base_slice);
        } else {
          for (auto& one : gr) one->tile(n0, len, rbase + n0, base_slice);
        }
      }
    };
    sweep(nullptr);
    for (int64_t j = j0; j < j1; ++j) {
      auto& one = gr[j - j0];
      if (one->overflowed()) {  // l2 values too wide for a packed key: redo with full tuples
        one.reset(new BlockGrouper<T>(in, j, true, st));
        sweep(one.get());
      }
      one->finish();
      if (windows) gids[j].assign(one->cluster_gids(), one->cluster_gids() + st.counts[j].size());
    }
  });
  if (!windows) return;
  std::vector<const int32_t*> block_gids(nb), counts(nb);
  std::vector<int64_t> nc(nb);
  std::vector<T*> means(nb);
  for (int64_t j = 0; j < nb; ++j) {
    block_gids[j] = gids[j].data();
    counts[j] = st.counts[j].data();
    nc[j] = st.clusters(j);
    means[j] = st.centroids[j].data();
  }
  detail::window_centroid_sums(in.g, in.lay, in.p.L, in.xp, in.pixel_gid, in.n_gid, block_gids, nc, counts, means);
}

// Reduced GEMM Yc_j (nc_j, M) = centroids_j . Wm_j, then y[n] = b + sum_j Yc_j[id_j(n)].
template <class T>
void products_to_output(const Blocks& bl, const ReuseState<T>& st, const T* b, T* y) {
  const int64_t nb = bl.nb, M = st.g.M;
  std::vector<UninitVector<T>> Yc(nb);  // uninitialised: the GEMM writes every value
  for_each_block(nb, [&](int64_t j) {
    const int64_t nc = st.clusters(j);
    Yc[j].resize(static_cast<size_t>(std::max<int64_t>(nc, 1)) * M);
    detail::block_products(nc, bl.len[j], M, st.centroids[j].data(), st.Wm.data() + bl.k0[j] * M, Yc[j].data());
  });
  std::vector<const T*> yc(nb);
  std::vector<int64_t> nc(nb);
  for (int64_t j = 0; j < nb; ++j) {
    yc[j] = Yc[j].data();
    nc[j] = st.clusters(j);
  }
  detail::reconstruct(st.g, nb, yc.data(), nc.data(), st.ids.data(), b, y);
}

}  // namespace

template <class T>
std::unique_ptr<ReuseState<T>> conv2d_forward_reuse(const ConvGeom& g, const ReuseParams<T>& p, const T* x,
                                                    const T* w, const T* b, T* y) {
  validate_reuse(g, p);
  auto st = std::make_unique<ReuseState<T>>();
  st->g = g;
  st->L = p.L;
  st->order = p.order;
  st->scope = p.scope;
  const int64_t K = g.K(), M = g.M, N = g.N();
  const int HB = detail::padded_hashes(p.H), L = p.L;
  const detail::Layout lay = detail::make_layout(g, p.order == Order::HWC);
  Buffer<T> padded;
  const T* xp = detail::padded_input(g, lay, x, padded);
  const Blocks bl = detail::make_blocks(g, lay, p.order, L);
  const int64_t nb = bl.nb;
  st->nblocks = nb;
  const std::vector<T> Pp = detail::padded_planes(p.planes, L, p.H);
  const std::vector<int64_t> rbase = detail::row_bases(g, lay);
  // 1. Keys, clusters and centroids of every block (per slice first on the pixel path).
  const bool pixel_path = p.order == Order::HWC && g.C % L == 0;
  PixelIds pix;
  std::vector<int64_t> rslice;
  if (pixel_path) {
    pix = number_pixel_slices(xp, lay.size() / L, p, Pp.data(), HB);
    rslice.resize(N);
    for (int64_t n = 0; n < N; ++n) rslice[n] = rbase[n] / L;
  }
  st->ids.resize(static_cast<size_t>(nb) * N);
  st->counts.resize(nb);
  st->centroids.resize(nb);
  const int64_t group_rows = p.scope == Scope::Batch ? N : g.P();
  const GroupInputs<T> in{g, lay, bl, p, xp, Pp.data(), HB, pixel_path, pix.gid.data(), pix.n, group_rows};
  group_blocks(in, rbase.data(), pixel_path ? rslice.data() : nullptr, pix.tuples, *st);
  // 2. Weights in the column order, products of the centroids, output rows.
  st->Wm.resize(static_cast<size_t>(K) * M);
  detail::weights_to_matrix(g, p.order, w, st->Wm.data());
  st->exact = p.exact;
  if (p.exact & kExactWeightGrad) st->x.assign(x, x + g.B * g.C * g.H * g.W);  // for X^T . dY
  if (p.exact & kExactForward) conv2d_forward_exact(g, x, w, b, y);  // clusters kept for dW / dX
  else products_to_output(bl, *st, b, y);
  return st;
}

namespace {

// dY rows (N, M) from NCHW dy (B, M, OH, OW).
template <class T>
void rows_from_nchw(const ConvGeom& g, const T* dy, T* dY) {
  const int64_t N = g.N(), M = g.M, ntiles = (N + kTileRows - 1) / kTileRows;
#ifdef _OPENMP
#pragma omp parallel for num_threads(detail::threads_for(ntiles)) schedule(static)
#endif
  for (int64_t t = 0; t < ntiles; ++t) {
    const int64_t n0 = t * kTileRows;
    detail::load_rows_nchw(g, n0, std::min(kTileRows, N - n0), dy, dY + n0 * M);
  }
}

// Block j of the backward: Gamma_j (nc_j, M) = cluster sums of dY; dWm_j = centroids_j^T Gamma_j
// into dWm's rows of block j (if dWm); D_j (nc_j, Lj) = (Gamma_j / |c|) Wm_j^T (if D).
template <class T>
void block_gradients(const ReuseState<T>& s, int64_t j, const T* dY, T* dWm, UninitVector<T>* D) {
  const int64_t N = s.g.N(), M = s.g.M, nc = s.clusters(j), Lj = s.block_len(j), k0 = j * s.L;
  UninitVector<T> G(static_cast<size_t>(nc) * M);  // every row written: first member copied
  if (detail::scatter_first(G.data(), s.ids.data() + j * N, dY, N, M, 0) != nc)
    throw std::logic_error("internal: cluster count does not match the ids");
  if (dWm) gemm<T>(true, false, Lj, M, nc, T(1), s.centroids[j].data(), Lj, G.data(), M, T(0), dWm + k0 * M, M);
  if (D) {
    detail::scale_rows(G.data(), s.counts[j].data(), nc, M);
    D->resize(static_cast<size_t>(std::max<int64_t>(nc, 1)) * Lj);
    gemm<T>(false, true, nc, Lj, M, T(1), G.data(), M, s.Wm.data() + k0 * M, M, T(0), D->data(), Lj);
  }
}

// dX row n = concat_j D_j[id_j(n)], added back (col2im) through each block's runs into the padded
// dX, block groups in turn (kTableBudget), each swept over all rows, images in parallel; each
// image unpadded to dx (B, C, H, W) once complete.
template <class T>
void scatter_input_grad(const ReuseState<T>& s, const std::vector<UninitVector<T>>& D, T* dx) {
  const ConvGeom& g = s.g;
  const int64_t N = g.N(), P = g.P(), nb = s.nblocks;
  const detail::Layout lay = detail::make_layout(g, s.order == Order::HWC);
  const Blocks bl = detail::make_blocks(g, lay, s.order, s.L);
  Buffer<T> dpadded;
  T* dxp = dx;
  if (!detail::layout_is_input(g, lay)) {
    dpadded.resize(lay.size());
    dxp = dpadded.data();
  }
  const std::vector<int64_t> rbase = detail::row_bases(g, lay);
  std::vector<const T*> dtab(nb);
  for (int64_t j = 0; j < nb; ++j) dtab[j] = D[j].data();
  const std::vector<int64_t> grp =
      detail::block_groups(nb, [&](int64_t j) { return static_cast<size_t>(s.clusters(j) * bl.len[j]) * sizeof(T); });
  constexpr int64_t kAhead = 2;  // D rows are scattered over all blocks: fetch a later row's early
  for (size_t gi = 0; gi + 1 < grp.size(); ++gi) {
    const int64_t j0 = grp[gi], j1 = grp[gi + 1];
    std::vector<detail::BlockRun> runs;
    for (int64_t j = j0; j < j1; ++j)
      for (const Run& u : bl.runs[j])
        runs.push_back({u.src, static_cast<int32_t>(j), u.dst, u.len, static_cast<int32_t>(bl.len[j])});
#ifdef _OPENMP
#pragma omp parallel for num_threads(detail::threads_for(g.B)) schedule(static)
#endif
    for (int64_t bimg = 0; bimg < g.B; ++bimg) {
      if (gi == 0) std::memset(dxp + bimg * lay.sB, 0, sizeof(T) * lay.sB);  // this image's padded dX
      for (int64_t n = bimg * P; n < (bimg + 1) * P; ++n) {
        if (n + kAhead < N)
          for (int64_t j = j0; j < j1; ++j) {
            const T* row = dtab[j] + static_cast<int64_t>(s.ids[j * N + n + kAhead]) * bl.len[j];
            for (int64_t off = 0; off < bl.len[j]; off += 64 / static_cast<int64_t>(sizeof(T)))
              PYADR_PREFETCH(row + off);
          }
        detail::add_block_runs(dxp + rbase[n], runs.data(), runs.size(), dtab.data(), s.ids.data() + n, N);
      }
      // The image is complete after the last group: unpad it while it is still in cache.
      if (dxp != dx && gi + 2 == grp.size()) detail::unpad_image(g, lay, bimg, dxp, dx);
    }
  }
}

// The products of s.exact, by the exact path (conv_exact.cpp) with the weights recovered from
// Wm: dx = col2im(dY . Wm^T), dw = X^T . dY from the kept input (either may be null).
template <class T>
void exact_gradients(const ReuseState<T>& s, const T* dy, T* dx, T* dw) {
  if (dw && s.x.empty()) throw std::logic_error("internal: an exact dW needs the input kept by the forward");
  std::vector<T> w(s.Wm.size());
  detail::matrix_to_weights(s.g, s.order, s.Wm.data(), w.data());
  conv2d_backward_exact(s.g, dw ? s.x.data() : nullptr, w.data(), dy, dx, dw, static_cast<T*>(nullptr));
}

}  // namespace

template <class T>
void conv2d_backward_reuse(const ReuseState<T>& s, const T* dy, T* dx, T* dw, T* db) {
  const ConvGeom& g = s.g;
  const int64_t K = g.K(), M = g.M, N = g.N(), nb = s.nblocks;
  Buffer<T> dY(static_cast<size_t>(N) * M);
  rows_from_nchw(g, dy, dY.data());
  if (db) detail::bias_grad_rows(dY.data(), N, M, db);
  T* const dx_exact = (s.exact & kExactInputGrad) ? dx : nullptr;
  T* const dw_exact = (s.exact & kExactWeightGrad) ? dw : nullptr;
  if (dx_exact || dw_exact) exact_gradients(s, dy, dx_exact, dw_exact);
  if (dx_exact) dx = nullptr;  // what is left uses the clusters
  if (dw_exact) dw = nullptr;
  if (!dx && !dw) return;
  std::vector<T> dWm(dw ? static_cast<size_t>(K) * M : 0);
  std::vector<UninitVector<T>> D(dx ? nb : 0);  // uninitialised: the GEMM writes every value
  for_each_block(nb, [&](int64_t j) { block_gradients(s, j, dY.data(), dw ? dWm.data() : nullptr, dx ? &D[j] : nullptr); });
  if (dw) detail::matrix_to_weights(g, s.order, dWm.data(), dw);
  if (dx) scatter_input_grad(s, D, dx);
}

template struct ReuseState<float>;
template struct ReuseState<double>;
template std::unique_ptr<ReuseState<float>> conv2d_forward_reuse<float>(const ConvGeom&, const ReuseParams<float>&,
                                                                       const float*, const float*, const float*,
                                                                       float*);
template std::unique_ptr<ReuseState<double>> conv2d_forward_reuse<double>(const ConvGeom&,
                                                                         const ReuseParams<double>&, const double*,
                                                                         const double*, const double*, double*);
template void conv2d_backward_reuse<float>(const ReuseState<float>&, const float*, float*, float*, float*);
template void conv2d_backward_reuse<double>(const ReuseState<double>&, const double*, double*, double*, double*);

}  // namespace pyadr
