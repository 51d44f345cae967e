// oneDNN as the optional provider of the exact float convolution (forward, dX, dW + db).
//
// The library (oneDNN v3 built on OpenMP, e.g. PyPI's onednn-cpu-gomp: libdnnl.so.3 over the
// same libgomp as this core, so one level of parallelism) is dlopen'ed by onednn_load(); the
// core neither links nor needs it. One CPU engine per process, one stream per calling thread.
//
// A plan per (op, shape, stride, pad, dilation, bias, threads, layout) is built once and cached:
//   forward      conv fwd_training  src x (B,C,H,W), weights w (M,C,kh,kw), bias b (M) -> y (B,M,OH,OW)
//   backward dX  conv bwd_data      diff_dst dy, weights w                     -> diff_src dx
//   backward dW  conv bwd_weights   src x, diff_dst dy                         -> diff_weights dw, diff_bias db
// The caller's tensors are NCHW / OIHW. PYADR_ONEDNN_LAYOUT (read once) chooses the layouts the
// convolution itself sees: "any" (default: oneDNN's choice, blocked nChw16c on AVX-512, with a
// reorder in and out of each tensor whose layout differs), "nhwc" (activations NHWC, weights
// oneDNN's choice) or "plain" (the caller's layouts, no reorder). docs/engine.md has the figures.
// Each call creates its memory objects (cheap) so that concurrent calls share nothing mutable.
#include "conv_onednn.hpp"

#include <array>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>

#include "common.hpp"
#include "conv_common.hpp"
#include "conv_exact_plan.hpp"
#include "onednn_api.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#define PYADR_HAVE_DLOPEN 1
#else
#define PYADR_HAVE_DLOPEN 0
#endif

namespace pyadr {
namespace onednn {
namespace {

using namespace api;

// ---- the library: loaded once, never unloaded (its primitives may live until exit) ----------
struct Library {
  std::mutex mutex;
  std::atomic<bool> loaded{false};
  Functions fn{};
  dnnl_engine_t engine = nullptr;
  std::string description;  // "3.2.0 (/path/libdnnl.so.3)"
};
Library& lib() {
  static Library* l = new Library;  // leaked on purpose: no destructor racing the library's own
  return *l;
}
std::atomic<int> g_provider{static_cast<int>(ConvProvider::Auto)};

const Functions& fn() { return lib().fn; }

void check(dnnl_status_t s, const char* what) {
  if (s != dnnl_success)
    throw std::runtime_error(std::string("oneDNN: ") + what + " failed with status " + std::to_string(s));
}

dnnl_stream_t stream() {  // oneDNN streams are not meant to be shared by threads
  thread_local dnnl_stream_t s = nullptr;
  if (!s) check(fn().dnnl_stream_create(&s, lib().engine, dnnl_stream_default_flags), "dnnl_stream_create");
  return s;
}

bool enabled() {
  if (!lib().loaded.load(std::memory_order_acquire)) return false;
  return g_provider.load() != static_cast<int>(ConvProvider::Builtin);
}

// oneDNN's OpenMP parallel regions use omp_get_max_threads(): set it to pyadr's count for a call.
class ThreadScope {
 public:
  explicit ThreadScope(int n) {
#ifdef _OPENMP
    saved_ = omp_get_max_threads();
    if (n != saved_) omp_set_num_threads(n);
#endif
    (void)n;
  }
  ~ThreadScope() {
#ifdef _OPENMP
    if (omp_get_max_threads() != saved_) omp_set_num_threads(saved_);
#endif
  }
  ThreadScope(const ThreadScope&) = delete;
  ThreadScope& operator=(const ThreadScope&) = delete;

 private:
  int saved_ = 1;
};

// ---- RAII over the handles ---------------------------------------------------------------
struct MemDesc {
  dnnl_memory_desc_t h = nullptr;
  MemDesc() = default;
  MemDesc(const MemDesc&) = delete;
  MemDesc& operator=(const MemDesc&) = delete;
  ~MemDesc() {
    if (h) fn().dnnl_memory_desc_destroy(h);
  }
};

struct Primitive {
  dnnl_primitive_desc_t pd = nullptr;
  dnnl_primitive_t p = nullptr;
  Primitive() = default;
  Primitive(const Primitive&) = delete;
  Primitive& operator=(const Primitive&) = delete;
  ~Primitive() {
    if (p) fn().dnnl_primitive_destroy(p);
    if (pd) fn().dnnl_primitive_desc_destroy(pd);
  }
  void create() { check(fn().dnnl_primitive_create(&p, pd), "dnnl_primitive_create"); }
  std::string impl() const {
    const char* s = nullptr;
    if (fn().dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &s) != dnnl_success || !s) return "?";
    return s;
  }
};

struct Memories {  // the memory objects of one call
  std::vector<dnnl_memory_t> all;
  Memories() = default;
  Memories(const Memories&) = delete;
  Memories& operator=(const Memories&) = delete;
  ~Memories() {
    for (dnnl_memory_t m : all) fn().dnnl_memory_destroy(m);
  }
  dnnl_memory_t make(const_dnnl_memory_desc_t md, const void* data) {
    dnnl_memory_t m = nullptr;
    check(fn().dnnl_memory_create(&m, md, lib().engine, const_cast<void*>(data)), "dnnl_memory_create");
    all.push_back(m);
    return m;
  }
};

// ---- plans -------------------------------------------------------------------------------
enum class Op : int { Forward = 0, BackwardData = 1, BackwardWeights = 2 };
const char* const kOpNames[] = {"fwd", "bwd-data", "bwd-weights"};
enum class Layout : int { Any = 0, Nhwc = 1, Plain = 2 };

Layout layout_setting() {
  static const Layout l = [] {
    const char* s = std::getenv("PYADR_ONEDNN_LAYOUT");
    const std::string v = s ? s : "any";
    if (v == "plain") return Layout::Plain;
    if (v == "nhwc") return Layout::Nhwc;
    return Layout::Any;
  }();
  return l;
}

// One tensor argument of the convolution: the caller's layout and the primitive's.
struct Operand {
  int arg = 0;
  bool output = false;
  MemDesc user;
  const_dnnl_memory_desc_t inner = nullptr;  // owned by the convolution's pd
  size_t inner_bytes = 0;
  Primitive reorder;  // user -> inner (input) or inner -> user (output); p == nullptr: same layout
};

struct Plan {
  Primitive hint;  // forward pd: the backward's hint, the forward itself for Op::Forward
  Primitive backward;
  Operand ops[3];
  MemDesc bias;  // plain (M), when the op takes or makes a bias
  int bias_arg = 0;
  const Primitive& conv() const { return backward.pd ? backward : hint; }
};

using Key = std::array<int64_t, 17>;

Key make_key(Op op, const ConvGeom& g, bool bias, int threads) {
  return {static_cast<int64_t>(op), g.B, g.C, g.H, g.W, g.M, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,
          bias ? 1 : 0, threads, static_cast<int64_t>(layout_setting())};
}

struct Cache {
  std::mutex mutex;
  std::map<Key, std::shared_ptr<const Plan>> plans;  // null: oneDNN has no implementation
  std::map<std::string, std::set<std::string>> kernels;
};
Cache& cache() {
  static Cache* c = new Cache;  // leaked on purpose, as the library
  return *c;
}
constexpr size_t kMaxPlans = 256;

void plain_desc(MemDesc& md, std::initializer_list<int64_t> dims) {
  dnnl_dims_t d{}, s{};
  const int n = static_cast<int>(dims.size());
  int i = 0;
  for (int64_t v : dims) d[i++] = v;
  int64_t stride = 1;
  for (int k = n - 1; k >= 0; --k) {
    s[k] = stride;
    stride *= d[k];
  }
  check(fn().dnnl_memory_desc_create_with_strides(&md.h, n, d, dnnl_f32, s), "memory_desc_create_with_strides");
}

// The descriptor the convolution is created with (PYADR_ONEDNN_LAYOUT) for a (n, c, h, w) tensor.
void conv_desc(MemDesc& md, int64_t n0, int64_t c, int64_t h, int64_t w, bool activation) {
  const dnnl_dims_t d{n0, c, h, w};
  const Layout l = layout_setting();
  if (l == Layout::Plain) {
    const dnnl_dims_t s{c * h * w, h * w, w, 1};
    check(fn().dnnl_memory_desc_create_with_strides(&md.h, 4, d, dnnl_f32, s), "memory_desc_create_with_strides");
  } else if (l == Layout::Nhwc && activation) {
    const dnnl_dims_t s{h * w * c, 1, w * c, c};
    check(fn().dnnl_memory_desc_create_with_strides(&md.h, 4, d, dnnl_f32, s), "memory_desc_create_with_strides");
  } else {
    check(fn().dnnl_memory_desc_create_with_tag(&md.h, 4, d, dnnl_f32, dnnl_format_tag_any), "memory_desc_create_with_tag");
  }
}

void finish_operand(Operand& o, const Primitive& conv, int query) {
  o.inner = fn().dnnl_primitive_desc_query_md(conv.pd, query, 0);
  if (!o.inner) throw std::runtime_error("oneDNN: a convolution descriptor lacks one of its tensors");
  o.inner_bytes = fn().dnnl_memory_desc_get_size(o.inner);
  if (fn().dnnl_memory_desc_equal(o.user.h, o.inner)) return;
  const_dnnl_memory_desc_t from = o.output ? o.inner : o.user.h, to = o.output ? o.user.h : o.inner;
  check(fn().dnnl_reorder_primitive_desc_create(&o.reorder.pd, from, lib().engine, to, lib().engine, nullptr),
        "reorder_primitive_desc_create");
  o.reorder.create();
}

// Builds the plan of `op`; null when oneDNN implements no such convolution.
std::shared_ptr<const Plan> build(Op op, const ConvGeom& g, bool bias) {
  auto plan = std::make_shared<Plan>();
  MemDesc src_u, wei_u, dst_u, src_c, wei_c, dst_c;
  plain_desc(src_u, {g.B, g.C, g.H, g.W});
  plain_desc(wei_u, {g.M, g.C, g.kh, g.kw});
  plain_desc(dst_u, {g.B, g.M, g.OH, g.OW});
  conv_desc(src_c, g.B, g.C, g.H, g.W, true);
  conv_desc(wei_c, g.M, g.C, g.kh, g.kw, false);
  conv_desc(dst_c, g.B, g.M, g.OH, g.OW, true);
  if (bias) plain_desc(plan->bias, {g.M});
  const dnnl_dims_t strides{g.sh, g.sw}, dilates{g.dh - 1, g.dw - 1}, pad{g.ph, g.pw};
  const const_dnnl_memory_desc_t bias_md = bias ? plan->bias.h : nullptr;
  const auto& f = fn();
  if (f.dnnl_convolution_forward_primitive_desc_create(&plan->hint.pd, lib().engine, dnnl_forward_training,
                                                       dnnl_convolution_direct, src_c.h, wei_c.h, bias_md, dst_c.h,
                                                       strides, dilates, pad, pad, nullptr) != dnnl_success)
    return nullptr;
  Operand* o = plan->ops;
  // (arg, output, caller's descriptor, query of the primitive's) for the three tensors of `op`
  struct Spec { int arg; bool output; MemDesc* user; int query; };
  std::array<Spec, 3> specs;
  if (op == Op::Forward) {
    plan->hint.create();
    specs = {Spec{DNNL_ARG_SRC, false, &src_u, dnnl_query_src_md}, Spec{DNNL_ARG_WEIGHTS, false, &wei_u, dnnl_query_weights_md},
             Spec{DNNL_ARG_DST, true, &dst_u, dnnl_query_dst_md}};
    plan->bias_arg = DNNL_ARG_BIAS;
  } else if (op == Op::BackwardData) {
    if (f.dnnl_convolution_backward_data_primitive_desc_create(&plan->backward.pd, lib().engine, dnnl_convolution_direct,
                                                               src_c.h, wei_c.h, dst_c.h, strides, dilates, pad, pad,
                                                               plan->hint.pd, nullptr) != dnnl_success)
      return nullptr;
    specs = {Spec{DNNL_ARG_DIFF_DST, false, &dst_u, dnnl_query_diff_dst_md},
             Spec{DNNL_ARG_WEIGHTS, false, &wei_u, dnnl_query_weights_md},
             Spec{DNNL_ARG_DIFF_SRC, true, &src_u, dnnl_query_diff_src_md}};
  } else {
    if (f.dnnl_convolution_backward_weights_primitive_desc_create(
            &plan->backward.pd, lib().engine, dnnl_convolution_direct, src_c.h, wei_c.h, bias_md, dst_c.h, strides,
            dilates, pad, pad, plan->hint.pd, nullptr) != dnnl_success)
      return nullptr;
    specs = {Spec{DNNL_ARG_SRC, false, &src_u, dnnl_query_src_md},
             Spec{DNNL_ARG_DIFF_DST, false, &dst_u, dnnl_query_diff_dst_md},
             Spec{DNNL_ARG_DIFF_WEIGHTS, true, &wei_u, dnnl_query_diff_weights_md}};
    plan->bias_arg = DNNL_ARG_DIFF_BIAS;
  }
  if (op != Op::Forward) plan->backward.create();
  for (int i = 0; i < 3; ++i) {
    o[i].arg = specs[i].arg;
    o[i].output = specs[i].output;
    std::swap(o[i].user.h, specs[i].user->h);  // the plan owns the caller's descriptor from here
    finish_operand(o[i], plan->conv(), specs[i].query);
  }
  if (!bias) plan->bias_arg = 0;
  return plan;
}

std::shared_ptr<const Plan> plan_for(Op op, const ConvGeom& g, bool bias, int threads) {
  const Key key = make_key(op, g, bias, threads);
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  auto it = c.plans.find(key);
  if (it != c.plans.end()) return it->second;
  if (c.plans.size() >= kMaxPlans) c.plans.clear();  // callers in flight keep their shared_ptr
  std::shared_ptr<const Plan> p = build(op, g, bias);
  c.kernels[kOpNames[static_cast<int>(op)]].insert(p ? p->conv().impl() : "unimplemented (builtin ran)");
  c.plans.emplace(key, p);
  return p;
}

// Runs the plan on the caller's three tensors (and bias, if the plan has one).
// An input two calls have in common (the backward's dy, for dX and dW): the first call reorders it
// into buf (filled becomes true), the second reads buf instead of reordering again.
struct SharedInput {
  int index;
  detail::Buffer<float>* buf;
  bool filled;
};

void execute(const Plan& p, const void* const data[3], const void* bias, SharedInput* shared = nullptr) {
  Memories mem;
  detail::Buffer<float> inner[3];
  dnnl_exec_arg_t conv_args[4];
  dnnl_memory_t inner_mem[3] = {nullptr, nullptr, nullptr}, user_mem[3];
  int n = 0;
  const dnnl_stream_t s = stream();
  for (int i = 0; i < 3; ++i) {
    const Operand& o = p.ops[i];
    user_mem[i] = mem.make(o.user.h, data[i]);
    if (!o.reorder.p) {
      conv_args[n++] = {o.arg, user_mem[i]};
      continue;
    }
    const bool share = shared && shared->index == i && !o.output;
    detail::Buffer<float>& where = share ? *shared->buf : inner[i];
    if (share && shared->filled) {
      conv_args[n++] = {o.arg, mem.make(o.inner, where.data())};
      continue;
    }
    where.resize((o.inner_bytes + sizeof(float) - 1) / sizeof(float));
    inner_mem[i] = mem.make(o.inner, where.data());
    conv_args[n++] = {o.arg, inner_mem[i]};
    if (share) shared->filled = true;
    if (!o.output) {
      const dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, user_mem[i]}, {DNNL_ARG_TO, inner_mem[i]}};
      check(fn().dnnl_primitive_execute(o.reorder.p, s, 2, r), "reorder");
    }
  }
  if (p.bias_arg) conv_args[n++] = {p.bias_arg, mem.make(p.bias.h, bias)};
  check(fn().dnnl_primitive_execute(p.conv().p, s, n, conv_args), "convolution");
  for (int i = 0; i < 3; ++i) {
    const Operand& o = p.ops[i];
    if (!o.output || !o.reorder.p) continue;
    const dnnl_exec_arg_t r[2] = {{DNNL_ARG_FROM, inner_mem[i]}, {DNNL_ARG_TO, user_mem[i]}};
    check(fn().dnnl_primitive_execute(o.reorder.p, s, 2, r), "reorder");
  }
  check(fn().dnnl_stream_wait(s), "dnnl_stream_wait");
}

// Kernel taps along one axis that read the input (not only padding) at some output position.
int64_t live_taps(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad, int64_t dil) {
  int64_t live = 0;
  for (int64_t i = 0; i < k; ++i) live += detail::tap_reads_input(out, stride, pad, dil, in, i);
  return live;
}

// Under "auto", maps so small that at most a third of the kernel taps ever read the input (VGG's
// 3x3 pad-1 layers on 1x1 maps: the centre tap only) go to the builtin kernels, which leave the
// dead taps out of the GEMMs: fwd+dX+dW 4.9 ms there against oneDNN's 9.6 (docs/engine.md).
bool mostly_padding(const ConvGeom& g) {
  const int64_t live = live_taps(g.H, g.OH, g.kh, g.sh, g.ph, g.dh) * live_taps(g.W, g.OW, g.kw, g.sw, g.pw, g.dw);
  return 3 * live <= g.kh * g.kw;
}

// 1x1 layers on 1x1 images are the fully connected layers: the builtin GEMM path runs them.
bool eligible(const ConvGeom& g) {
  const bool linear = g.H == 1 && g.W == 1 && g.kh == 1 && g.kw == 1 && g.ph == 0 && g.pw == 0;
  if (!enabled() || linear || detail::in_parallel()) return false;
  return g_provider.load() == static_cast<int>(ConvProvider::OneDNN) || !mostly_padding(g);
}

}  // namespace

// One oneDNN call at a time: concurrent calls from several application threads (each its own
// OpenMP team) hung, intermittently, spinning inside a jit kernel of the backward
// (tests/test_config.py::test_threads_release_gil_and_stay_correct under .ci/run, py-spy: one
// thread left at one pc in oneDNN's jit code). Each call uses all of pyadr's threads anyway.
static std::mutex& call_mutex() {
  static std::mutex* m = new std::mutex;  // leaked on purpose, as the library
  return *m;
}

bool forward(const ConvGeom& g, const float* x, const float* w, const float* b, float* y) {
  if (!eligible(g)) return false;
  std::lock_guard<std::mutex> one_call(call_mutex());
  const int nt = num_threads();
  ThreadScope threads(nt);
  const auto plan = plan_for(Op::Forward, g, b != nullptr, nt);
  if (!plan) return false;
  const void* data[3] = {x, w, y};
  execute(*plan, data, b);
  return true;
}

bool backward(const ConvGeom& g, const float* x, const float* w, const float* dy, float* dx, float* dw, float* db) {
  if ((!dx && !dw) || !eligible(g)) return false;
  std::lock_guard<std::mutex> one_call(call_mutex());
  const int nt = num_threads();
  ThreadScope threads(nt);
  const auto pd = dx ? plan_for(Op::BackwardData, g, false, nt) : nullptr;
  const auto pw = dw ? plan_for(Op::BackwardWeights, g, db != nullptr, nt) : nullptr;
  if ((dx && !pd) || (dw && !pw)) return false;  // all builtin rather than half and half
  // dy in the convolutions' layout once for both, when they want the same one
  detail::Buffer<float> dy_inner;
  const bool share = pd && pw && pd->ops[0].reorder.p && pw->ops[1].reorder.p &&
                     fn().dnnl_memory_desc_equal(pd->ops[0].inner, pw->ops[1].inner);
  SharedInput for_dx{0, &dy_inner, false};
  if (pd) {
    const void* data[3] = {dy, w, dx};
    execute(*pd, data, nullptr, share ? &for_dx : nullptr);
  }
  if (pw) {
    const void* data[3] = {x, dy, dw};
    SharedInput for_dw{1, &dy_inner, for_dx.filled};
    execute(*pw, data, db, share ? &for_dw : nullptr);
  } else if (db) {
    detail::bias_grad_nchw(g, dy, db);
  }
  return true;
}

}  // namespace onednn

// ---- public switches (core.hpp) ----------------------------------------------------------------
bool onednn_load(const char* path, std::string* why) {
  using namespace onednn;
  Library& l = lib();
  std::lock_guard<std::mutex> lock(l.mutex);
  if (l.loaded.load()) return true;
  const auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
#if PYADR_HAVE_DLOPEN
  const char* name = path && *path ? path : "libdnnl.so.3";
  void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    return fail(std::string("cannot load ") + name + ": " + (e ? e : "unknown error"));
  }
  api::Functions f{};
#define PYADR_RESOLVE(sym)                                                               \
  f.sym = reinterpret_cast<decltype(f.sym)>(dlsym(h, #sym));                             \
  if (!f.sym) {                                                                          \
    dlclose(h);                                                                          \
    return fail(std::string(name) + " has no " #sym " (not oneDNN v3?)");                \
  }
  PYADR_ONEDNN_FUNCTIONS(PYADR_RESOLVE)
#undef PYADR_RESOLVE
  const api::dnnl_version_t* v = f.dnnl_version();
  if (!v || v->major != 3) {
    dlclose(h);
    return fail(std::string(name) + " is oneDNN " + (v ? std::to_string(v->major) : "?") + ".x; version 3 is needed");
  }
  if (v->cpu_runtime != 2u) {  // DNNL_RUNTIME_OMP: the same OpenMP runtime as this core
    dlclose(h);
    return fail(std::string(name) + " is not built on OpenMP (cpu_runtime " + std::to_string(v->cpu_runtime) +
                "); use the onednn-cpu-gomp build");
  }
  api::dnnl_engine_t engine = nullptr;
  if (f.dnnl_engine_create(&engine, api::dnnl_cpu, 0) != api::dnnl_success) {
    dlclose(h);
    return fail(std::string(name) + ": dnnl_engine_create(cpu) failed");
  }
  std::string where = name;
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(f.dnnl_version), &info) && info.dli_fname) where = info.dli_fname;
  l.fn = f;
  l.engine = engine;
  l.description = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) + " (" +
                  where + ")";
  l.loaded.store(true, std::memory_order_release);
  return true;
#else
  (void)path;
  return fail("loading oneDNN at run time is not supported on this platform");
#endif
}

bool onednn_loaded() { return onednn::lib().loaded.load(); }

std::string onednn_library() {
  if (!onednn_loaded()) return "";
  std::lock_guard<std::mutex> lock(onednn::lib().mutex);
  return onednn::lib().description;
}

void set_conv_provider(ConvProvider p) {
  const int v = static_cast<int>(p);
  if (v < 0 || v > 2) throw Error("set_conv_provider: provider must be 0 (auto), 1 (builtin) or 2 (onednn), got " +
                                  std::to_string(v));
  if (p == ConvProvider::OneDNN && !onednn_loaded())
    throw Error("set_conv_provider: oneDNN is not loaded (call onednn_load / pyadr_onednn_load first)");
  onednn::g_provider.store(v);
}

ConvProvider conv_provider() { return static_cast<ConvProvider>(onednn::g_provider.load()); }

std::string onednn_kernels() {
  onednn::Cache& c = onednn::cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  std::string out;
  for (const auto& kv : c.kernels) {
    out += (out.empty() ? "" : "; ") + kv.first + " ";
    bool first = true;
    for (const auto& k : kv.second) {
      out += (first ? "" : ", ") + k;
      first = false;
    }
  }
  return out;
}

}  // namespace pyadr
