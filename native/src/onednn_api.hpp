// The part of oneDNN v3's C API (include/oneapi/dnnl/dnnl.h, dnnl_types.h, dnnl_common_types.h)
// that the optional convolution provider uses, declared here because the library is loaded at
// run time (dlopen) and its wheel (onednn-cpu-gomp) ships no headers. Nothing here links it.
//
// Handles are opaque pointers; enums are passed as int (C enums have int's size and ABI).
// Values checked against oneDNN v3's headers: they are ABI, stable within the major version 3.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pyadr {
namespace onednn {
namespace api {

typedef struct dnnl_engine* dnnl_engine_t;
typedef struct dnnl_stream* dnnl_stream_t;
typedef struct dnnl_memory_desc* dnnl_memory_desc_t;
typedef const struct dnnl_memory_desc* const_dnnl_memory_desc_t;
typedef struct dnnl_memory* dnnl_memory_t;
typedef struct dnnl_primitive_desc* dnnl_primitive_desc_t;
typedef const struct dnnl_primitive_desc* const_dnnl_primitive_desc_t;
typedef struct dnnl_primitive* dnnl_primitive_t;
typedef const struct dnnl_primitive* const_dnnl_primitive_t;
typedef const struct dnnl_primitive_attr* const_dnnl_primitive_attr_t;
typedef int dnnl_status_t;
typedef int64_t dnnl_dims_t[12];  // DNNL_MAX_NDIMS = 12

struct dnnl_exec_arg_t {  // dnnl_types.h
  int arg;
  dnnl_memory_t memory;
};

struct dnnl_version_t {  // dnnl_common_types.h
  int major, minor, patch;
  const char* hash;
  unsigned cpu_runtime, gpu_runtime;
};

// dnnl_status_t
constexpr int dnnl_success = 0;
// dnnl_engine_kind_t
constexpr int dnnl_cpu = 1;
// dnnl_stream_flags_t
constexpr unsigned dnnl_stream_default_flags = 0x1U;  // dnnl_stream_in_order
// dnnl_data_type_t
constexpr int dnnl_f32 = 3;
// dnnl_format_tag_t
constexpr int dnnl_format_tag_any = 1;
// dnnl_prop_kind_t
constexpr int dnnl_forward_training = 64;
constexpr int dnnl_backward_data = 160;
constexpr int dnnl_backward_weights = 192;
// dnnl_alg_kind_t
constexpr int dnnl_convolution_direct = 1;
// dnnl_query_t
constexpr int dnnl_query_impl_info_str = 8;
constexpr int dnnl_query_src_md = 129;
constexpr int dnnl_query_diff_src_md = 130;
constexpr int dnnl_query_weights_md = 131;
constexpr int dnnl_query_diff_weights_md = 132;
constexpr int dnnl_query_dst_md = 133;
constexpr int dnnl_query_diff_dst_md = 134;
// DNNL_ARG_*
constexpr int DNNL_ARG_SRC = 1, DNNL_ARG_DST = 17, DNNL_ARG_WEIGHTS = 33, DNNL_ARG_BIAS = 41;
constexpr int DNNL_ARG_DIFF_SRC = 129, DNNL_ARG_DIFF_DST = 145, DNNL_ARG_DIFF_WEIGHTS = 161,
              DNNL_ARG_DIFF_BIAS = 169;
constexpr int DNNL_ARG_FROM = 1, DNNL_ARG_TO = 17;

// One pointer per function, resolved by dlsym under the function's own name.
struct Functions {
  dnnl_status_t (*dnnl_engine_create)(dnnl_engine_t*, int kind, size_t index);
  dnnl_status_t (*dnnl_stream_create)(dnnl_stream_t*, dnnl_engine_t, unsigned flags);
  dnnl_status_t (*dnnl_stream_wait)(dnnl_stream_t);
  dnnl_status_t (*dnnl_memory_desc_create_with_strides)(dnnl_memory_desc_t*, int ndims, const dnnl_dims_t dims,
                                                        int data_type, const dnnl_dims_t strides);
  dnnl_status_t (*dnnl_memory_desc_create_with_tag)(dnnl_memory_desc_t*, int ndims, const dnnl_dims_t dims,
                                                    int data_type, int tag);
  dnnl_status_t (*dnnl_memory_desc_destroy)(dnnl_memory_desc_t);
  int (*dnnl_memory_desc_equal)(const_dnnl_memory_desc_t, const_dnnl_memory_desc_t);
  size_t (*dnnl_memory_desc_get_size)(const_dnnl_memory_desc_t);
  dnnl_status_t (*dnnl_memory_create)(dnnl_memory_t*, const_dnnl_memory_desc_t, dnnl_engine_t, void* handle);
  dnnl_status_t (*dnnl_memory_destroy)(dnnl_memory_t);
  dnnl_status_t (*dnnl_convolution_forward_primitive_desc_create)(
      dnnl_primitive_desc_t*, dnnl_engine_t, int prop_kind, int alg_kind, const_dnnl_memory_desc_t src,
      const_dnnl_memory_desc_t weights, const_dnnl_memory_desc_t bias, const_dnnl_memory_desc_t dst,
      const dnnl_dims_t strides, const dnnl_dims_t dilates, const dnnl_dims_t padding_l,
      const dnnl_dims_t padding_r, const_dnnl_primitive_attr_t);
  dnnl_status_t (*dnnl_convolution_backward_data_primitive_desc_create)(
      dnnl_primitive_desc_t*, dnnl_engine_t, int alg_kind, const_dnnl_memory_desc_t diff_src,
      const_dnnl_memory_desc_t weights, const_dnnl_memory_desc_t diff_dst, const dnnl_dims_t strides,
      const dnnl_dims_t dilates, const dnnl_dims_t padding_l, const dnnl_dims_t padding_r,
      const_dnnl_primitive_desc_t hint_fwd_pd, const_dnnl_primitive_attr_t);
  dnnl_status_t (*dnnl_convolution_backward_weights_primitive_desc_create)(
      dnnl_primitive_desc_t*, dnnl_engine_t, int alg_kind, const_dnnl_memory_desc_t src,
      const_dnnl_memory_desc_t diff_weights, const_dnnl_memory_desc_t diff_bias, const_dnnl_memory_desc_t diff_dst,
      const dnnl_dims_t strides, const dnnl_dims_t dilates, const dnnl_dims_t padding_l,
      const dnnl_dims_t padding_r, const_dnnl_primitive_desc_t hint_fwd_pd, const_dnnl_primitive_attr_t);
  dnnl_status_t (*dnnl_reorder_primitive_desc_create)(dnnl_primitive_desc_t*, const_dnnl_memory_desc_t src,
                                                      dnnl_engine_t src_engine, const_dnnl_memory_desc_t dst,
                                                      dnnl_engine_t dst_engine, const_dnnl_primitive_attr_t);
  const_dnnl_memory_desc_t (*dnnl_primitive_desc_query_md)(const_dnnl_primitive_desc_t, int what, int index);
  dnnl_status_t (*dnnl_primitive_desc_query)(const_dnnl_primitive_desc_t, int what, int index, void* result);
  dnnl_status_t (*dnnl_primitive_desc_destroy)(dnnl_primitive_desc_t);
  dnnl_status_t (*dnnl_primitive_create)(dnnl_primitive_t*, const_dnnl_primitive_desc_t);
  dnnl_status_t (*dnnl_primitive_execute)(const_dnnl_primitive_t, dnnl_stream_t, int nargs,
                                          const dnnl_exec_arg_t* args);
  dnnl_status_t (*dnnl_primitive_destroy)(dnnl_primitive_t);
  const dnnl_version_t* (*dnnl_version)(void);
};

// The names, in the order of Functions' members (conv_onednn.cpp fills the struct from them).
#define PYADR_ONEDNN_FUNCTIONS(X)                                                                        \
  X(dnnl_engine_create) X(dnnl_stream_create) X(dnnl_stream_wait) X(dnnl_memory_desc_create_with_strides) \
  X(dnnl_memory_desc_create_with_tag) X(dnnl_memory_desc_destroy) X(dnnl_memory_desc_equal)               \
  X(dnnl_memory_desc_get_size) X(dnnl_memory_create) X(dnnl_memory_destroy)                               \
  X(dnnl_convolution_forward_primitive_desc_create) X(dnnl_convolution_backward_data_primitive_desc_create) \
  X(dnnl_convolution_backward_weights_primitive_desc_create) X(dnnl_reorder_primitive_desc_create)        \
  X(dnnl_primitive_desc_query_md) X(dnnl_primitive_desc_query) X(dnnl_primitive_desc_destroy)             \
  X(dnnl_primitive_create) X(dnnl_primitive_execute) X(dnnl_primitive_destroy) X(dnnl_version)

}  // namespace api
}  // namespace onednn
}  // namespace pyadr
