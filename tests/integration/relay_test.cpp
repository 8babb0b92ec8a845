// Introductions and relay circuits between real services on loopback: A
// and B each connected to R, not to each other. A reaches B through R by
// introduction (a direct path on loopback), or by a circuit when told to
// go straight to the relay; the circuit carries the secure channel end to
// end, megabytes both ways; the relay's refusals and quotas reach A as
// errors; and a relayed connection is replaced by a direct one without a
// message lost, duplicated or reordered.
#include "crust/service.hpp"

#include "support/co_test.hpp"

#include <map>

using namespace crust;
namespace asio = boost::asio;

namespace {

struct trio {
  std::unique_ptr<service> r, a, b;
};

// R listens; A and B connect to it (by key), and not to each other.
asio::awaitable<trio> make_trio(asio::io_context& io, config rc = test::loopback_config()) {
  trio t{test::make_node(io, std::move(rc)), test::make_node(io), test::make_node(io)};
  auto at = co_await t.r->start();
  REQUIRE(at);
  REQUIRE(co_await t.a->start());
  REQUIRE(co_await t.b->start());
  REQUIRE(co_await t.a->connect(*at, t.r->id().public_key()));
  REQUIRE(co_await t.b->connect(*at, t.r->id().public_key()));
  REQUIRE(co_await test::eventually([&] { return t.r->peers().size() == 2; }));
  co_return t;
}

std::optional<peer_info> peer_of(const service& s, const public_id& id) {
  for (const auto& p : s.peers())
    if (p.id == id) return p;
  return std::nullopt;
}

introduction_options relay_first() {
  introduction_options o;
  o.direct.tcp = false;
  o.direct.udp = false;
  o.upgrade = false;
  return o;
}

bytes numbered(std::uint32_t n, std::size_t size) {
  bytes b(size, static_cast<byte>(n));
  b[0] = static_cast<byte>(n >> 24);
  b[1] = static_cast<byte>(n >> 16);
  b[2] = static_cast<byte>(n >> 8);
  b[3] = static_cast<byte>(n);
  return b;
}

asio::awaitable<void> stop_all(trio& t) {
  co_await t.a->stop();
  co_await t.b->stop();
  co_await t.r->stop();
}

}  // namespace

TEST_CASE("relay: an introduction through a mutual peer ends in a direct connection") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto t = co_await make_trio(io);
    auto c = co_await t.a->connect_through(t.r->id().id(), t.b->id().id());
    REQUIRE_MESSAGE(c, c.error().message());
    CHECK(c->id == t.b->id().id());
    CHECK(c->path == path_kind::direct);  // loopback: B's host candidate answers
    CHECK(c->transport != transport::kind::relay);
    CHECK(c->connect_time > duration::zero());
    CHECK(co_await test::eventually([&] { return peer_of(*t.b, t.a->id().id()).has_value(); }));
    REQUIRE(t.a->send(t.b->id().id(), {'h', 'i'}));
    auto m = co_await test::next_of<events::new_message>(*t.b);
    CHECK(m.payload == bytes{'h', 'i'});
    co_await stop_all(t);
  });
}

TEST_CASE("relay: a circuit carries the secure channel end to end, 4 MiB each way") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto t = co_await make_trio(io);
    auto c = co_await t.a->connect_through(t.r->id().id(), t.b->id().id(), relay_first());
    REQUIRE_MESSAGE(c, c.error().message());
    CHECK(c->path == path_kind::relayed);
    CHECK(c->transport == transport::kind::relay);
    CHECK(c->remote.find("relay via") == 0);
    CHECK(c->key == t.b->id().public_key());  // Noise with B itself, not with R
    REQUIRE(co_await test::eventually([&] { return peer_of(*t.b, t.a->id().id()).has_value(); }));
    auto at_b = *peer_of(*t.b, t.a->id().id());
    CHECK(at_b.path == path_kind::relayed);
    CHECK(at_b.inbound);
    CHECK(at_b.connection_id == c->connection_id);
    // R relays, but is connected to neither as the other.
    CHECK_FALSE(peer_of(*t.r, t.r->id().id()));

    const std::size_t size = 1 << 20;
    for (std::uint32_t i = 0; i < 4; ++i) {
      REQUIRE(t.a->send(t.b->id().id(), numbered(i, size)));
      REQUIRE(t.b->send(t.a->id().id(), numbered(100 + i, size)));
    }
    for (std::uint32_t i = 0; i < 4; ++i) {
      auto mb = co_await test::next_of<events::new_message>(*t.b);
      CHECK(mb.payload == numbered(i, size));
      auto ma = co_await test::next_of<events::new_message>(*t.a);
      CHECK(ma.payload == numbered(100 + i, size));
    }
    co_await stop_all(t);
  });
}

TEST_CASE("relay: the relay's refusals reach the dialler as errors") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    {
      auto rc = test::loopback_config();
      rc.enable_relay = false;
      auto t = co_await make_trio(io, rc);
      auto c = co_await t.a->connect_through(t.r->id().id(), t.b->id().id(), relay_first());
      REQUIRE_FALSE(c);
      CHECK(c.error() == errc::not_allowed);
      co_await stop_all(t);
    }
    {
      auto t = co_await make_trio(io);
      // B leaves R: nobody to introduce to.
      t.b->disconnect(t.r->id().id());
      REQUIRE(co_await test::eventually([&] { return t.r->peers().size() == 1; }));
      auto c = co_await t.a->connect_through(t.r->id().id(), t.b->id().id());
      REQUIRE_FALSE(c);
      CHECK(c.error() == errc::not_connected);
      // Not connected to the would-be relay at all.
      auto d = co_await t.b->connect_through(t.r->id().id(), t.a->id().id());
      REQUIRE_FALSE(d);
      CHECK(d.error() == errc::not_connected);
      co_await stop_all(t);
    }
    {
      auto t = co_await make_trio(io);
      // B refuses A: the introduction is turned down.
      t.b->blacklist(t.a->id().id());
      auto c = co_await t.a->connect_through(t.r->id().id(), t.b->id().id());
      REQUIRE_FALSE(c);
      CHECK(c.error() == errc::not_allowed);
      co_await stop_all(t);
    }
  });
}

TEST_CASE("relay: a circuit past the relay's byte quota is closed, and the others live") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto rc = test::loopback_config();
    rc.relay_circuit_bytes = 512 * 1024;
    auto t = co_await make_trio(io, rc);
    auto c = co_await t.a->connect_through(t.r->id().id(), t.b->id().id(), relay_first());
    REQUIRE_MESSAGE(c, c.error().message());
    for (std::uint32_t i = 0; i < 4; ++i)
      REQUIRE(t.a->send(t.b->id().id(), numbered(i, 256 * 1024)));
    auto lost = co_await test::next_of<events::lost_peer>(*t.a);
    CHECK(lost.peer == t.b->id().id());
    // A and B are still connected to R.
    CHECK(peer_of(*t.a, t.r->id().id()).has_value());
    CHECK(peer_of(*t.b, t.r->id().id()).has_value());
    CHECK(t.r->peers().size() == 2);
    co_await stop_all(t);
  });
}

TEST_CASE("relay: a direct path replaces the circuit; nothing lost, duplicated or reordered") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto t = co_await make_trio(io);
    auto o = relay_first();
    o.upgrade = true;
    o.upgrade_first = milliseconds(300);
    o.direct.tcp = true;  // what the upgrade tries
    o.direct.udp = true;
    o.relay_after = duration::zero();
    o.direct_first = false;
    auto c = co_await t.a->connect_through(t.r->id().id(), t.b->id().id(), o);
    REQUIRE_MESSAGE(c, c.error().message());
    REQUIRE(c->path == path_kind::relayed);
    // Messages both ways, all through the switch of paths: every send is
    // taken (none refused while the connections change places).
    const std::uint32_t count = 3000;
    std::vector<std::uint32_t> at_b, at_a;
    bool switched = false;
    int refused = 0;
    for (std::uint32_t i = 0; i < count; ++i) {
      refused += t.a->send(t.b->id().id(), numbered(i, 600)) ? 0 : 1;
      refused += t.b->send(t.a->id().id(), numbered(i, 600)) ? 0 : 1;
      if (i % 10 == 0) co_await test::sleep_for(milliseconds(1));
      auto p = peer_of(*t.a, t.b->id().id());
      if (p && p->path != path_kind::relayed) switched = true;
    }
    CHECK(co_await test::eventually(
        [&] {
          auto p = peer_of(*t.a, t.b->id().id());
          return p && p->path != path_kind::relayed;
        },
        seconds(20)));
    CHECK(refused == 0);
    // Until `count` have come, or nothing more comes for 10 s.
    auto drain = [&](service& s, std::vector<std::uint32_t>& into) -> asio::awaitable<void> {
      while (into.size() < count) {
        auto ev = co_await with_timeout(s.next_event(), seconds(10));
        if (!ev) break;
        if (auto* m = std::get_if<events::new_message>(&*ev))
          into.push_back(get_u32(m->payload.data()));
      }
    };
    co_await drain(*t.b, at_b);
    co_await drain(*t.a, at_a);
    REQUIRE_MESSAGE(at_b.size() == count, "B got " << at_b.size() << " of " << count
                                                   << ", the last "
                                                   << (at_b.empty() ? -1 : int(at_b.back())));
    REQUIRE_MESSAGE(at_a.size() == count, "A got " << at_a.size() << " of " << count
                                                   << ", the last "
                                                   << (at_a.empty() ? -1 : int(at_a.back())));
    for (std::uint32_t i = 0; i < count; ++i) {
      if (at_b[i] != i || at_a[i] != i) {
        FAIL("message " << i << " out of order: b got " << at_b[i] << ", a got " << at_a[i]);
        break;
      }
    }
    auto final_path = peer_of(*t.a, t.b->id().id());
    REQUIRE(final_path);
    CHECK(final_path->transport != transport::kind::relay);
    MESSAGE("switched while sending: " << switched << ", now "
                                       << std::string(to_string(final_path->path)) << " over "
                                       << std::string(transport::to_string(final_path->transport)));
    co_await stop_all(t);
  });
}
