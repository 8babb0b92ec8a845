// Interop with an implementation no one here wrote: Debian's python3-dissononce
// runs tests/interop/noise_peer.py, which speaks Crust's handshake, framing and
// message records. Both directions, both patterns.
#include "crust/secure/crypto.hpp"
#include "support/co_test.hpp"
#include "support/process.hpp"
#include "transports/tcp.hpp"

#include <filesystem>

using namespace crust;
namespace asio = boost::asio;

namespace {

const std::string python = "/usr/bin/python3";

std::string script() {
  return (std::filesystem::path(CRUST_SOURCE_ROOT) / "tests" / "interop" / "noise_peer.py")
      .string();
}

secure::key32 random_key() {
  secure::key32 k{};
  secure::random_fill(k);
  return k;
}

bytes payload(std::size_t n, std::size_t k) {
  // The peer's own rule: byte i of message k is (i*7 + k) % 251.
  bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<byte>((i * 7 + k) % 251);
  return b;
}

void require_python() {
  REQUIRE_MESSAGE(std::filesystem::exists(python), "Debian's /usr/bin/python3 is required");
}

}  // namespace

TEST_CASE("interop: our dialler against a dissononce responder (XK and XX)") {
  require_python();
  for (bool by_key : {true, false}) {
    CAPTURE(by_key);
    test::run([by_key](asio::io_context& io) -> asio::awaitable<void> {
      auto x = random_key(), e = random_key();
      auto theirs = identity::from_secrets(e, x);  // the same keys the script derives
      test::child_process peer(
          io.get_executor(),
          {python, script(), "--role", "responder", "--port", "0", "--x25519-private", to_hex(x),
           "--ed25519-seed", to_hex(e), "--network", "crust", "--timeout", "30"});
      auto first = co_await peer.read_line();
      REQUIRE(first);
      REQUIRE(first->rfind("PORT ", 0) == 0);
      auto port = static_cast<unsigned short>(std::stoi(first->substr(5)));
      auto me = test::make_node(io);
      transport::tcp_endpoint at(asio::ip::make_address("127.0.0.1"), port);
      result<peer_info> info = make_error_code(errc::not_connected);
      if (by_key)
        info = co_await me->connect(at, theirs.public_key());
      else
        info = co_await me->connect(at);
      REQUIRE(info);
      CHECK(info->id == theirs.id());
      CHECK(info->address_only == !by_key);
      const std::vector<std::size_t> sizes = {0, 1, 100, 65512, 65513, 200000};
      for (std::size_t k = 0; k < sizes.size(); ++k)
        REQUIRE(me->send(theirs.id(), payload(sizes[k], k)));
      for (std::size_t k = 0; k < sizes.size(); ++k) {
        auto echo = co_await test::next_of<events::new_message>(*me);
        CHECK(echo.payload == payload(sizes[k], k));
      }
      me->disconnect(theirs.id());  // a close record: the script exits 0 on it
      auto rc = co_await peer.wait();
      CHECK(rc == std::optional<int>(0));
      co_await me->stop();
    });
  }
}

TEST_CASE("interop: a dissononce dialler against our listener (XK and XX)") {
  require_python();
  for (bool by_key : {true, false}) {
    CAPTURE(by_key);
    test::run([by_key](asio::io_context& io) -> asio::awaitable<void> {
      auto me = test::make_node(io);
      auto at = co_await me->start();
      REQUIRE(at);
      std::vector<std::string> argv = {python,      script(),
                                       "--role",    "initiator",
                                       "--port",    std::to_string(at->port()),
                                       "--network", "crust",
                                       "--sizes",   "0,1,100,65512,65513,200000",
                                       "--timeout", "30"};
      if (by_key) {
        argv.push_back("--remote-key");
        argv.push_back(me->id().public_key().to_string());
      }
      test::child_process peer(io.get_executor(), argv);
      auto accepted = co_await test::next_of<events::bootstrap_accept>(*me);
      CHECK(accepted.peer.address_only == !by_key);
      // Echo until the script closes.
      for (;;) {
        auto ev = co_await with_timeout(me->next_event(), seconds(30));
        REQUIRE(ev);
        if (auto* m = std::get_if<events::new_message>(&*ev)) {
          REQUIRE(me->send(m->peer, m->payload, {m->prio, false}));
          continue;
        }
        if (auto* lost = std::get_if<events::lost_peer>(&*ev)) {
          CHECK(lost->reason == errc::peer_closed);
          break;
        }
      }
      auto rc = co_await peer.wait();
      CHECK(rc == std::optional<int>(0));
      co_await me->stop();
    });
  }
}

TEST_CASE("interop: another network name fails against dissononce too") {
  require_python();
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto me = test::make_node(io);
    auto at = co_await me->start();
    REQUIRE(at);
    test::child_process peer(
        io.get_executor(),
        {python, script(), "--role", "initiator", "--port", std::to_string(at->port()), "--network",
         "elsewhere", "--remote-key", me->id().public_key().to_string(), "--timeout", "10"});
    auto rc = co_await peer.wait();
    CHECK(rc == std::optional<int>(1));
    CHECK(me->peers().empty());
    co_await me->stop();
  });
}
