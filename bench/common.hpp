// Shared by the benchmarks: medians, running a coroutine on its own thread,
// a TLS 1.3 context pair with a fresh self-signed Ed25519 certificate, and
// the JSON file every benchmark writes for bench/report.py.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace bench {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

inline boost::json::array to_json(const std::vector<double>& v) {
  boost::json::array a;
  for (double d : v) a.push_back(d);
  return a;
}

// Runs the coroutine `f(io)` returns on a fresh io_context in its own thread;
// the future gives its result (or rethrows what it threw).
template <class F>
auto on_thread(F f) {
  using R = typename decltype(f(std::declval<boost::asio::io_context&>()))::value_type;
  return std::async(std::launch::async, [f]() mutable {
    boost::asio::io_context io;
    std::optional<R> out;
    std::exception_ptr failed;
    boost::asio::co_spawn(io, f(io), [&](std::exception_ptr e, R r) {
      if (e)
        failed = e;
      else
        out = std::move(r);
    });
    io.run();
    if (failed) std::rethrow_exception(failed);
    return std::move(*out);
  });
}

// The command line the benchmarks share: positional arguments, `--quick`
// (the test suite's tiny run) and `--size N` (one message size, where a
// benchmark has sizes).
struct command_line {
  std::vector<std::string> args;
  bool quick = false;
  std::size_t size = 0;
};

inline command_line parse_command_line(int argc, char** argv) {
  command_line c;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick")
      c.quick = true;
    else if (a == "--size" && i + 1 < argc)
      c.size = std::strtoull(argv[++i], nullptr, 10);
    else
      c.args.push_back(a);
  }
  return c;
}

inline void write_json(const std::string& path, const boost::json::object& o) {
  if (path.empty()) return;
  std::ofstream f(path);
  f << boost::json::serialize(o) << "\n";
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace bench
