// TCP toward NATs, on loopback: STUN over TCP on every node's listener
// (answered from the listening port's view, and a Noise dial on the same
// listener still works), and TCP simultaneous open's preambles, which
// pick one Noise initiator whether the other end's kernel accepted the
// connection or both connects completed.
#include "crust/service.hpp"
#include "nat/tcp_stun.hpp"
#include "transports/stream_io.hpp"
#include "transports/tcp.hpp"

#include "support/co_test.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

using namespace crust;
namespace asio = boost::asio;

namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// An info whose only candidate is `at` as a TCP reflexive endpoint (on
// loopback, where no NAT maps it, that is the listener itself).
nat::private_connection_info reflexive_info(const service& s, const transport::tcp_endpoint& at) {
  std::vector<nat::candidate> c{
      {nat::candidate_transport::tcp, nat::candidate_kind::reflexive, at.address(), at.port()}};
  return nat::private_connection_info::prepare(s.id(), s.cfg().network_name, c, {}, unix_now());
}

}  // namespace

TEST_CASE("tcp stun: a node's listener answers Binding over TCP from the asker's listening port") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto server = test::make_node(io);
    auto at = co_await server->start();
    REQUIRE(at);
    // The asker's "listening port": any port bound with SO_REUSEPORT.
    auto listener = transport::tcp_listen(io.get_executor(), {at->address(), 0});
    REQUIRE(listener);
    const auto local = listener->local_endpoint();
    auto mapped = co_await nat::tcp_binding(local, *at, seconds(5));
    REQUIRE_MESSAGE(mapped, mapped.error().message());
    CHECK(*mapped == local);  // no NAT: the very port the listener has
    // Again from the same port (the server closed first: no TIME_WAIT here).
    auto again = co_await nat::tcp_binding(local, *at, seconds(5));
    REQUIRE_MESSAGE(again, again.error().message());
    CHECK(*again == local);
    // The listener still takes Crust connections.
    auto client = test::make_node(io);
    auto c = co_await client->connect(*at, server->id().public_key());
    REQUIRE_MESSAGE(c, c.error().message());
    // A server with STUN off closes without an answer.
    auto quiet_cfg = test::loopback_config();
    quiet_cfg.enable_stun_server = false;
    auto quiet = test::make_node(io, quiet_cfg);
    auto qat = co_await quiet->start();
    REQUIRE(qat);
    auto none = co_await nat::tcp_binding(local, *qat, seconds(5));
    CHECK_FALSE(none);
    co_await client->stop();
    co_await server->stop();
    co_await quiet->stop();
  });
}

TEST_CASE("tcp stun: a dual-stack listener tells an IPv4 asker its IPv4 address") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.listen_address = "::";
    cfg.enable_port_mapping = false;
    auto server = test::make_node(io, cfg);
    auto at = co_await server->start();
    REQUIRE(at);
    const transport::tcp_endpoint v4(asio::ip::make_address("127.0.0.1"), at->port());
    auto listener = transport::tcp_listen(io.get_executor(), {v4.address(), 0});
    REQUIRE(listener);
    auto mapped = co_await nat::tcp_binding(listener->local_endpoint(), v4, seconds(5));
    REQUIRE_MESSAGE(mapped, mapped.error().message());
    CHECK(mapped->address().is_v4());
    CHECK(*mapped == listener->local_endpoint());
    co_await server->stop();
  });
}

TEST_CASE("tcp stun: half a request, a long one and a non-STUN opening are not answered") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.handshake_timeout = milliseconds(500);
    auto server = test::make_node(io, cfg);
    auto at = co_await server->start();
    REQUIRE(at);
    // A header that claims more than 548 bytes: read as a (failing) handshake.
    auto s = co_await transport::tcp_dial(*at);
    REQUIRE(s);
    bytes big{0x00, 0x01, 0x02, 0x40, 0x21, 0x12, 0xA4, 0x42};
    big.resize(20 + 0x240, 0);
    CHECK(co_await transport::write_all(*s, big));
    bytes reply(20);
    auto r = co_await transport::read_exact(*s, reply);
    // Not STUN: read as a handshake (an XX responder answers any 48 bytes).
    if (r) CHECK_FALSE(nat::stun::looks_like_stun(reply));
    // A header and then silence: closed at the handshake deadline.
    auto t = co_await transport::tcp_dial(*at);
    REQUIRE(t);
    const bytes half{0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xA4, 0x42, 1,  2,
                     3,    4,    5,    6,    7,    8,    9,    10,   11, 12};
    CHECK(co_await transport::write_all(*t, half));
    auto r2 = co_await transport::read_exact(*t, reply);
    CHECK_FALSE(r2);
    co_await server->stop();
  });
}

TEST_CASE("tcp simultaneous open: the preambles choose one initiator, and the path is punched") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    for (int round = 0; round < 5; ++round) {
      CAPTURE(round);
      auto a = test::make_node(io), b = test::make_node(io);
      auto at_a = co_await a->start();
      auto at_b = co_await b->start();
      REQUIRE(at_a);
      REQUIRE(at_b);
      auto ia = reflexive_info(*a, *at_a);
      auto ib = reflexive_info(*b, *at_b);
      rendezvous_options o;
      o.tcp = false;  // no plain dial: only the simultaneous open
      o.udp = false;
      std::optional<result<peer_info>> rb;
      asio::co_spawn(
          io, [&]() -> asio::awaitable<void> { rb = co_await b->connect(ib, ia.pub(), o); },
          asio::detached);
      auto ra = co_await a->connect(ia, ib.pub(), o);
      REQUIRE(co_await test::eventually([&] { return rb.has_value(); }));
      REQUIRE_MESSAGE(ra, ra.error().message());
      REQUIRE_MESSAGE(*rb, rb->error().message());
      CHECK(ra->transport == transport::kind::tcp);
      CHECK(ra->path == path_kind::punched);
      CHECK((*rb)->path == path_kind::punched);
      CHECK(ra->connection_id == (*rb)->connection_id);  // one connection
      CHECK_FALSE(ra->address_only);                     // XK: the rendezvous knew the key
      REQUIRE(a->send(b->id().id(), {'s', 'o'}));
      auto m = co_await test::next_of<events::new_message>(*b);
      CHECK(m.payload == bytes{'s', 'o'});
      co_await a->stop();
      co_await b->stop();
    }
  });
}

TEST_CASE(
    "tcp simultaneous open: a preamble naming a peer with no rendezvous is closed unanswered") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto node = test::make_node(io);
    auto at = co_await node->start();
    REQUIRE(at);
    // Drain the start-up events, so that any later one is this test's.
    for (;;) {
      auto ev = co_await with_timeout(node->next_event(), milliseconds(200));
      if (!ev) break;
    }
    // An id of all zeros wins the choice of initiator against anyone:
    // honoured, it would make the node run a handshake of its own, outside
    // the limits on inbound ones, and report a connect_failure for each.
    for (int i = 0; i < 3; ++i) {
      auto s = co_await transport::tcp_dial(*at);
      REQUIRE(s);
      bytes preamble(8 + 32, 0);
      const std::string_view magic = "CRUSTSO1";
      std::copy(magic.begin(), magic.end(), preamble.begin());
      REQUIRE(co_await transport::write_all(*s, preamble));
      bytes back(1);
      auto got = co_await with_timeout(transport::read_exact(*s, back), seconds(5));
      REQUIRE_FALSE(got);  // closed: neither our preamble nor anything else came back
      CHECK(got.error() != errc::timed_out);
    }
    auto ev = co_await with_timeout(node->next_event(), milliseconds(500));
    CHECK_MESSAGE(!ev, "an event was reported: " << (ev ? describe(*ev) : std::string()));
    co_await node->stop();
  });
}
