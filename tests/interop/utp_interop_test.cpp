// µTP interop with libutp, the reference implementation no one here wrote:
// the npm package utp-native (tests/interop/utp, installed by the test
// command) runs tests/interop/utp/utp_peer.js. 16 MiB each way, verified.
#include "support/co_test.hpp"
#include "support/process.hpp"
#include "support/utp_node.hpp"
#include "support/utp_sim.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <filesystem>
#include <sstream>

using namespace crust;
namespace asio = boost::asio;
using test::utp_node;

namespace {

const std::filesystem::path peer_dir =
    std::filesystem::path(CRUST_SOURCE_ROOT) / "tests" / "interop" / "utp";

std::string node_binary() {
  for (const char* p : {"/usr/bin/node", "/usr/local/bin/node", "/usr/bin/nodejs"})
    if (std::filesystem::exists(p)) return p;
  return {};
}

void require_peer() {
  REQUIRE_MESSAGE(!node_binary().empty(), "Node.js is required (tests/run-all.sh installs it)");
  REQUIRE_MESSAGE(std::filesystem::exists(peer_dir / "node_modules" / "utp-native"),
                  "run `npm ci --ignore-scripts` in tests/interop/utp (tests/run-all.sh does)");
}

std::vector<std::string> peer_argv(std::vector<std::string> args) {
  std::vector<std::string> argv{node_binary(), (peer_dir / "utp_peer.js").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// The first line starting with `prefix`, skipping others.
asio::awaitable<std::optional<std::string>> line_with(test::child_process& p,
                                                      const std::string& prefix,
                                                      duration limit = seconds(60)) {
  const auto deadline = clock::now() + limit;
  while (clock::now() < deadline) {
    auto line = co_await p.read_line(deadline - clock::now());
    if (!line) co_return std::nullopt;
    MESSAGE("libutp peer: " << *line);
    if (line->rfind(prefix, 0) == 0) co_return line;
  }
  co_return std::nullopt;
}

constexpr std::size_t total = 16 << 20;

}  // namespace

TEST_CASE("utp interop: our client against a libutp echo server, 16 MiB") {
  require_peer();
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    test::child_process server(io.get_executor(),
                               peer_argv({"server", "--host", "127.0.0.1", "--port", "0", "--mode",
                                          "echo", "--timeout", "90"}));
    auto listening = co_await line_with(server, "LISTENING ");
    REQUIRE(listening);
    const auto port = static_cast<std::uint16_t>(std::stoi(listening->substr(10)));
    auto me = utp_node::make(io, false);
    auto s = co_await me.mgr->connect({asio::ip::make_address("127.0.0.1"), port});
    REQUIRE(s);
    bytes sent(total), got(total);
    for (std::size_t i = 0; i < total; ++i) sent[i] = test::pattern_byte(i, 11);
    using namespace asio::experimental::awaitable_operators;
    const auto t0 = clock::now();
    auto writer = [&]() -> asio::awaitable<void> {
      auto [ec, n] =
          co_await asio::async_write(*s, asio::buffer(sent), asio::as_tuple(asio::use_awaitable));
      CHECK_FALSE(ec);
      CHECK(n == total);
    };
    auto reader = [&]() -> asio::awaitable<void> {
      auto [ec, n] =
          co_await asio::async_read(*s, asio::buffer(got), asio::as_tuple(asio::use_awaitable));
      CHECK_FALSE(ec);
      CHECK(n == total);
    };
    co_await (writer() && reader());
    const double secs = std::chrono::duration<double>(clock::now() - t0).count();
    CHECK(got == sent);
    MESSAGE("echoed 16 MiB through libutp in " << secs << " s; " << s->stats().packets_resent
                                               << " packets resent");
    s->shutdown_send();
    auto received = co_await line_with(server, "RECEIVED ");
    REQUIRE(received);
    CHECK(received->find("RECEIVED " + std::to_string(total) + " ") == 0);
    auto code = co_await server.wait(seconds(20));
    CHECK(code == 0);
    me.stop();
  });
}

TEST_CASE("utp interop: a libutp client against our echo server, 16 MiB") {
  require_peer();
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto me = utp_node::make(io, true);
    test::child_process client(
        io.get_executor(),
        peer_argv({"client", "--host", "127.0.0.1", "--port", std::to_string(me.at().port()),
                   "--bytes", std::to_string(total), "--mode", "echo", "--timeout", "90"}));
    auto s = co_await me.mgr->accept();
    REQUIRE(s);
    // Echo until the client ends its side.
    std::vector<byte> buf(256 * 1024);
    std::size_t echoed = 0;
    for (;;) {
      auto [ec, n] =
          co_await s->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (n > 0) {
        auto [wec, w] = co_await asio::async_write(*s, asio::buffer(buf.data(), n),
                                                   asio::as_tuple(asio::use_awaitable));
        REQUIRE_FALSE(wec);
        echoed += w;
      }
      if (ec) {
        CHECK(ec == asio::error::eof);
        break;
      }
      if (echoed == total) break;  // the client has what it asked for
    }
    CHECK(echoed == total);
    auto verdict = co_await line_with(client, "ECHOED ");
    REQUIRE(verdict);
    // "ECHOED N sha-of-sent sha-of-received": the client checked the two agree.
    std::istringstream words(*verdict);
    std::string tag, n, sha_sent, sha_got;
    words >> tag >> n >> sha_sent >> sha_got;
    CHECK(n == std::to_string(total));
    CHECK(sha_sent == sha_got);
    s->close();
    auto code = co_await client.wait(seconds(30));
    CHECK(code == 0);
    me.stop();
  });
}
