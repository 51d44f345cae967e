// Shared by the C API translation units: thread-local last error and the exception guard.
#pragma once

#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "pyadr/core.hpp"
#include "pyadr/pyadr.h"

namespace pyadr_capi {

inline thread_local std::string g_last_error;

inline pyadr_status fail(pyadr_status s, const std::string& msg) {
  g_last_error = msg;
  return s;
}

// Runs body(); any exception becomes a status code and a message prefixed with `fn`:
//   pyadr::TypeError -> PYADR_ERR_TYPE; std::bad_alloc, std::length_error (a size no allocator
//   can serve) -> PYADR_ERR_OUT_OF_MEMORY; std::invalid_argument (pyadr::Error) ->
//   PYADR_ERR_INVALID_ARGUMENT; anything else -> PYADR_ERR_INTERNAL.
template <class F>
pyadr_status guard(const char* fn, F&& body) noexcept {
  try {
    body();
    return PYADR_OK;
  } catch (const pyadr::TypeError& e) {
    return fail(PYADR_ERR_TYPE, std::string(fn) + ": " + e.what());
  } catch (const std::bad_alloc&) {
    return fail(PYADR_ERR_OUT_OF_MEMORY, std::string(fn) + ": out of memory");
  } catch (const std::invalid_argument& e) {  // pyadr::Error included
    return fail(PYADR_ERR_INVALID_ARGUMENT, std::string(fn) + ": " + e.what());
  } catch (const std::length_error& e) {
    return fail(PYADR_ERR_OUT_OF_MEMORY, std::string(fn) + ": allocation too large (" + e.what() + ")");
  } catch (const std::exception& e) {
    return fail(PYADR_ERR_INTERNAL, std::string(fn) + ": internal error: " + e.what());
  } catch (...) {
    return fail(PYADR_ERR_INTERNAL, std::string(fn) + ": internal error (unknown exception)");
  }
}

[[noreturn]] inline void bad(const std::string& msg) { throw pyadr::Error(msg); }
[[noreturn]] inline void bad_type(const std::string& msg) { throw pyadr::TypeError(msg); }

void need_ptr(const void* p, const char* name);          // throws Error "<name> must not be NULL"
pyadr::ConvGeom to_geom(const pyadr_conv_geom* g);      // converts and validates

// Reuse parameters with planes/offsets converted to T; the vectors own the converted copies.
template <class T>
struct ReuseArgs {
  pyadr::ReuseParams<T> p;
  std::vector<T> planes, offsets;
};
// Converts *c (doubles) for a validated geometry and validates it (pyadr/params.hpp; messages
// name the fields with `prefix`, e.g. "reuse->"), plus what only the C API can check before the
// conversion: every l2 offset in [0, width).
template <class T>
void to_reuse_params(const pyadr_reuse_config* c, const pyadr::ConvGeom& g, const std::string& prefix,
                     ReuseArgs<T>& out);

}  // namespace pyadr_capi
