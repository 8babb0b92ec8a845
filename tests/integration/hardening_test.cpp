// Denial of service and faults survived, on loopback.
#include "support/co_test.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/write.hpp>

#include <sys/resource.h>

#include <filesystem>
#include <fstream>

using namespace crust;
namespace asio = boost::asio;

namespace {

std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

std::size_t rss_kib() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) / 1024;
}

#if defined(__SANITIZE_ADDRESS__)
constexpr bool asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool asan = true;
#else
constexpr bool asan = false;
#endif
#else
constexpr bool asan = false;
#endif

}  // namespace

TEST_CASE("hardening: 1000 trickling sockets do not keep a real peer out, and are closed") {
  rlimit lim{};
  ::getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = lim.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &lim);
  REQUIRE_MESSAGE(lim.rlim_cur >= 2500, "needs 2500 file descriptors");
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.max_pending_handshakes = 64;
    cfg.handshake_timeout = seconds(3);
    auto node = test::make_node(io, cfg);
    auto at = co_await node->start();
    REQUIRE(at);
    // A slowloris: 1000 connections that each send one byte of a handshake.
    std::vector<transport::stream> loris;
    for (int i = 0; i < 1000; ++i) {
      auto s = co_await transport::tcp_dial(*at);
      REQUIRE(s);
      byte one = 0x42;
      auto [ec, n] = co_await asio::async_write(*s, asio::buffer(&one, 1),
                                                asio::as_tuple(asio::use_awaitable));
      CHECK_FALSE(ec);
      loris.push_back(std::move(*s));
    }
    // A real peer still gets in while they hold on.
    auto real = test::make_node(io);
    auto info = co_await real->connect(*at, node->id().public_key());
    REQUIRE(info);
    // Every trickling socket is closed by the node: evicted or timed out.
    auto read_some = [](transport::stream& s) -> asio::awaitable<result<std::size_t>> {
      byte buf[64];
      auto [ec, n] =
          co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return ec;
      co_return n;
    };
    std::size_t closed = 0;
    for (auto& s : loris) {
      auto op = read_some(s);
      auto r = co_await with_timeout(std::move(op), seconds(10));
      if (!r && r.error() != errc::timed_out) ++closed;
    }
    CHECK(closed == loris.size());
    CHECK(node->peers().size() == 1);
    co_await real->stop();
    co_await node->stop();
  });
}

TEST_CASE("hardening: 10 000 connect/disconnect cycles leave no file descriptors behind") {
  test::run(
      [](asio::io_context& io) -> asio::awaitable<void> {
        auto node = test::make_node(io);
        auto at = co_await node->start();
        REQUIRE(at);
        auto client = test::make_node(io);
        const auto key = node->id().public_key();
        // Read the events, as an application would, so they do not pile up.
        auto drain = [](service& svc) -> asio::awaitable<void> {
          for (;;) {
            auto ev = co_await svc.next_event();
            if (!ev) co_return;
          }
        };
        asio::co_spawn(io, drain(*node), asio::detached);
        asio::co_spawn(io, drain(*client), asio::detached);
        auto cycle = [&]() -> asio::awaitable<void> {
          auto info = co_await client->connect(*at, key);
          REQUIRE(info);
          client->disconnect(info->id);
        };
        for (int i = 0; i < 500; ++i) co_await cycle();  // warm-up: pools, caches
        co_await test::sleep_for(milliseconds(200));
        const auto fds_before = open_fds();
        const auto rss_before = rss_kib();
        for (int i = 0; i < 10000; ++i) co_await cycle();
        // Let the last closes finish on both ends.
        const auto deadline = clock::now() + seconds(10);
        while ((node->peers().size() + client->peers().size() > 0 || open_fds() > fds_before) &&
               clock::now() < deadline)
          co_await test::sleep_for(milliseconds(10));
        CHECK(open_fds() <= fds_before);
        MESSAGE("RSS " << rss_before << " KiB -> " << rss_kib() << " KiB over 10 000 cycles");
        // ASan's quarantine holds freed memory on purpose; LSan checks leaks there.
        if (!asan) CHECK(rss_kib() < rss_before + 16 * 1024);
        co_await client->stop();
        co_await node->stop();
      },
      seconds(600));
}
