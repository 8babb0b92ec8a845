// The STUN agent on real UDP sockets on loopback: a node asks another where
// it appears to be, retransmits into silence and gives up on schedule, is
// cancelled cleanly, reads error responses, and rate-limits the requests it
// answers.
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
