// examples/echo-embedded as a process: a Crust peer's messages come back,
// the program's own admin server counts them, and "quit" ends it.
#include "support/co_test.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

using namespace crust;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::string example(const char* var) {
  const char* p = std::getenv(var);
  REQUIRE_MESSAGE(p, var << " must name the example's binary (meson test sets it)");
  return p;
}

// One admin command, one line back.
asio::awaitable<std::string> admin(asio::io_context& io, const asio::ip::tcp::endpoint& at,
                                   std::string command) {
  asio::ip::tcp::socket s(io);
  auto [ec] = co_await s.async_connect(at, asio::as_tuple(asio::use_awaitable));
  REQUIRE_FALSE(ec);
  command += "\n";
  co_await asio::async_write(s, asio::buffer(command), asio::as_tuple(asio::use_awaitable));
  asio::streambuf in;
  auto [rec, n] = co_await asio::async_read_until(s, in, '\n', asio::as_tuple(asio::use_awaitable));
  REQUIRE_FALSE(rec);
  co_return std::string(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + n - 1);
}

}  // namespace

TEST_CASE("examples: the echo service embedded in another program's io_context") {
  test::temp_dir d;
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    test::child_process echo(io.get_executor(), {example("CRUST_ECHO_EMBEDDED"), "--key",
                                                 (d.path / "echo.key").string()});
    auto line = co_await echo.read_line();
    REQUIRE(line);
    const auto j = json::parse(*line).as_object();
    auto crust_at = transport::parse_endpoint(j.at("crust").as_string());
    auto admin_at = transport::parse_endpoint(j.at("admin").as_string());
    auto key = peer_key::parse(j.at("key").as_string());
    REQUIRE(crust_at);
    REQUIRE(admin_at);
    REQUIRE(key);

    CHECK(co_await admin(io, *admin_at, "stats") == "echoed 0 messages, 0 bytes, 0 peers");
    auto me = test::make_node(io);
    auto peer = co_await me->connect(*crust_at, *key);
    REQUIRE(peer);
    for (const std::string text : {"ping", "pong pong"}) {
      REQUIRE(me->send(peer->id, bytes(text.begin(), text.end())));
      auto back = co_await test::next_of<events::new_message>(*me);
      CHECK(std::string(back.payload.begin(), back.payload.end()) == text);
    }
    CHECK(co_await admin(io, *admin_at, "stats") == "echoed 2 messages, 13 bytes, 1 peers");
    CHECK(co_await admin(io, *admin_at, "help") == "commands: stats, quit");
    CHECK(co_await admin(io, *admin_at, "quit") == "bye");
    auto rc = co_await echo.wait(seconds(10));
    CHECK(rc == 0);
    co_await me->stop(milliseconds(100));
  });
}
