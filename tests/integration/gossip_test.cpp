// Contact gossip between real services on loopback: records spread along a
// line of nodes, are dialled back before they are passed on or cached, and
// lookups walk the line to connect to a node no one introduced.
#include "support/co_test.hpp"

#include <set>
#include <string>

using namespace crust;
namespace asio = boost::asio;
using test::eventually;

namespace {

config gossip_config(duration interval) {
  auto c = test::loopback_config();
  c.gossip_interval = interval;
  c.enable_utp = false;
  return c;
}

// Nodes 0..n-1, node i dialling node i+1: a line, no other introductions.
asio::awaitable<std::vector<std::unique_ptr<service>>> line(asio::io_context& io, std::size_t n,
                                                            duration interval) {
  std::vector<std::unique_ptr<service>> nodes;
  for (std::size_t i = 0; i < n; ++i) {
    nodes.push_back(test::make_node(io, gossip_config(interval)));
    REQUIRE(co_await nodes.back()->start());
  }
  for (std::size_t i = 0; i + 1 < n; ++i) {
    auto r = co_await nodes[i]->connect(*nodes[i + 1]->local_endpoint(),
                                        nodes[i + 1]->id().public_key());
    REQUIRE(r);
  }
  co_return nodes;
}

// A copy: known_peers() returns a temporary.
std::optional<bootstrap::gossip_entry> entry_of(const std::vector<bootstrap::gossip_entry>& known,
                                                const public_id& id) {
  for (const auto& e : known)
    if (e.record.key.id == id) return e;
  return std::nullopt;
}

asio::awaitable<void> stop_all(std::vector<std::unique_ptr<service>>& nodes) {
  for (auto& n : nodes) co_await n->stop(milliseconds(200));
}

}  // namespace

TEST_CASE("gossip: records spread along a line, proven by dial-back, and feed the cache") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto nodes = co_await line(io, 5, milliseconds(150));
    const auto last = nodes[4]->id().id();
    // Node 0 was told of node 4 by gossip alone (through 1, 2 and 3), and
    // dialled it back before believing it.
    const bool learnt = co_await eventually(
        [&] {
          const auto known = nodes[0]->known_peers();
          const auto e = entry_of(known, last);
          return e && e->proven;
        },
        seconds(30));
    REQUIRE(learnt);
    const auto known = nodes[0]->known_peers();
    const auto e = entry_of(known, last);
    CHECK(e->source != last);  // an informant, not node 4 itself
    CHECK(e->record.tcp_endpoint() == nodes[4]->local_endpoint());
    // The cache took it from that informant, after the dial-back.
    bool cached = false;
    for (const auto& c : nodes[0]->cached_peers())
      if (c.key.id == last) {
        cached = true;
        CHECK(c.source == e->source.to_string());
        CHECK(c.endpoint == *nodes[4]->local_endpoint());
      }
    CHECK(cached);
    // Not connected to it: the dial-back closed its socket after the handshake.
    for (const auto& p : nodes[0]->peers()) CHECK(p.id != last);
    // Connecting by id alone uses the record.
    auto c = co_await nodes[0]->connect(last);
    REQUIRE(c);
    CHECK(c->id == last);
    auto s = nodes[0]->sample_peers(10);
    CHECK_FALSE(s.empty());
    for (const auto& r : s) CHECK(r.key.id != nodes[0]->id().id());
    co_await stop_all(nodes);
  });
}

TEST_CASE("gossip: a lookup walks the line when no round has run yet") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    // Rounds an hour apart: only the pushes made when peers connect, and
    // the lookup's own finds.
    auto nodes = co_await line(io, 5, seconds(3600));
    const auto target = nodes[4]->id().id();
    // Each node dialled the next, so it holds the next's record, proven;
    // node 0 knows only node 1.
    CHECK_FALSE(entry_of(nodes[0]->known_peers(), target));
    auto near = co_await nodes[0]->find_peers_near(target, 3);
    REQUIRE(near);
    REQUIRE_FALSE(near->empty());
    CHECK(near->front().key.id == target);
    CHECK(near->front().tcp_endpoint() == nodes[4]->local_endpoint());
    auto c = co_await nodes[0]->connect(target);
    REQUIRE(c);
    CHECK(c->id == target);
    // An id no one has: not_found, after asking everyone reachable.
    const auto nobody = identity::generate().id();
    auto none = co_await nodes[0]->connect(nobody);
    REQUIRE_FALSE(none);
    CHECK(none.error() == errc::not_found);
    co_await stop_all(nodes);
  });
}

TEST_CASE("gossip: off, it says so; stopped, it knows nothing") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = gossip_config(milliseconds(100));
    cfg.enable_gossip = false;
    auto a = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    auto r = co_await a->find_peers_near(identity::generate().id());
    REQUIRE_FALSE(r);
    CHECK(r.error() == asio::error::operation_not_supported);
    CHECK(a->known_peers().empty());
    co_await a->stop();
    auto after = co_await a->find_peers_near(identity::generate().id());
    REQUIRE_FALSE(after);
    CHECK(after.error() == errc::shutting_down);
  });
}

// Port rotation: a node moves its listener three times on its schedule; a
// peer connected before stays connected throughout, each old port refuses
// once its grace is over, and a node that joins later still finds the
// rotating node by id (gossip carried its newest record).
TEST_CASE("port rotation: three moves, a peer stays connected, a newcomer still finds the node") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    // Rounds every 200 ms, so many messages a minute are allowed.
    auto busy = gossip_config(milliseconds(200));
    busy.gossip_messages_per_minute = 1000;
    auto rotating = busy;
    rotating.port_rotation_interval = milliseconds(1500);
    rotating.port_rotation_grace = milliseconds(400);
    auto a = test::make_node(io, rotating);
    auto b = test::make_node(io, busy);
    {
      auto r = co_await a->rotate_port();  // not started: nothing to move
      REQUIRE_FALSE(r);
      CHECK(r.error() == asio::error::not_connected);
    }
    REQUIRE(co_await a->start());
    REQUIRE(co_await b->start());
    std::vector<std::uint16_t> ports{a->local_endpoint()->port()};
    auto ab = co_await b->connect(*a->local_endpoint(), a->id().public_key());
    REQUIRE(ab);
    const auto link = ab->remote;  // A's first port, as B dialled it
    for (int turn = 1; turn <= 3; ++turn) {
      // The old port closes at the end of its grace; the new one is advertised.
      auto stopped = co_await test::next_of<events::listener_stopped>(*a, seconds(15));
      const auto now = a->status();
      CHECK(now.port_rotations == static_cast<std::uint64_t>(turn));
      CHECK(stopped.endpoint == "tcp 127.0.0.1:" + std::to_string(ports.back()));
      ports.push_back(a->local_endpoint()->port());
      // Nothing listens on the old port any more.
      asio::ip::tcp::socket probe(io);
      auto [ec] = co_await probe.async_connect({asio::ip::address_v4::loopback(), ports[turn - 1]},
                                               asio::as_tuple(asio::use_awaitable));
      CHECK(ec == asio::error::connection_refused);
      // The connection made before any rotation carries messages both ways.
      const std::string line = "turn " + std::to_string(turn);
      REQUIRE(b->send(a->id().id(), bytes(line.begin(), line.end())));
      auto got = co_await test::next_of<events::new_message>(*a);
      CHECK(std::string(got.payload.begin(), got.payload.end()) == line);
      REQUIRE(a->send(b->id().id(), bytes(line.begin(), line.end())));
      auto back = co_await test::next_of<events::new_message>(*b);
      CHECK(std::string(back.payload.begin(), back.payload.end()) == line);
    }
    CHECK(std::set<std::uint16_t>(ports.begin(), ports.end()).size() == 4);
    REQUIRE(b->peers().size() == 1);
    CHECK(b->peers().front().remote == link);  // the same connection, undisturbed
    // B learnt A's newest record from A's push and dialled it back.
    const bool fresh = co_await eventually(
        [&] {
          const auto e = entry_of(b->known_peers(), a->id().id());
          return e && e->proven && e->record.tcp_endpoint() == a->local_endpoint();
        },
        seconds(10));
    CHECK(fresh);
    // A newcomer that knows only B finds A by id, at its current port.
    auto c = test::make_node(io, busy);
    REQUIRE(co_await c->start());
    REQUIRE(co_await c->connect(*b->local_endpoint(), b->id().public_key()));
    // B's greeting (its record and those it dialled back) reaches C.
    const bool greeted =
        co_await eventually([&] { return entry_of(c->known_peers(), b->id().id()).has_value(); });
    REQUIRE(greeted);
    const auto now_at = a->local_endpoint();
    auto ca = co_await c->connect(a->id().id());
    REQUIRE(ca);
    CHECK(ca->id == a->id().id());
    CHECK(ca->remote == "127.0.0.1:" + std::to_string(now_at->port()));
    co_await a->stop(milliseconds(200));
    co_await b->stop(milliseconds(200));
    co_await c->stop(milliseconds(200));
    auto after = co_await a->rotate_port();
    REQUIRE_FALSE(after);
    CHECK(after.error() == errc::shutting_down);
  });
}

// A record held from before a rotation no longer works once the old port
// closes: connect(id) then looks a newer one up and dials that.
TEST_CASE("port rotation: connect(id) with a stale record looks up the newer one") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    // A never rotates on its own (rotate_port() moves it); B's rounds are
    // quick, so it dials A's new record back; C's are an hour apart.
    auto rotating = gossip_config(seconds(3600));
    rotating.port_rotation_grace = milliseconds(1);
    auto quick = gossip_config(milliseconds(200));
    quick.gossip_messages_per_minute = 1000;
    auto a = test::make_node(io, rotating);
    auto b = test::make_node(io, quick);
    auto c = test::make_node(io, gossip_config(seconds(3600)));
    REQUIRE(co_await a->start());
    REQUIRE(co_await b->start());
    REQUIRE(co_await c->start());
    REQUIRE(co_await b->connect(*a->local_endpoint(), a->id().public_key()));
    // C learns A's record from B, then leaves B: nothing refreshes it.
    REQUIRE(co_await c->connect(*b->local_endpoint(), b->id().public_key()));
    const bool learnt =
        co_await eventually([&] { return entry_of(c->known_peers(), a->id().id()).has_value(); });
    REQUIRE(learnt);
    c->disconnect(b->id().id());
    const auto old_at = a->local_endpoint();
    // A moves a second later (a record's time is in whole seconds); B hears of it.
    co_await test::sleep_for(milliseconds(1100));
    auto moved = co_await a->rotate_port();
    REQUIRE(moved);
    CHECK(moved->port() != old_at->port());
    const bool b_knows = co_await eventually([&] {
      const auto e = entry_of(b->known_peers(), a->id().id());
      return e && e->proven && e->record.tcp_endpoint() == *moved;
    });
    REQUIRE(b_knows);
    (void)co_await test::next_of<events::listener_stopped>(*a, seconds(5));
    const auto held = entry_of(c->known_peers(), a->id().id());
    REQUIRE(held);
    CHECK(held->record.tcp_endpoint() == old_at);  // stale
    auto ca = co_await c->connect(a->id().id());
    REQUIRE(ca);
    CHECK(ca->remote == "127.0.0.1:" + std::to_string(moved->port()));
    co_await a->stop(milliseconds(200));
    co_await b->stop(milliseconds(200));
    co_await c->stop(milliseconds(200));
  });
}
