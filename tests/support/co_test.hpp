// Helpers for tests whose bodies are coroutines: each test runs on its own
// io_context, bounded in time, and rethrows what the coroutine threw.
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/log.hpp"
#include "crust/base/race.hpp"
#include "crust/config.hpp"
#include "crust/secure/frame.hpp"
#include "crust/secure/handshake.hpp"
#include "crust/secure/message.hpp"
#include "crust/service.hpp"

#include "support/test.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace crust::test {

namespace asio = boost::asio;

// CRUST_TEST_LOG=debug (or trace, info) prints the library's log to
// stderr, each line with the seconds since the test began: for a test
// that fails only now and then.
inline void log_from_env() {
  const char* v = std::getenv("CRUST_TEST_LOG");
  if (!v) return;
  const std::string want = v;
  const auto level = want == "trace"   ? log_level::trace
                     : want == "debug" ? log_level::debug
                                       : log_level::info;
  const auto t0 = clock::now();
  set_log_handler(
      [t0](log_level l, std::string_view component, std::string_view msg) {
        const double s = std::chrono::duration<double>(clock::now() - t0).count();
        std::fprintf(stderr, "%8.3f [%s] %.*s: %.*s\n", s, std::string(to_string(l)).c_str(),
                     static_cast<int>(component.size()), component.data(),
                     static_cast<int>(msg.size()), msg.data());
      },
      level);
}

inline void run(const std::function<asio::awaitable<void>(asio::io_context&)>& body,
                duration limit = seconds(120)) {
  log_from_env();
  asio::io_context io;
  bool done = false;
  std::exception_ptr err;
  asio::co_spawn(io, body(io), [&](std::exception_ptr e) {
    done = true;
    err = e;
  });
  io.run_for(limit);
  if (err) std::rethrow_exception(err);
  REQUIRE_MESSAGE(done, "the test coroutine did not finish within its time limit");
}

inline config loopback_config() {
  config c;
  c.listen_address = "127.0.0.1";
  c.handshake_timeout = seconds(5);
  c.connect_timeout = seconds(5);
  // Tests that want the LAN beacon turn it on, on a port of their own, so
  // nodes of concurrent tests never answer each other.
  c.enable_lan_discovery = false;
  // No gateway is ever asked from a test on the host (port mapping has
  // its own tests against a gateway of their own).
  c.enable_port_mapping = false;
  return c;
}

inline std::unique_ptr<service> make_node(asio::io_context& io, config c = loopback_config()) {
  return std::make_unique<service>(io.get_executor(), std::move(c), identity::generate());
}

inline asio::awaitable<void> sleep_for(duration d);

struct node_pair {
  std::unique_ptr<service> a, b;
  peer_info info;  // the connection as a sees it
};

// b listens, a dials it by key; returns once both ends hold the connection
// (the responder registers it one message after the dialler).
inline asio::awaitable<node_pair> connected_pair(asio::io_context& io,
                                                 config ca = loopback_config(),
                                                 config cb = loopback_config()) {
  node_pair p{make_node(io, std::move(ca)), make_node(io, std::move(cb)), {}};
  auto at = co_await p.b->start();
  REQUIRE(at);
  auto info = co_await p.a->connect(*at, p.b->id().public_key());
  REQUIRE(info);
  p.info = *info;
  const auto deadline = clock::now() + seconds(10);
  while (p.b->peers().empty()) {
    REQUIRE_MESSAGE(clock::now() < deadline, "the responder never registered the connection");
    co_await sleep_for(milliseconds(1));
  }
  co_return p;
}

// Waits (bounded) until `pred` holds, polling every millisecond.
template <class Pred>
asio::awaitable<bool> eventually(Pred pred, duration limit = seconds(10)) {
  const auto deadline = clock::now() + limit;
  while (!pred()) {
    if (clock::now() > deadline) co_return false;
    co_await sleep_for(milliseconds(1));
  }
  co_return true;
}

// The next event of type E, skipping others; fails the test after `limit`.
template <class E>
asio::awaitable<E> next_of(service& svc, duration limit = seconds(20)) {
  const auto deadline = clock::now() + limit;
  for (;;) {
    auto left = deadline - clock::now();
    REQUIRE_MESSAGE(left > duration::zero(), "timed out waiting for an event");
    auto ev = co_await with_timeout(svc.next_event(), left);
    REQUIRE_MESSAGE(ev.has_value(), "no event: " << ev.error().message());
    if (auto* e = std::get_if<E>(&*ev)) co_return std::move(*e);
  }
}

// Seals `records` into one frame and writes it, for tests that speak the
// protocol by hand after a raw handshake.
inline asio::awaitable<void> send_frame(transport::stream& s, secure::frame_sealer& sealer,
                                        const std::vector<bytes>& records) {
  bytes frame;
  sealer.open_frame(frame);
  for (const auto& r : records) {
    put_u16(frame, static_cast<std::uint16_t>(r.size()));
    append(frame, r);
  }
  REQUIRE(sealer.close_frame(frame));
  auto [ec, n] =
      co_await asio::async_write(s, asio::buffer(frame), asio::as_tuple(asio::use_awaitable));
  REQUIRE_FALSE(ec);
}

// Sends the dialler's hello (one frame), as a crust dialler does after the
// handshake, for tests that drive a raw handshake.
inline asio::awaitable<void> say_hello(transport::stream& s, secure::handshake_result& hs,
                                       node_role role = node_role::node, bool bootstrap = false) {
  secure::frame_sealer sealer(std::move(hs.keys.send));
  const std::vector<bytes> records{secure::encode_hello(role, bootstrap)};  // named: GCC 12
  co_await send_frame(s, sealer, records);
}

// Reads what a node sends on a raw connection until it ends the stream (or
// `limit` passes) and returns the last close record among it, if any.
inline asio::awaitable<std::optional<secure::incoming_close>> read_close(
    transport::stream& s, secure::frame_opener& opener, duration limit = seconds(10)) {
  secure::reassembler reasm(std::size_t{1} << 20);
  std::optional<secure::incoming_close> close;
  std::vector<byte> buf(64 * 1024);
  const auto deadline = clock::now() + limit;
  for (;;) {
    const auto left = deadline - clock::now();
    if (left <= duration::zero()) co_return close;
    auto got = co_await within(
        s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable)), left);
    if (!got || std::get<0>(*got)) co_return close;
    mutable_byte_span in(buf.data(), std::get<1>(*got));
    while (!in.empty()) {
      auto body = opener.next(in);
      if (!body || !*body) break;
      secure::record_reader records(**body);
      for (auto r = records.next(); r && *r; r = records.next()) {
        auto rec = reasm.feed(**r);
        if (!rec) co_return close;
        if (auto* c = std::get_if<secure::incoming_close>(&*rec)) close = *c;
      }
    }
  }
}

inline asio::awaitable<void> sleep_for(duration d) {
  timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::use_awaitable);
}

// ../shared/vectors beside the source tree, or $CRUST_VECTORS.
inline std::filesystem::path vectors_dir() {
  if (const char* v = std::getenv("CRUST_VECTORS")) return v;
  return std::filesystem::path(CRUST_SOURCE_ROOT) / ".." / "shared" / "vectors";
}

}  // namespace crust::test
