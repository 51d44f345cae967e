// Argument values of the native core, checked once (pyadr/params.hpp).
#include "pyadr/params.hpp"

#include <cmath>
#include <string>

namespace pyadr {
namespace {

void need(bool ok, const std::string& msg) {
  if (!ok) throw Error(msg);
}

std::string pair(int64_t a, int64_t b) { return "(" + std::to_string(a) + ", " + std::to_string(b) + ")"; }

// a * b, or Error "<what> is too large" when it exceeds limits::kMaxElements (a, b >= 0).
int64_t times(int64_t a, int64_t b, const char* what) {
  need(b == 0 || a <= limits::kMaxElements / b, std::string(what) + " is too large (more than 2^62 elements)");
  return a * b;
}

// a + b for a, b >= 0, or Error.
int64_t plus(int64_t a, int64_t b, const char* what) {
  need(a <= limits::kMaxElements - b, std::string(what) + " is too large");
  return a + b;
}

}  // namespace

void validate_geometry(ConvGeom& g) {
  need(g.B >= 1, "x: batch size must be >= 1, got " + std::to_string(g.B));
  need(g.C >= 1 && g.H >= 1 && g.W >= 1, "x: channels, height and width must be >= 1, got (" +
                                             std::to_string(g.C) + ", " + std::to_string(g.H) + ", " +
                                             std::to_string(g.W) + ")");
  need(g.M >= 1, "w: out_channels must be >= 1, got " + std::to_string(g.M));
  need(g.kh >= 1 && g.kw >= 1, "w: kernel size must be >= 1, got " + pair(g.kh, g.kw));
  need(g.sh >= 1 && g.sw >= 1, "stride must be >= 1, got " + pair(g.sh, g.sw));
  need(g.ph >= 0 && g.pw >= 0, "padding must be >= 0, got " + pair(g.ph, g.pw));
  need(g.dh >= 1 && g.dw >= 1, "dilation must be >= 1, got " + pair(g.dh, g.dw));
  // Sizes, overflow-checked: the padded input, the dilated kernel, every tensor, the im2col matrix.
  const int64_t Hp = plus(g.H, times(2, g.ph, "padding"), "padding"),
                Wp = plus(g.W, times(2, g.pw, "padding"), "padding");
  const int64_t eh = plus(times(g.dh, g.kh - 1, "dilation * (kernel - 1)"), 1, "dilated kernel"),
                ew = plus(times(g.dw, g.kw - 1, "dilation * (kernel - 1)"), 1, "dilated kernel");
  need(eh <= Hp && ew <= Wp, "w: kernel (" + std::to_string(eh) + "x" + std::to_string(ew) +
                                 " with dilation) is larger than the padded input (" + std::to_string(Hp) + "x" +
                                 std::to_string(Wp) + ")");
  g.OH = (Hp - eh) / g.sh + 1;
  g.OW = (Wp - ew) / g.sw + 1;
  const int64_t K = times(times(g.C, g.kh, "w"), g.kw, "w");
  times(K, g.M, "w");
  times(times(times(g.B, g.C, "x"), g.H, "x"), g.W, "x");
  times(times(times(g.B, g.C, "the padded input"), Hp, "the padded input"), Wp, "the padded input");
  const int64_t N = times(times(g.B, g.OH, "y"), g.OW, "y");
  times(N, g.M, "y");
  times(N, K, "convolution (rows x columns of its im2col matrix)");
}

void ConvGeom::validate() { validate_geometry(*this); }

ConvGeom linear_geometry(int64_t batch, int64_t in_features, int64_t out_features) {
  need(batch >= 1, "batch must be >= 1, got " + std::to_string(batch));
  need(in_features >= 1, "in_features must be >= 1, got " + std::to_string(in_features));
  need(out_features >= 1, "out_features must be >= 1, got " + std::to_string(out_features));
  ConvGeom g;
  g.B = batch;
  g.C = in_features;
  g.H = g.W = 1;
  g.M = out_features;
  validate_geometry(g);
  return g;
}

void validate_batch(int64_t batch) { need(batch >= 1, "batch must be >= 1, got " + std::to_string(batch)); }

void validate_reuse_enums(int order, int hash, int scope, const std::string& prefix) {
  need(order == int(Order::HWC) || order == int(Order::CHW),
       prefix + "order must be 0 (hwc) or 1 (chw), got " + std::to_string(order));
  need(hash == int(HashKind::Sign) || hash == int(HashKind::L2),
       prefix + "hash must be 0 (sign) or 1 (l2), got " + std::to_string(hash));
  need(scope == int(Scope::Batch) || scope == int(Scope::Input),
       prefix + "scope must be 0 (batch) or 1 (input), got " + std::to_string(scope));
}

template <class T>
void validate_reuse(const ConvGeom& g, const ReuseParams<T>& p, const std::string& prefix) {
  const int64_t K = g.K();
  need(p.L >= 1 && p.L <= K,
       prefix + "L must be in [1, K=" + std::to_string(K) + "], got " + std::to_string(p.L));
  need(p.H >= 1 && p.H <= limits::kMaxHashBits, prefix + "H must be in [1, " +
                                                    std::to_string(limits::kMaxHashBits) + "], got " +
                                                    std::to_string(p.H));
  validate_reuse_enums(int(p.order), int(p.hash), int(p.scope), prefix);
  need(p.planes != nullptr, prefix + "planes must be given (an (L, H) array)");
  for (int64_t i = 0; i < int64_t(p.L) * p.H; ++i) need(std::isfinite(double(p.planes[i])), prefix + "planes must be finite");
  if (p.hash == HashKind::L2) {
    need(std::isfinite(double(p.width)) && p.width > T(0),
         prefix + "width must be finite and > 0 for l2 hashing, got " + std::to_string(double(p.width)));
    need(p.offsets != nullptr, prefix + "offsets must be given for l2 hashing (an (H) array)");
    for (int h = 0; h < p.H; ++h) need(std::isfinite(double(p.offsets[h])), prefix + "offsets must be finite");
  }
  need(p.exact >= 0 && p.exact < kExactAll,
       prefix + "exact must be a combination of 1 (forward), 2 (dw) and 4 (dx), not all three (that is the "
                "exact convolution), got " + std::to_string(p.exact));
  need(g.N() <= limits::kMaxRowsPerCall,
       "reuse: at most 2^31-1 rows (batch * OH * OW) in one call, got " + std::to_string(g.N()));
}

template <class T>
void validate_reuse_cache(const ConvGeom& g, const ReuseParams<T>& p, int64_t max_entries) {
  validate_reuse(g, p);
  need(p.hash == HashKind::Sign, "the reuse cache supports the sign hash only");
  need((p.exact & kExactForward) == 0, "the reuse cache reuses the forward: exact must not include forward (1)");
  need(max_entries >= 0, "max_entries must be >= 0, got " + std::to_string(max_entries));
}

template void validate_reuse<float>(const ConvGeom&, const ReuseParams<float>&, const std::string&);
template void validate_reuse<double>(const ConvGeom&, const ReuseParams<double>&, const std::string&);
template void validate_reuse_cache<float>(const ConvGeom&, const ReuseParams<float>&, int64_t);
template void validate_reuse_cache<double>(const ConvGeom&, const ReuseParams<double>&, int64_t);

}  // namespace pyadr
