// The STUN agent on real UDP sockets on loopback: a node asks another where
// it appears to be, retransmits into silence and gives up on schedule, is
// cancelled cleanly, reads error responses, and rate-limits the requests it
// answers; and connection info between two nodes, each the other's STUN
// server through the UDP port its hello or admit named.
#include "crust/service.hpp"
#include "nat/stun_agent.hpp"

#include "support/co_test.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

using namespace crust;
namespace asio = boost::asio;
namespace ip = asio::ip;
using nat::stun_agent;
namespace stun = nat::stun;

namespace {

std::shared_ptr<transport::udp_mux> open_mux(asio::io_context& io, const char* addr = "127.0.0.1") {
  auto m = transport::udp_mux::open(io.get_executor(), {ip::make_address(addr), 0});
  REQUIRE(m);
  asio::co_spawn(io, (*m)->run(), asio::detached);
  return *m;
}

const stun::retransmission quick{milliseconds(30), 3, 2};

}  // namespace

TEST_CASE("stun agent: a node learns its address from another node, and the server counts it") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = open_mux(io), b = open_mux(io);
    auto client = stun_agent::attach(a);
    auto server = stun_agent::attach(b);
    auto r = co_await client->binding(b->local_endpoint());
    REQUIRE_MESSAGE(r, r.error().message());
    CHECK(r->mapped == a->local_endpoint());
    CHECK(r->server == b->local_endpoint());
    CHECK(r->response_origin == std::optional(b->local_endpoint()));
    CHECK(r->software == "crust");
    CHECK(r->requests == 1);
    CHECK(r->rtt.has_value());
    CHECK(server->stats().requests_answered == 1);
    CHECK(client->stats().responses == 1);
    // Both ways, several at once, over one socket each.
    std::vector<result<nat::binding_result>> many;
    for (int i = 0; i < 5; ++i) many.push_back(co_await server->binding(a->local_endpoint()));
    for (const auto& m : many) {
      REQUIRE(m);
      CHECK(m->mapped == b->local_endpoint());
    }
    a->close();
    b->close();
  });
}

TEST_CASE("stun agent: a dual-stack socket asks an IPv4 server and is told its IPv4 address") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = open_mux(io, "::"), b = open_mux(io);
    auto client = stun_agent::attach(a);
    auto server = stun_agent::attach(b);
    auto r = co_await client->binding(b->local_endpoint());
    REQUIRE_MESSAGE(r, r.error().message());
    CHECK(r->mapped.address() == ip::make_address("127.0.0.1"));
    CHECK(r->mapped.port() == a->local_endpoint().port());
    CHECK(r->server == b->local_endpoint());
    a->close();
    b->close();
  });
}

TEST_CASE("stun agent: silence is retransmitted into on schedule and then times out") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = open_mux(io), quiet = open_mux(io);  // a socket with no STUN handler
    auto client = stun_agent::attach(a);
    const auto t0 = clock::now();
    auto r = co_await client->binding(quiet->local_endpoint(), quick);
    const auto took = clock::now() - t0;
    REQUIRE_FALSE(r);
    CHECK(r.error() == make_error_code(errc::timed_out));
    CHECK(client->stats().requests_sent == 3);
    CHECK(quiet->stats().unclaimed == 3);
    // 0, 30, 90 ms, then 2 RTOs: no sooner than 150 ms (a lower bound only).
    CHECK(took >= milliseconds(150));
    a->close();
    quiet->close();
  });
}

TEST_CASE("stun agent: cancelling a transaction, closing the agent") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = open_mux(io), quiet = open_mux(io);
    auto client = stun_agent::attach(a);
    auto r = co_await with_timeout(client->binding(quiet->local_endpoint()), milliseconds(50));
    REQUIRE_FALSE(r);
    CHECK(r.error() == make_error_code(errc::timed_out));
    // A closed agent fails what is in flight and refuses new work.
    auto ex = co_await asio::this_coro::executor;
    result<nat::binding_result> inflight = make_error_code(errc::ok);
    bool done = false;
    asio::co_spawn(
        ex,
        [&]() -> asio::awaitable<void> {
          inflight = co_await client->binding(quiet->local_endpoint());
          done = true;
        },
        asio::detached);
    co_await test::sleep_for(milliseconds(20));
    client->close();
    co_await test::sleep_for(milliseconds(20));
    CHECK(done);
    REQUIRE_FALSE(inflight);
    CHECK(inflight.error() == make_error_code(asio::error::not_connected));
    auto after = co_await client->binding(quiet->local_endpoint());
    CHECK(after.error() == make_error_code(asio::error::not_connected));
    a->close();
    quiet->close();
  });
}

TEST_CASE("stun agent: an error response is server_error; a forged id is ignored") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = open_mux(io), b = open_mux(io);
    auto client = stun_agent::attach(a);
    // A server that first answers with a made-up transaction id, then 420.
    // (A raw pointer: the socket holding its own shared_ptr would leak.)
    b->on(transport::datagram_kind::stun,
          [s = b.get()](byte_span d, const transport::udp_endpoint& from) {
            auto req = stun::message::parse(d);
            if (!req) return;
            auto forged = stun::builder(stun::msg_class::success, stun::binding,
                                        stun::random_transaction_id())
                              .add_address(stun::attr::xor_mapped_address, from);
            s->send(std::move(forged).finish(), from);
            auto err = stun::builder(stun::msg_class::error, stun::binding, req->id())
                           .add_error(420, "Unknown Attribute");
            s->send(std::move(err).finish(), from);
          });
    auto r = co_await client->binding(b->local_endpoint(), quick);
    REQUIRE_FALSE(r);
    CHECK(r.error() == make_error_code(errc::server_error));
    CHECK(client->stats().responses_unmatched == 1);
    a->close();
    b->close();
  });
}

TEST_CASE("stun agent: requests beyond the per-source rate get no answer") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = open_mux(io), b = open_mux(io);
    stun_agent::options o;
    o.per_source_per_second = 1;
    o.burst = 3;
    auto server = stun_agent::attach(b, o);
    auto client = stun_agent::attach(a);
    int answered = 0, timed_out = 0;
    for (int i = 0; i < 6; ++i) {
      auto r = co_await client->binding(b->local_endpoint(), {milliseconds(20), 1, 2});
      if (r)
        ++answered;
      else if (r.error() == make_error_code(errc::timed_out))
        ++timed_out;
    }
    CHECK(answered == 3);
    CHECK(timed_out == 3);
    CHECK(server->stats().requests_limited == 3);
    a->close();
    b->close();
  });
}

TEST_CASE("nat discovery (loopback): two nodes as observers see no NAT, and the node hairpins") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = test::make_node(io), b = test::make_node(io), c = test::make_node(io);
    for (auto* n : {a.get(), b.get(), c.get()}) {
      auto started = co_await n->start();
      REQUIRE(started);
    }
    nat::discover_options o;
    for (auto* n : {b.get(), c.get()}) {
      const auto u = n->local_udp_endpoint();
      REQUIRE(u);
      o.observers.emplace_back(u->address(), u->port());
    }
    auto r = co_await a->discover_nat(o);
    CHECK(r.mapping == nat::mapping_behaviour::no_nat);
    CHECK(r.allocation == nat::allocation_behaviour::preserving);
    CHECK(r.hairpinning == std::optional<bool>(true));
    CHECK(r.filtering == nat::filtering_behaviour::unknown);  // no RFC 5780 observer
    CHECK(r.observations.size() == 2 + o.extra_sockets);
    const auto mine = a->local_udp_endpoint();
    REQUIRE(r.external.size() == 1);
    CHECK(r.external[0].port() == mine->port());
    // A node whose observers are silent learns nothing, and says so.
    nat::discover_options silent;
    silent.observers = {{ip::make_address("127.0.0.1"), 9}};
    silent.timing = {milliseconds(20), 2, 2};
    auto none = co_await a->discover_nat(silent);
    CHECK(none.mapping == nat::mapping_behaviour::unknown);
    CHECK_FALSE(none.notes.empty());
    for (auto* n : {a.get(), b.get(), c.get()}) co_await n->stop();
  });
}

TEST_CASE("connection info (loopback): peers tell their UDP ports and serve as STUN servers") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = test::make_node(io), b = test::make_node(io);
    auto early = co_await b->prepare_connection_info();
    CHECK(early.error() == make_error_code(asio::error::not_connected));
    auto at_a = co_await a->start();
    auto at_b = co_await b->start();
    REQUIRE(at_a);
    REQUIRE(at_b);
    const auto udp_a = a->local_udp_endpoint(), udp_b = b->local_udp_endpoint();
    REQUIRE(udp_a);
    REQUIRE(udp_b);
    const auto lo = ip::make_address("127.0.0.1");
    const std::vector<nat::candidate> hosts = {
        {nat::candidate_transport::tcp, nat::candidate_kind::host, lo, at_b->port()},
        {nat::candidate_transport::udp, nat::candidate_kind::host, lo, udp_b->port()}};
    const auto has_note = [](const events::connection_info_prepared& e, std::string_view what) {
      return std::any_of(e.notes.begin(), e.notes.end(),
                         [&](const std::string& n) { return n.find(what) != n.npos; });
    };

    // Alone: its host candidates, and a note saying why there is no more.
    auto alone = co_await b->prepare_connection_info();
    REQUIRE(alone);
    CHECK(alone->pub().candidates == hosts);
    auto ev = co_await test::next_of<events::connection_info_prepared>(*b);
    CHECK(ev.nonce == to_hex(alone->pub().nonce));
    CHECK(has_note(ev, "no STUN server"));
    CHECK(alone->pub().nat.mapping == nat::mapping_behaviour::unknown);

    // Connected, each side knows the other's UDP port (hello and admit).
    auto peer = co_await b->connect(*at_a, a->id().public_key());
    REQUIRE(peer);
    CHECK(peer->udp_port == udp_a->port());
    const auto deadline = clock::now() + seconds(10);
    while (a->peers().empty()) {
      REQUIRE(clock::now() < deadline);
      co_await test::sleep_for(milliseconds(1));
    }
    CHECK(a->peers().front().udp_port == udp_b->port());

    // So a is b's STUN server: the hint says no NAT (a saw b's own
    // endpoint, which is not repeated as a reflexive candidate).
    auto info = co_await b->prepare_connection_info();
    REQUIRE(info);
    ev = co_await test::next_of<events::connection_info_prepared>(*b);
    CHECK_FALSE(has_note(ev, "no STUN server"));
    CHECK(info->pub().nat.mapping == nat::mapping_behaviour::no_nat);
    CHECK(info->pub().candidates == hosts);
    CHECK(info->pub().nonce != alone->pub().nonce);
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    auto read = nat::connection_info::decode(info->pub().encode(), a->cfg().network_name, now);
    REQUIRE(read);
    CHECK(read->key == b->id().public_key());
    CHECK(!nat::connection_info::decode(info->pub().encode(), "another network", now));

    // A silent server, and peers not asked: nobody answered, and it says so.
    prepare_options silent;
    silent.stun_servers = {{lo, 9}};
    silent.peer_servers = 0;
    silent.discover_nat = false;
    auto quiet = co_await b->prepare_connection_info(silent);
    REQUIRE(quiet);
    ev = co_await test::next_of<events::connection_info_prepared>(*b);
    CHECK(has_note(ev, "no STUN server answered"));
    CHECK(quiet->pub().candidates == hosts);
    co_await a->stop();
    co_await b->stop();
  });
}

namespace {
// Two started nodes and a connection info of each.
struct infos_pair {
  std::unique_ptr<service> a, b;
  std::optional<nat::private_connection_info> ia, ib;
};
asio::awaitable<infos_pair> two_with_infos(asio::io_context& io) {
  infos_pair p{test::make_node(io), test::make_node(io), {}, {}};
  for (auto* n : {p.a.get(), p.b.get()}) {
    auto started = co_await n->start();
    REQUIRE(started);
  }
  auto ia = co_await p.a->prepare_connection_info();
  auto ib = co_await p.b->prepare_connection_info();
  REQUIRE(ia);
  REQUIRE(ib);
  p.ia = std::move(*ia);
  p.ib = std::move(*ib);
  co_return p;
}
}  // namespace

TEST_CASE("rendezvous (loopback): two nodes connect from each other's connection info") {
  enum mode { both, udp_only, tcp_only };
  for (const mode m : {both, udp_only, tcp_only}) {
    CAPTURE(static_cast<int>(m));
    test::run([m](asio::io_context& io) -> asio::awaitable<void> {
      auto [a, b, ia, ib] = co_await two_with_infos(io);
      rendezvous_options o;
      o.tcp = m != udp_only;
      o.udp = m != tcp_only;
      using namespace asio::experimental::awaitable_operators;
      // Named, not bound: clang 14 cannot use structured bindings in doctest messages.
      auto both = co_await (a->connect(*ia, ib->pub(), o) && b->connect(*ib, ia->pub(), o));
      auto& ra = std::get<0>(both);
      auto& rb = std::get<1>(both);
      REQUIRE_MESSAGE(ra, ra.error().message());
      REQUIRE_MESSAGE(rb, rb.error().message());
      CHECK(ra->id == b->id().id());
      CHECK(rb->id == a->id().id());
      if (m == udp_only) {
        CHECK(ra->transport == transport::kind::utp);
        CHECK(rb->transport == transport::kind::utp);
      }
      if (m == tcp_only) CHECK(ra->transport == transport::kind::tcp);
      // One connection, the same at both ends, carrying traffic both ways.
      const auto deadline = clock::now() + seconds(10);
      while (!(a->peers().size() == 1 && b->peers().size() == 1 &&
               a->peers()[0].connection_id == b->peers()[0].connection_id)) {
        REQUIRE(clock::now() < deadline);
        co_await test::sleep_for(milliseconds(5));
      }
      REQUIRE(a->send(b->id().id(), bytes{1, 2, 3}));
      REQUIRE(b->send(a->id().id(), bytes{4}));
      auto at_b = co_await test::next_of<events::new_message>(*b);
      auto at_a = co_await test::next_of<events::new_message>(*a);
      CHECK(at_b.payload == bytes{1, 2, 3});
      CHECK(at_a.payload == bytes{4});
      co_await a->stop(milliseconds(200));
      co_await b->stop(milliseconds(200));
    });
  }
}

TEST_CASE("rendezvous (loopback): wrong infos are refused; a silent peer fails at the deadline") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto [a, b, ia, ib] = co_await two_with_infos(io);
    // b's private info is not a's to use; nor is a's own public one a peer.
    auto wrong = co_await a->connect(*ib, ia->pub());
    CHECK(wrong.error() == make_error_code(errc::wrong_peer_key));
    auto self = co_await a->connect(*ia, ia->pub());
    CHECK(self.error() == make_error_code(errc::wrong_peer_key));
    // b never punches back, and we only try UDP: the punch runs out.
    rendezvous_options o;
    o.tcp = false;
    o.punch.deadline = milliseconds(300);
    auto silent = co_await a->connect(*ia, ib->pub(), o);
    REQUIRE(!silent);
    CHECK(a->peers().empty());
    co_await a->stop(milliseconds(200));
    co_await b->stop(milliseconds(200));
  });
}
