// Real sockets on loopback: several services in one process.
#include "crust/secure/crypto.hpp"
#include "crust/secure/handshake.hpp"
#include "nat/relay.hpp"
#include "support/co_test.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/write.hpp>

using namespace crust;
namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

transport::tcp_endpoint ep_of(service& s) {
  return *s.local_endpoint();
}

using test::eventually;

// A raw TCP connection to `node` that has run the Noise initiator (XK) as
// `who`, for tests that then speak the protocol by hand.
struct raw_peer {
  transport::stream stream;
  secure::handshake_result hs;
};
asio::awaitable<raw_peer> raw_dial(service& node, const identity& who, const config& cfg) {
  auto s = co_await transport::tcp_dial(ep_of(node));
  REQUIRE(s);
  auto hs = co_await secure::run_handshake(
      *s, secure::handshake::initiator(who, cfg.network_name, node.id().public_key()));
  REQUIRE(hs);
  co_return raw_peer{std::move(*s), std::move(*hs)};
}

bytes pattern_bytes(std::size_t n, std::uint32_t seed) {
  bytes b(n);
  for (auto& v : b) {
    seed = seed * 1664525u + 1013904223u;
    v = static_cast<byte>(seed >> 24);
  }
  return b;
}

}  // namespace

TEST_CASE("loopback: connect by key, exchange messages, both ends agree on the connection") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = test::make_node(io);
    auto b = test::make_node(io);
    auto got5 = co_await a->start();
    REQUIRE(got5);
    auto got6 = co_await b->start();
    REQUIRE(got6);
    auto info = co_await a->connect(ep_of(*b), b->id().public_key());
    REQUIRE(info);
    CHECK(info->id == b->id().id());
    CHECK(info->transport == transport::kind::tcp);
    CHECK_FALSE(info->inbound);
    auto accepted = co_await test::next_of<events::bootstrap_accept>(*b);
    CHECK(accepted.peer.id == a->id().id());
    CHECK(accepted.peer.inbound);
    CHECK(accepted.peer.connection_id == info->connection_id);

    REQUIRE(a->send(b->id().id(), bytes{'h', 'i'}));
    auto m = co_await test::next_of<events::new_message>(*b);
    CHECK(m.peer == a->id().id());
    CHECK(m.payload == bytes{'h', 'i'});
    REQUIRE(b->send(a->id().id(), bytes(70000, 7), {priority::high, false}));
    auto back = co_await test::next_of<events::new_message>(*a);
    CHECK(back.payload == bytes(70000, 7));
    CHECK(back.prio == priority::high);
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: an address-only dial (Noise XX) learns the peer's key") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = test::make_node(io);
    auto b = test::make_node(io);
    auto got7 = co_await b->start();
    REQUIRE(got7);
    auto info = co_await a->connect(ep_of(*b));
    REQUIRE(info);
    CHECK(info->address_only);
    CHECK(info->key == b->id().public_key());
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: 64 MiB each way arrive intact (SHA-256)") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto nodes = co_await test::connected_pair(io);
    auto& a = nodes.a;
    auto& b = nodes.b;
    constexpr std::size_t chunk = 1 << 20, count = 64;
    // Each side streams 64 MiB in 1 MiB messages, flushing every 4 MiB so
    // the send queue (8 MiB) never has to drop.
    auto sender = [&](service& from, service& to,
                      std::uint32_t seed) -> asio::awaitable<secure::key32> {
      secure::key32 h{};
      for (std::size_t i = 0; i < count; ++i) {
        auto msg = pattern_bytes(chunk, seed + static_cast<std::uint32_t>(i));
        h = secure::sha256(h, msg);  // a hash chain over the messages in order
        REQUIRE(from.send(to.id().id(), std::move(msg)));
        if (i % 4 == 3) {
          auto f = co_await from.flush(to.id().id());
          REQUIRE(f);
        }
      }
      co_return h;
    };
    auto receiver = [&](service& at) -> asio::awaitable<secure::key32> {
      secure::key32 h{};
      for (std::size_t i = 0; i < count; ++i) {
        auto m = co_await test::next_of<events::new_message>(at, seconds(60));
        REQUIRE(m.payload.size() == chunk);
        h = secure::sha256(h, m.payload);
      }
      co_return h;
    };
    auto [sent_ab, sent_ba, got_b, got_a] =
        co_await (sender(*a, *b, 1) && sender(*b, *a, 1000) && receiver(*b) && receiver(*a));
    CHECK(sent_ab == got_b);
    CHECK(sent_ba == got_a);
    auto st = a->stats(b->id().id());
    REQUIRE(st);
    CHECK(st->bytes_sent == count * chunk);
    CHECK(st->bytes_received == count * chunk);
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: 100 peers connect to one node at once") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto hub = test::make_node(io);
    auto got10 = co_await hub->start();
    REQUIRE(got10);
    std::vector<std::unique_ptr<service>> peers;
    for (int i = 0; i < 100; ++i) peers.push_back(test::make_node(io));
    int connected = 0, failed = 0;
    for (auto& p : peers) {
      asio::co_spawn(
          io,
          [&, raw = p.get()]() -> asio::awaitable<void> {
            auto r = co_await raw->connect(ep_of(*hub), hub->id().public_key());
            if (r && raw->send(hub->id().id(), bytes{'x'}))
              ++connected;
            else
              ++failed;
          },
          asio::detached);
    }
    const bool ok102 = co_await eventually([&] { return connected + failed == 100; }, seconds(60));
    REQUIRE(ok102);
    CHECK(connected == 100);
    int messages = 0;
    while (messages < 100) {
      (void)co_await test::next_of<events::new_message>(*hub);
      ++messages;
    }
    CHECK(hub->peers().size() == 100);
    for (auto& p : peers) co_await p->stop(milliseconds(200));
    const bool ok103 = co_await eventually([&] { return hub->peers().empty(); });
    CHECK(ok103);
    co_await hub->stop();
  });
}

TEST_CASE("loopback: a peer of another network name is refused with a clear reason") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg_a = test::loopback_config();
    cfg_a.network_name = "alpha";
    auto cfg_b = test::loopback_config();
    cfg_b.network_name = "beta";
    auto a = test::make_node(io, cfg_a);
    auto b = test::make_node(io, cfg_b);
    auto got11 = co_await b->start();
    REQUIRE(got11);
    auto r = co_await a->connect(ep_of(*b), b->id().public_key());
    REQUIRE_FALSE(r);
    CHECK((r.error() == errc::handshake_rejected || r.error() == errc::handshake_failed));
    CHECK(r.error().message().find("network name") != std::string::npos);
    auto failure = co_await test::next_of<events::connect_failure>(*a);
    CHECK(failure.error == r.error());
    auto xx = co_await a->connect(ep_of(*b));
    REQUIRE_FALSE(xx);
    CHECK(b->peers().empty());
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: dialling with the wrong key is refused") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = test::make_node(io);
    auto b = test::make_node(io);
    auto got12 = co_await b->start();
    REQUIRE(got12);
    auto stranger = identity::generate();
    auto r = co_await a->connect(ep_of(*b), stranger.public_key());
    REQUIRE_FALSE(r);
    // The responder cannot read our first message; it tries XX instead,
    // whose answer we cannot read either.
    CHECK((r.error() == errc::handshake_rejected || r.error() == errc::handshake_failed));
    CHECK(r.error().message().find("wrong public key") != std::string::npos);
    // Right static key, wrong id: the responder's proof does not match.
    peer_key forged{stranger.id(), b->id().public_key().noise_static};
    auto r2 = co_await a->connect(ep_of(*b), forged);
    REQUIRE_FALSE(r2);
    CHECK(r2.error() == errc::wrong_peer_key);
    CHECK(a->peers().empty());
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: an oversized message is refused to the sender; the connection lives") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto small = test::loopback_config();
    small.max_message_size = 100000;
    auto big = test::loopback_config();
    big.max_message_size = 1 << 20;
    auto nodes = co_await test::connected_pair(io, small, big);
    auto& a = nodes.a;
    auto& b = nodes.b;
    CHECK(a->send(b->id().id(), bytes(100001)).error() == errc::message_too_large);
    REQUIRE(a->send(b->id().id(), bytes(100000, 1)));
    auto got1 = co_await test::next_of<events::new_message>(*b);

    CHECK(got1.payload.size() == 100000);
    // b allows 1 MiB; a receives at most 100000: a skips it, says so, goes on.
    REQUIRE(b->send(a->id().id(), bytes(300000, 2)));
    REQUIRE(b->send(a->id().id(), bytes(10, 3)));
    auto too_large = co_await test::next_of<events::message_too_large>(*a);
    CHECK(too_large.size == 300000);
    auto got2 = co_await test::next_of<events::new_message>(*a);

    CHECK(got2.payload == bytes(10, 3));
    CHECK(a->peers().size() == 1);
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: simultaneous dials settle on one connection, the same at both ends") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    for (int round = 0; round < 20; ++round) {
      auto a = test::make_node(io);
      auto b = test::make_node(io);
      auto got15 = co_await a->start();
      REQUIRE(got15);
      auto got16 = co_await b->start();
      REQUIRE(got16);
      auto [ra, rb] = co_await (a->connect(ep_of(*b), b->id().public_key()) &&
                                b->connect(ep_of(*a), a->id().public_key()));
      REQUIRE(ra);
      REQUIRE(rb);
      // Let the losing connection close; then exactly one remains.
      co_await test::sleep_for(milliseconds(50));
      const bool ok105 = co_await eventually([&] {
        return a->peers().size() == 1 && b->peers().size() == 1 &&
               a->peers()[0].connection_id == b->peers()[0].connection_id;
      });
      REQUIRE(ok105);
      // And it carries traffic both ways.
      REQUIRE(a->send(b->id().id(), bytes{1}));
      REQUIRE(b->send(a->id().id(), bytes{2}));
      auto got3 = co_await test::next_of<events::new_message>(*b);

      CHECK(got3.payload == bytes{1});
      auto got4 = co_await test::next_of<events::new_message>(*a);

      CHECK(got4.payload == bytes{2});
      co_await a->stop(milliseconds(200));
      co_await b->stop(milliseconds(200));
    }
  });
}

// A rendezvous races dials to several endpoints of one peer; one that
// hangs (a host candidate behind a NAT that drops) must not hold up the
// others. The lab matrix under delay lost its punched paths this way: the
// µTP dial over the path joined a TCP dial in flight to the same peer.
TEST_CASE(
    "loopback: a dial to a peer does not wait for a hanging dial to another of its endpoints") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.handshake_timeout = seconds(60);  // the hanging dial outlives the test's checks
    auto a = test::make_node(io, cfg);
    auto b = test::make_node(io);
    auto mine = co_await a->start();  // µTP dials from a's UDP socket
    REQUIRE(mine);
    auto at = co_await b->start();
    REQUIRE(at);
    // A tarpit: it accepts and never answers, so a handshake to it hangs.
    auto acc = transport::tcp_listen(io.get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
    REQUIRE(acc);
    std::vector<asio::ip::tcp::socket> held;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          for (;;) {
            auto [ec, s] = co_await acc->async_accept(asio::as_tuple(asio::use_awaitable));
            if (ec) co_return;
            held.push_back(std::move(s));
          }
        },
        asio::detached);
    const auto tarpit = acc->local_endpoint();
    const auto key = b->id().public_key();
    int hanging_done = 0;
    auto hang = [&]() -> asio::awaitable<void> {
      auto r = co_await a->connect(tarpit, key);
      CHECK_FALSE(r);
      ++hanging_done;
    };
    asio::co_spawn(io, hang(), asio::detached);
    const bool accepted = co_await eventually([&] { return held.size() == 1; });
    REQUIRE(accepted);
    // A second dial to the same endpoint joins the first: no second socket.
    asio::co_spawn(io, hang(), asio::detached);
    co_await test::sleep_for(milliseconds(50));
    CHECK(held.size() == 1);
    // A dial to the peer's real endpoint goes ahead at once, over TCP and
    // over µTP, while the tarpit's handshake still hangs.
    auto tcp = co_await with_timeout(a->connect(*at, key), seconds(10));
    REQUIRE_MESSAGE(tcp, tcp.error().message());
    CHECK(tcp->transport == transport::kind::tcp);
    CHECK(hanging_done == 0);
    a->disconnect(b->id().id());
    const bool gone = co_await eventually([&] { return a->peers().empty(); });
    REQUIRE(gone);
    const auto udp = b->local_udp_endpoint();
    REQUIRE(udp);
    auto utp = co_await with_timeout(a->connect(*udp, key, transport::kind::utp), seconds(10));
    REQUIRE_MESSAGE(utp, utp.error().message());
    CHECK(utp->transport == transport::kind::utp);
    CHECK(hanging_done == 0);
    // Closing the tarpit ends the hanging dial and the one that joined it.
    acc->close();
    for (auto& s : held) s.close();
    const bool ended = co_await eventually([&] { return hanging_done == 2; });
    CHECK(ended);
    co_await a->stop(milliseconds(100));
    co_await b->stop(milliseconds(100));
  });
}

// A peer keeps the newest connection one initiator makes (a restarted
// node's dial replaces what it left behind), so a race's slower path
// must not say hello once a faster one has: it would replace the winner
// at the peer. Both dials here handshake; one connection remains, the
// one both calls return, the same at both ends.
TEST_CASE("loopback: two dials racing to one peer over TCP and µTP leave the first, at both ends") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    for (int round = 0; round < 10; ++round) {
      auto a = test::make_node(io);
      auto b = test::make_node(io);
      auto mine = co_await a->start();
      REQUIRE(mine);
      auto at = co_await b->start();
      REQUIRE(at);
      const auto udp = b->local_udp_endpoint();
      REQUIRE(udp);
      const auto key = b->id().public_key();
      auto both = co_await (a->connect(*at, key) && a->connect(*udp, key, transport::kind::utp));
      auto& by_tcp = std::get<0>(both);
      auto& by_utp = std::get<1>(both);
      REQUIRE_MESSAGE(by_tcp, by_tcp.error().message());
      REQUIRE_MESSAGE(by_utp, by_utp.error().message());
      CHECK(by_tcp->connection_id == by_utp->connection_id);
      const bool settled = co_await eventually([&] {
        return a->peers().size() == 1 && b->peers().size() == 1 &&
               b->peers()[0].connection_id == by_tcp->connection_id &&
               a->peers()[0].connection_id == by_tcp->connection_id;
      });
      CHECK(settled);
      REQUIRE(a->send(b->id().id(), bytes{7}));
      auto got = co_await test::next_of<events::new_message>(*b);
      CHECK(got.payload == bytes{7});
      co_await a->stop(milliseconds(100));
      co_await b->stop(milliseconds(100));
    }
  });
}

TEST_CASE("loopback: a peer that goes silent is lost within the heartbeat timeout") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.heartbeat_interval = milliseconds(100);
    cfg.heartbeat_timeout = milliseconds(500);
    auto a = test::make_node(io, cfg);
    auto got17 = co_await a->start();
    REQUIRE(got17);
    // A real peer that completes the handshake and then never sends again.
    auto mute = identity::generate();
    auto raw = co_await raw_dial(*a, mute, cfg);
    co_await test::say_hello(raw.stream, raw.hs);
    (void)co_await test::next_of<events::bootstrap_accept>(*a);
    auto t0 = clock::now();
    auto lost = co_await test::next_of<events::lost_peer>(*a, seconds(10));
    CHECK(lost.peer == mute.id());
    CHECK(lost.reason == errc::connection_lost);
    CHECK(clock::now() - t0 >= milliseconds(500));
    // The node said why before it closed.
    secure::frame_opener opener(std::move(raw.hs.keys.receive));
    auto said = co_await test::read_close(raw.stream, opener);
    REQUIRE(said.has_value());
    CHECK(said->reason == close_reason::timeout);
    co_await a->stop();
  });
}

TEST_CASE("loopback: a peer that breaks the record rules is told so, lost, and the node goes on") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    auto a = test::make_node(io, cfg);
    auto started = co_await a->start();
    REQUIRE(started);
    auto rogue = identity::generate();
    auto raw = co_await raw_dial(*a, rogue, cfg);
    secure::frame_sealer sealer(std::move(raw.hs.keys.send));
    secure::frame_opener opener(std::move(raw.hs.keys.receive));
    const std::vector<bytes> hello{secure::encode_hello(node_role::node, false)};
    co_await test::send_frame(raw.stream, sealer, hello);
    (void)co_await test::next_of<events::bootstrap_accept>(*a);
    // An authenticated frame whose record has no known type.
    const std::vector<bytes> unknown{bytes{0x7f, 1, 2, 3}};
    co_await test::send_frame(raw.stream, sealer, unknown);
    auto lost = co_await test::next_of<events::lost_peer>(*a);
    CHECK(lost.peer == rogue.id());
    CHECK(lost.reason == errc::protocol_violation);
    auto said = co_await test::read_close(raw.stream, opener);
    REQUIRE(said.has_value());
    CHECK(said->reason == close_reason::protocol_error);
    CHECK_FALSE(said->text.empty());
    // Another peer still connects and is heard.
    auto b = test::make_node(io, cfg);
    auto info = co_await b->connect(ep_of(*a), a->id().public_key());
    REQUIRE(info);
    REQUIRE(b->send(a->id().id(), bytes{1, 2, 3}));
    auto m = co_await test::next_of<events::new_message>(*a);
    CHECK(m.payload == bytes{1, 2, 3});
    co_await b->stop();
    co_await a->stop();
  });
}

TEST_CASE("loopback: a peer that asks for relay answers and never reads them is disconnected") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    auto a = test::make_node(io, cfg);
    auto started = co_await a->start();
    REQUIRE(started);
    auto rogue = identity::generate();
    auto raw = co_await raw_dial(*a, rogue, cfg);
    secure::frame_sealer sealer(std::move(raw.hs.keys.send));
    const std::vector<bytes> hello{secure::encode_hello(node_role::node, false)};
    co_await test::send_frame(raw.stream, sealer, hello);
    (void)co_await test::next_of<events::bootstrap_accept>(*a);
    // Data for circuits the node never had: each gets a close back ("no
    // such circuit"), about three times its size. The rogue reads none.
    bool stopped = false;
    std::size_t sent = 0;
    auto flood = [&]() -> asio::awaitable<void> {
      std::uint32_t n = 0;
      while (!stopped && sent < (std::size_t{64} << 20)) {
        bytes frame;
        sealer.open_frame(frame);
        for (int i = 0; i < 4000; ++i) {
          const auto r = nat::relay::encode(nat::relay::data{{n++ % (1u << 30), false}, {1}});
          put_u16(frame, static_cast<std::uint16_t>(r.size()));
          append(frame, r);
        }
        REQUIRE(sealer.close_frame(frame));
        auto [ec, w] = co_await asio::async_write(raw.stream, asio::buffer(frame),
                                                  asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;  // the node hung up
        sent += w;
      }
    };
    bool flood_done = false;
    asio::co_spawn(io, flood(), [&](std::exception_ptr) { flood_done = true; });
    auto lost = co_await test::next_of<events::lost_peer>(*a);
    stopped = true;
    CHECK(lost.peer == rogue.id());
    CHECK(lost.reason == errc::protocol_violation);
    MESSAGE(sent << " bytes of relay records sent before the node hung up");
    while (!flood_done) co_await test::sleep_for(milliseconds(10));
    // Another peer still connects and is heard.
    auto b = test::make_node(io, cfg);
    auto info = co_await b->connect(ep_of(*a), a->id().public_key());
    REQUIRE(info);
    REQUIRE(b->send(a->id().id(), bytes{1, 2, 3}));
    auto m = co_await test::next_of<events::new_message>(*a);
    CHECK(m.payload == bytes{1, 2, 3});
    co_await b->stop();
    co_await a->stop();
  });
}

TEST_CASE("loopback: a peer that closes abruptly mid-transfer is lost; the node goes on") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = test::make_node(io);
    auto b = test::make_node(io);
    auto got18 = co_await a->start();
    REQUIRE(got18);
    auto got19 = co_await b->connect(ep_of(*a), a->id().public_key());
    REQUIRE(got19);
    (void)co_await test::next_of<events::bootstrap_accept>(*a);
    REQUIRE(b->send(a->id().id(), bytes(2 << 20, 9)));
    co_await test::sleep_for(milliseconds(1));
    b.reset();  // destroyed without stop(): sockets close mid-message
    auto lost = co_await test::next_of<events::lost_peer>(*a);
    CHECK(lost.reason);
    // The node still accepts new peers.
    auto c = test::make_node(io);
    auto got20 = co_await c->connect(ep_of(*a), a->id().public_key());
    CHECK(got20);
    co_await c->stop();
    co_await a->stop();
  });
}

TEST_CASE("loopback: garbage instead of a handshake is dropped; the node goes on") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.handshake_timeout = milliseconds(300);
    auto a = test::make_node(io, cfg);
    auto got21 = co_await a->start();
    REQUIRE(got21);
    for (std::size_t n : {1u, 47u, 48u, 500u}) {
      auto s = co_await transport::tcp_dial(ep_of(*a));
      REQUIRE(s);
      bytes junk(n);
      secure::random_fill(junk);
      co_await asio::async_write(*s, asio::buffer(junk), asio::as_tuple(asio::use_awaitable));
    }
    co_await test::sleep_for(milliseconds(400));
    CHECK(a->peers().empty());
    auto b = test::make_node(io);
    auto got22 = co_await b->connect(ep_of(*a), a->id().public_key());
    CHECK(got22);
    co_await b->stop();
    co_await a->stop();
  });
}

TEST_CASE("loopback: signed messages carry a signature a third party can verify") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto nodes = co_await test::connected_pair(io);
    auto& a = nodes.a;
    auto& b = nodes.b;
    REQUIRE(a->send(b->id().id(), bytes{'o', 'k'}, {priority::normal, true}));
    auto m = co_await test::next_of<events::new_message>(*b);
    REQUIRE(m.signature);
    CHECK(verify_message_signature(a->id().id(), b->id().id(), m.payload, *m.signature));
    CHECK_FALSE(
        verify_message_signature(a->id().id(), b->id().id(), bytes{'n', 'o'}, *m.signature));
    CHECK_FALSE(verify_message_signature(b->id().id(), a->id().id(), m.payload, *m.signature));
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: under back-pressure low priority is dropped first and reported") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.send_queue_bytes = 64 * 1024;
    auto nodes = co_await test::connected_pair(io, cfg);
    auto& a = nodes.a;
    auto& b = nodes.b;
    // Without yielding, queue far more than the bound: the writer cannot run.
    for (int i = 0; i < 20; ++i)
      REQUIRE(a->send(b->id().id(), bytes(16 * 1024, 1), {priority::low, false}));
    REQUIRE(a->send(b->id().id(), bytes(16 * 1024, 2), {priority::high, false}));
    auto dropped = co_await test::next_of<events::messages_dropped>(*a);
    CHECK(dropped.count > 0);
    CHECK(dropped.lowest == priority::low);
    // The high-priority message arrives, and first.
    auto first = co_await test::next_of<events::new_message>(*b);
    CHECK(first.payload == bytes(16 * 1024, 2));
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: connect, next_event and flush return promptly when cancelled") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    // A listener that accepts and never answers: the handshake would hang.
    auto acc = transport::tcp_listen(io.get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
    REQUIRE(acc);
    auto a = test::make_node(io);
    timer zero(io);
    zero.expires_after(milliseconds(0));
    auto t0 = clock::now();
    auto r = co_await (a->connect(acc->local_endpoint(), identity::generate().public_key()) ||
                       zero.async_wait(asio::as_tuple(asio::use_awaitable)));
    CHECK(r.index() == 1);
    timer zero2(io);
    zero2.expires_after(milliseconds(0));
    auto e = co_await (a->next_event() || zero2.async_wait(asio::as_tuple(asio::use_awaitable)));
    CHECK(e.index() == 1);
    CHECK(clock::now() - t0 < seconds(4));  // far below the 5 s handshake timeout

    // flush() on a peer that reads nothing: the queue cannot drain.
    auto b = test::make_node(io);
    auto cfg = test::loopback_config();
    cfg.event_queue_messages = 1;  // b's readers stop after one undelivered message
    auto c = test::make_node(io, cfg);
    REQUIRE(co_await c->start());
    REQUIRE(co_await b->connect(ep_of(*c), c->id().public_key()));
    for (int i = 0; i < 64; ++i) REQUIRE(b->send(c->id().id(), bytes(64 * 1024, 1)));
    timer zero3(io);
    zero3.expires_after(milliseconds(0));
    auto f =
        co_await (b->flush(c->id().id()) || zero3.async_wait(asio::as_tuple(asio::use_awaitable)));
    CHECK(f.index() == 1);
    co_await b->stop(milliseconds(100));
    co_await c->stop(milliseconds(100));
    co_await a->stop();
  });
}

TEST_CASE("loopback: disconnect and stop close cleanly with reasons") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto nodes = co_await test::connected_pair(io);
    auto& a = nodes.a;
    auto& b = nodes.b;
    (void)co_await test::next_of<events::bootstrap_accept>(*b);
    REQUIRE(a->send(b->id().id(), bytes(1000, 5)));
    a->disconnect(b->id().id());  // what was queued still goes out first
    CHECK(a->peers().empty());
    auto m = co_await test::next_of<events::new_message>(*b);
    CHECK(m.payload.size() == 1000);
    auto lost = co_await test::next_of<events::lost_peer>(*b);
    CHECK(lost.reason == errc::peer_closed);
    CHECK(a->send(b->id().id(), bytes{1}).error() == errc::not_connected);
    co_await a->stop();
    co_await b->stop();
    auto after = co_await b->next_event();
    CHECK(after.error() == errc::shutting_down);
    auto again = co_await b->start();
    CHECK(again.error() == errc::shutting_down);
  });
}

namespace {

enum class mitm { tamper, replay, reorder, record };

// The dialler's hello frame: 18-byte sealed length, 2 + 7 bytes of record
// (type, role, flags, TCP listening port, UDP port), 16-byte tag.
constexpr std::size_t hello_frame = 18 + 9 + 16;

// A proxy between a dialler and `to` that edits the dialler's first frames
// after the handshake (48 + 160 bytes) and its hello: flips a bit, sends a
// frame twice, or swaps two frames. Each frame holds one 10-byte message:
// 18 + 2 + 17 + 16.
asio::awaitable<void> proxy(asio::ip::tcp::acceptor& acc, transport::tcp_endpoint to, mitm mode,
                            bytes* recorded = nullptr) {
  constexpr std::size_t handshake = 48 + 160 + hello_frame, frame = 53;
  auto in = co_await transport::tcp_accept(acc);
  auto out = co_await transport::tcp_dial(to);
  if (!in || !out) co_return;
  auto back = [&]() -> asio::awaitable<void> {
    std::vector<byte> buf(65536);
    for (;;) {
      auto [ec, n] =
          co_await out->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) break;
      auto [wec, w] = co_await asio::async_write(*in, asio::buffer(buf.data(), n),
                                                 asio::as_tuple(asio::use_awaitable));
      if (wec) break;
    }
    in->close();
  };
  auto forth = [&]() -> asio::awaitable<void> {
    bytes seen;
    std::size_t done = 0;  // bytes of `seen` already handled
    bool edited = false;
    std::vector<byte> buf(65536);
    for (;;) {
      auto [ec, n] =
          co_await in->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) break;
      seen.insert(seen.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      bytes send;
      if (done < handshake) {
        std::size_t upto = std::min(handshake, seen.size());
        send.insert(send.end(), seen.begin() + static_cast<std::ptrdiff_t>(done),
                    seen.begin() + static_cast<std::ptrdiff_t>(upto));
        if (recorded) append(*recorded, byte_span(send));
        done = upto;
      }
      if (mode == mitm::record) edited = true;  // record only: pass the rest through
      const std::size_t need = mode == mitm::reorder ? 2 * frame : frame;
      if (done == handshake && !edited && seen.size() >= handshake + need) {
        bytes f1(seen.begin() + handshake, seen.begin() + handshake + frame);
        if (mode == mitm::tamper) {
          f1[20] ^= 0x01;
          append(send, f1);
        } else if (mode == mitm::replay) {
          append(send, f1);
          append(send, f1);
        } else {
          bytes f2(seen.begin() + handshake + frame, seen.begin() + handshake + 2 * frame);
          append(send, f2);
          append(send, f1);
        }
        done = handshake + need;
        edited = true;
      }
      if (edited) {
        send.insert(send.end(), seen.begin() + static_cast<std::ptrdiff_t>(done), seen.end());
        done = seen.size();
      }
      auto [wec, w] =
          co_await asio::async_write(*out, asio::buffer(send), asio::as_tuple(asio::use_awaitable));
      if (wec) break;
    }
    out->close();
  };
  co_await (back() && forth());
}

}  // namespace

TEST_CASE(
    "loopback: a tampered, replayed or reordered frame closes the connection; nothing twice") {
  for (auto mode : {mitm::tamper, mitm::replay, mitm::reorder}) {
    test::run([mode](asio::io_context& io) -> asio::awaitable<void> {
      auto a = test::make_node(io);
      auto b = test::make_node(io);
      REQUIRE(co_await b->start());
      auto acc = transport::tcp_listen(io.get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
      REQUIRE(acc);
      asio::co_spawn(io, proxy(*acc, ep_of(*b), mode), asio::detached);
      auto info = co_await a->connect(acc->local_endpoint(), b->id().public_key());
      REQUIRE(info);
      // Flushing between the two keeps them in separate frames.
      REQUIRE(a->send(b->id().id(), bytes(10, 1)));
      (void)co_await a->flush(b->id().id());
      REQUIRE(a->send(b->id().id(), bytes(10, 2)));
      (void)co_await a->flush(b->id().id());
      int delivered = 0;
      error_code reason;
      for (;;) {
        auto ev = co_await with_timeout(b->next_event(), seconds(10));
        REQUIRE(ev);
        if (auto* m = std::get_if<events::new_message>(&*ev)) {
          CHECK(m->payload == bytes(10, 1));  // only the untouched first frame, once
          ++delivered;
        }
        if (auto* l = std::get_if<events::lost_peer>(&*ev)) {
          reason = l->reason;
          break;
        }
      }
      CHECK(reason == errc::frame_corrupt);
      CHECK(delivered == (mode == mitm::replay ? 1 : 0));
      auto lost = co_await test::next_of<events::lost_peer>(*a);  // the dialler learns too
      CHECK(lost.peer == b->id().id());
      co_await a->stop();
      co_await b->stop();
    });
  }
}

TEST_CASE("loopback: IPv6 listen and dial") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.listen_address = "::1";
    auto a = test::make_node(io, cfg);
    auto b = test::make_node(io, cfg);
    auto at = co_await b->start();
    REQUIRE(at);
    CHECK(at->address().is_v6());
    auto info = co_await a->connect(*at, b->id().public_key());
    REQUIRE(info);
    CHECK(info->remote.rfind("[::1]:", 0) == 0);
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("loopback: heartbeat timeout on a manual clock (no waiting for real time)") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.heartbeat_interval = seconds(5);
    cfg.heartbeat_timeout = seconds(600);  // ten minutes, which the test skips
    auto a = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    auto mute = identity::generate();
    auto raw = co_await raw_dial(*a, mute, cfg);
    co_await test::say_hello(raw.stream, raw.hs);
    (void)co_await test::next_of<events::bootstrap_accept>(*a);
    co_await test::sleep_for(milliseconds(10));
    CHECK(a->peers().size() == 1);
    clock::advance(seconds(601));
    auto lost = co_await test::next_of<events::lost_peer>(*a, seconds(60));
    CHECK(lost.reason == errc::connection_lost);
    co_await a->stop();
  });
}

TEST_CASE("loopback: a replayed handshake creates no session") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = test::make_node(io);
    auto b = test::make_node(io);
    auto started = co_await b->start();
    REQUIRE(started);
    auto acc = transport::tcp_listen(io.get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
    REQUIRE(acc);
    bytes dialler_bytes;  // the dialler's two handshake messages, as sent
    asio::co_spawn(io, proxy(*acc, ep_of(*b), mitm::record, &dialler_bytes), asio::detached);
    auto info = co_await a->connect(acc->local_endpoint(), b->id().public_key());
    REQUIRE(info);
    (void)co_await test::next_of<events::bootstrap_accept>(*b);
    co_await a->stop();
    (void)co_await test::next_of<events::lost_peer>(*b);
    REQUIRE(dialler_bytes.size() == 48 + 160 + hello_frame);

    // Replay them to b on a fresh connection: b answers with a fresh
    // ephemeral key, so the replayed third message cannot authenticate.
    auto s = co_await transport::tcp_dial(ep_of(*b));
    REQUIRE(s);
    auto [wec, wn] = co_await asio::async_write(*s, asio::buffer(dialler_bytes),
                                                asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(wec);
    std::vector<byte> sink(4096);
    std::size_t answered = 0;
    for (;;) {  // b's 144-byte answer, then b closes
      auto [ec, n] =
          co_await s->async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
      if (ec) break;
      answered += n;
    }
    CHECK(answered == 144);
    CHECK(b->peers().empty());
    // Nothing was accepted: the only events left are not BootstrapAccept.
    for (;;) {
      auto ev = co_await with_timeout(b->next_event(), milliseconds(100));
      if (!ev) break;
      CHECK_FALSE(std::holds_alternative<events::bootstrap_accept>(*ev));
    }
    co_await b->stop();
  });
}
