// Contact gossip between real services on loopback: records spread along a
// line of nodes, are dialled back before they are passed on or cached, and
// lookups walk the line to connect to a node no one introduced.
#include "support/co_test.hpp"

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

const bootstrap::gossip_entry* entry_of(const std::vector<bootstrap::gossip_entry>& known,
                                        const public_id& id) {
  for (const auto& e : known)
    if (e.record.key.id == id) return &e;
  return nullptr;
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
          const auto* e = entry_of(known, last);
          return e && e->proven;
        },
        seconds(30));
    REQUIRE(learnt);
    const auto known = nodes[0]->known_peers();
    const auto* e = entry_of(known, last);
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
    CHECK(entry_of(nodes[0]->known_peers(), target) == nullptr);
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
