// The C API's last-error message is thread-local, and no exception crosses the C boundary even
// when several threads fail at once.
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "pyadr/pyadr.h"

int main() {
  int failures = 0;
  pyadr_clear_error();
  std::vector<std::thread> threads;
  std::vector<std::string> msgs(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &msgs] {
      pyadr_conv_geom g;
      pyadr_conv_geom_init(&g, 1, 1, 3, 3, 1, 2, 2);
      g.stride_h = -t;  // every thread fails with its own stride in the message
      float x[9] = {0}, w[4] = {0}, y[4];
      if (pyadr_conv2d_forward(&g, x, w, nullptr, nullptr, y, nullptr) != PYADR_ERR_INVALID_ARGUMENT) return;
      msgs[t] = pyadr_last_error();
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    const std::string want = "stride must be >= 1, got (" + std::to_string(-t) + ", 1)";
    if (msgs[t].find(want) == std::string::npos) {
      std::fprintf(stderr, "thread %d: message \"%s\" lacks \"%s\"\n", t, msgs[t].c_str(), want.c_str());
      ++failures;
    }
  }
  if (std::strcmp(pyadr_last_error(), "") != 0) {
    std::fprintf(stderr, "main thread sees another thread's error: \"%s\"\n", pyadr_last_error());
    ++failures;
  }
  if (failures) return 1;
  std::printf("test_thread_error: ok\n");
  return 0;
}
