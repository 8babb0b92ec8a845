// The port mapper against a gateway of our own on loopback that speaks PCP,
// NAT-PMP only, refuses, or says nothing: which method wins, the notes when
// none does, renewal with the same nonce, deletion, maintain()'s lease
// cycle and cancellation. miniupnpd, a real gateway, is in the network lab
// (tests/netlab/portmap_test.sh), for all three protocols.
#include "nat/port_mapper.hpp"

#include "support/co_test.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/thread_pool.hpp>

using namespace crust;
namespace asio = boost::asio;
namespace ip = asio::ip;
namespace pmp = nat::pmp;

namespace {

enum class gateway_mode { pcp, natpmp_only, refusing, silent };

// A gateway on 127.0.0.1 that answers what it is sent according to its
// mode, and keeps every request.
struct fake_gateway {
  fake_gateway(asio::io_context& io, gateway_mode m)
      : sock(io, {ip::make_address("127.0.0.1"), 0}), mode(m) {
    asio::co_spawn(io, serve(), asio::detached);
  }
  ~fake_gateway() { close(); }
  void close() {
    boost::system::error_code ec;
    sock.close(ec);
  }
  std::uint16_t port() const { return sock.local_endpoint().port(); }

  asio::awaitable<void> serve() {
    std::array<byte, 1200> buf{};
    for (;;) {
      ip::udp::endpoint from;
      auto [ec, n] = co_await sock.async_receive_from(asio::buffer(buf), from,
                                                      asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      bytes req(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      requests.push_back(req);
      auto reply = answer(req);
      if (!reply.empty())
        co_await sock.async_send_to(asio::buffer(reply), from, asio::as_tuple(asio::use_awaitable));
    }
  }

  bytes answer(const bytes& q) {
    if (mode == gateway_mode::silent || q.size() < 2) return {};
    if (q[0] == 2) {  // PCP
      if (mode == gateway_mode::natpmp_only)
        return {0, static_cast<byte>(0x80 | q[1]), 0, 1, 0, 0, 0, 7};
      bytes a(q.begin(), q.begin() + 24);
      a[1] = static_cast<byte>(0x80 | q[1]);
      a[2] = 0;
      a[3] = mode == gateway_mode::refusing ? 2 : 0;  // NOT_AUTHORIZED
      put_u32_at(a, 4, get_u32(q.data() + 4) == 0 ? 0 : granted_lifetime);
      put_u32_at(a, 8, 77);  // epoch
      std::fill(a.begin() + 12, a.end(), 0);
      a.insert(a.end(), q.begin() + 24, q.begin() + 60);
      const std::uint16_t internal = get_u16(q.data() + 40);
      const std::uint16_t external = static_cast<std::uint16_t>(internal + 10000);
      a[42] = static_cast<byte>(external >> 8);
      a[43] = static_cast<byte>(external & 0xFF);
      auto ext = ip::make_address_v6(ip::v4_mapped, ip::make_address_v4("198.18.0.11")).to_bytes();
      std::copy(ext.begin(), ext.end(), a.begin() + 44);
      return a;
    }
    if (q[0] != 0) return {};
    const byte op = q[1];
    bytes a{0, static_cast<byte>(0x80 | op)};
    put_u16(a, mode == gateway_mode::refusing ? 2 : 0);
    put_u32(a, 77);
    if (op == 0) {
      a.insert(a.end(), {198, 18, 0, 12});
      return a;
    }
    if (q.size() < 12) return {};
    const std::uint16_t internal = get_u16(q.data() + 4);
    put_u16(a, internal);
    put_u16(a, get_u32(q.data() + 8) == 0 ? 0 : static_cast<std::uint16_t>(internal + 20000));
    put_u32(a, get_u32(q.data() + 8) == 0 ? 0 : granted_lifetime);
    return a;
  }

  static void put_u32_at(bytes& b, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i)
      b[at + static_cast<std::size_t>(i)] = static_cast<byte>(v >> (24 - 8 * i));
  }

  // The PCP MAP requests received, and NAT-PMP map requests (op 1 or 2).
  std::vector<bytes> pcp_maps() const {
    std::vector<bytes> out;
    for (const auto& r : requests)
      if (r.size() == 60 && r[0] == 2) out.push_back(r);
    return out;
  }
  std::vector<bytes> natpmp_maps() const {
    std::vector<bytes> out;
    for (const auto& r : requests)
      if (r.size() == 12 && r[0] == 0) out.push_back(r);
    return out;
  }

  ip::udp::socket sock;
  gateway_mode mode;
  std::uint32_t granted_lifetime = 3600;
  std::vector<bytes> requests;
};

nat::mapping_options options_for(std::uint16_t port) {
  nat::mapping_options o;
  o.gateway = ip::make_address("127.0.0.1");
  o.gateway_port = port;
  o.methods = {nat::mapping_method::pcp, nat::mapping_method::natpmp};
  o.pmp_first_wait = milliseconds(30);
  o.pmp_tries = 2;
  return o;
}

nat::mapping_request udp_request(std::uint16_t port) {
  nat::mapping_request r;
  r.protocol = pmp::protocol::udp;
  r.internal_address = ip::make_address("127.0.0.1");
  r.internal_port = port;
  return r;
}

bool has_note(const std::vector<std::string>& notes, std::string_view part) {
  return std::any_of(notes.begin(), notes.end(),
                     [&](const std::string& n) { return n.find(part) != std::string::npos; });
}

}  // namespace

TEST_CASE("port mapper: PCP maps, renews with the same nonce and deletes") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    fake_gateway gw(io, gateway_mode::pcp);
    auto mapper = nat::port_mapper::create(io.get_executor(), options_for(gw.port()));
    auto out = co_await mapper->map(udp_request(4000));
    REQUIRE_MESSAGE(out.mapping, "no mapping");
    const auto m = *out.mapping;
    CHECK(out.notes.empty());
    CHECK(m.method == nat::mapping_method::pcp);
    CHECK(m.internal_port == 4000);
    CHECK(m.external_port == 14000);
    CHECK(m.external_address == ip::make_address("198.18.0.11"));
    CHECK(m.lifetime == 3600);
    CHECK(m.gateway == ip::make_address("127.0.0.1"));
    CHECK(m.describe().find("udp 127.0.0.1:4000 -> 198.18.0.11:14000 (pcp via 127.0.0.1") == 0);
    // The request named us (the socket's address, IPv4-mapped) and asked
    // for the internal port outside.
    auto sent = gw.pcp_maps();
    REQUIRE(sent.size() == 1);
    const bytes me{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 127, 0, 0, 1};
    CHECK(bytes(sent[0].begin() + 8, sent[0].begin() + 24) == me);
    CHECK(get_u16(sent[0].data() + 42) == 4000);

    auto renewed = co_await mapper->renew(m);
    REQUIRE(renewed);
    CHECK(renewed->external_port == 14000);
    sent = gw.pcp_maps();
    REQUIRE(sent.size() == 2);
    CHECK(std::equal(sent[0].begin() + 24, sent[0].begin() + 36, sent[1].begin() + 24));
    CHECK(get_u16(sent[1].data() + 42) == 14000);  // the port we hold

    auto removed = co_await mapper->remove(m);
    CHECK(removed);
    sent = gw.pcp_maps();
    REQUIRE(sent.size() == 3);
    CHECK(get_u32(sent[2].data() + 4) == 0);
    CHECK(std::equal(sent[0].begin() + 24, sent[0].begin() + 36, sent[2].begin() + 24));
  });
}

TEST_CASE("port mapper: a NAT-PMP-only gateway is asked in NAT-PMP at once") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    fake_gateway gw(io, gateway_mode::natpmp_only);
    auto mapper = nat::port_mapper::create(io.get_executor(), options_for(gw.port()));
    auto r = udp_request(4001);
    r.protocol = pmp::protocol::tcp;
    auto out = co_await mapper->map(r);
    REQUIRE(out.mapping);
    CHECK(out.mapping->method == nat::mapping_method::natpmp);
    CHECK(out.mapping->protocol == pmp::protocol::tcp);
    CHECK(out.mapping->external_port == 24001);
    CHECK(out.mapping->external_address == ip::make_address("198.18.0.12"));
    CHECK(has_note(out.notes, "speaks NAT-PMP only"));
    REQUIRE(gw.natpmp_maps().size() == 1);
    CHECK(gw.natpmp_maps()[0][1] == 2);  // TCP
    // One PCP request: a version refusal is not retransmitted into.
    CHECK(gw.pcp_maps().size() == 1);

    CHECK(co_await mapper->remove(*out.mapping));
    REQUIRE(gw.natpmp_maps().size() == 2);
    CHECK(get_u32(gw.natpmp_maps()[1].data() + 8) == 0);
  });
}

TEST_CASE("port mapper: refusals, silence and a closed port each leave a note") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    {
      fake_gateway gw(io, gateway_mode::refusing);
      auto mapper = nat::port_mapper::create(io.get_executor(), options_for(gw.port()));
      auto out = co_await mapper->map(udp_request(4002));
      CHECK_FALSE(out.mapping);
      REQUIRE(out.notes.size() == 2);
      CHECK(has_note(out.notes, "pcp: 127.0.0.1:" + std::to_string(gw.port()) +
                                    " refused: not authorized (2)"));
      CHECK(has_note(out.notes, "natpmp: 127.0.0.1:" + std::to_string(gw.port()) +
                                    " refused: not authorized or refused (2)"));
    }
    {
      fake_gateway gw(io, gateway_mode::silent);
      auto mapper = nat::port_mapper::create(io.get_executor(), options_for(gw.port()));
      auto out = co_await mapper->map(udp_request(4003));
      CHECK_FALSE(out.mapping);
      REQUIRE(out.notes.size() == 2);
      CHECK(has_note(out.notes, "pcp: no answer from 127.0.0.1:"));
      CHECK(has_note(out.notes, "in 0.09 s"));  // 30 + 60 ms, two tries
      CHECK(has_note(out.notes, "natpmp: not tried"));
      CHECK(gw.pcp_maps().size() == 2);  // retransmitted once
      CHECK(gw.natpmp_maps().empty());
    }
    {
      std::uint16_t closed = 0;
      {
        fake_gateway gw(io, gateway_mode::silent);
        closed = gw.port();
      }
      auto mapper = nat::port_mapper::create(io.get_executor(), options_for(closed));
      auto out = co_await mapper->map(udp_request(4004));
      CHECK_FALSE(out.mapping);
      CHECK(has_note(out.notes, "nothing listens on 127.0.0.1:" + std::to_string(closed)));
    }
  });
}

TEST_CASE("port mapper: UPnP without an IGD says so, from the caller's pool") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    asio::thread_pool pool(1);
    auto o = options_for(1);
    o.methods = {nat::mapping_method::upnp};
    // Nothing serves a description there: no SSDP leaves the host.
    o.upnp_root_url = "http://127.0.0.1:1/rootDesc.xml";
    auto mapper = nat::port_mapper::create(io.get_executor(), o, &pool);
    CHECK(&mapper->pool() == &pool);
    auto out = co_await mapper->map(udp_request(4005));
    CHECK_FALSE(out.mapping);
    REQUIRE(out.notes.size() == 1);
    CHECK(out.notes[0] == "upnp: no IGD description at http://127.0.0.1:1/rootDesc.xml");
    mapper.reset();
    pool.join();
  });
}

TEST_CASE("port mapper: maintain() renews at half the lease and release_all() deletes") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    fake_gateway gw(io, gateway_mode::pcp);
    gw.granted_lifetime = 1;  // renewed every 500 ms
    auto mapper = nat::port_mapper::create(io.get_executor(), options_for(gw.port()));
    std::vector<nat::mapping_change> changes;
    asio::cancellation_signal stop;
    bool ended = false;
    asio::co_spawn(
        io,
        mapper->maintain(udp_request(4006),
                         [&](const nat::mapping_change& c) { changes.push_back(c); }),
        asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr) { ended = true; }));
    const bool renewed_twice = co_await test::eventually(
        [&] {
          return std::count_if(changes.begin(), changes.end(), [](const auto& c) {
                   return c.kind == nat::mapping_change::what::renewed;
                 }) >= 2;
        },
        seconds(10));
    REQUIRE(renewed_twice);
    CHECK(changes.front().kind == nat::mapping_change::what::mapped);
    REQUIRE(mapper->active().size() == 1);
    CHECK(mapper->active()[0].external_port == 14006);
    stop.emit(asio::cancellation_type::terminal);
    CHECK(co_await test::eventually([&] { return ended; }));
    // Cancelled, the mapping stays until released.
    CHECK(mapper->active().size() == 1);
    co_await mapper->release_all();
    CHECK(mapper->active().empty());
    auto sent = gw.pcp_maps();
    REQUIRE_FALSE(sent.empty());
    CHECK(get_u32(sent.back().data() + 4) == 0);
  });
}

TEST_CASE("port mapper: a lost lease is reported and a silent first attempt fails once") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    fake_gateway gw(io, gateway_mode::pcp);
    gw.granted_lifetime = 1;
    auto mapper = nat::port_mapper::create(io.get_executor(), options_for(gw.port()));
    std::vector<nat::mapping_change> changes;
    asio::cancellation_signal stop;
    bool ended = false;
    asio::co_spawn(
        io,
        mapper->maintain(udp_request(4007),
                         [&](const nat::mapping_change& c) {
                           changes.push_back(c);
                           // The gateway forgets us after the first grant (a reboot).
                           gw.mode = gateway_mode::silent;
                         }),
        asio::bind_cancellation_slot(stop.slot(), [&](std::exception_ptr) { ended = true; }));
    const bool lost = co_await test::eventually([&] { return changes.size() >= 2; });
    REQUIRE(lost);
    CHECK(changes[0].kind == nat::mapping_change::what::mapped);
    CHECK(changes[1].kind == nat::mapping_change::what::lost);
    CHECK(changes[1].notes.at(0).find("renewal failed") == 0);
    CHECK(mapper->active().empty());
    stop.emit(asio::cancellation_type::terminal);
    CHECK(co_await test::eventually([&] { return ended; }));
    CHECK(changes.size() == 2);  // mapping again after a loss says nothing until it works
  });
}

TEST_CASE("port mapper: map() is cancelled promptly by a deadline") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    fake_gateway gw(io, gateway_mode::silent);
    auto o = options_for(gw.port());
    o.pmp_first_wait = seconds(30);
    auto mapper = nat::port_mapper::create(io.get_executor(), o);
    auto op = [&]() -> asio::awaitable<result<nat::mapping_outcome>> {
      co_return co_await mapper->map(udp_request(4008));
    };
    auto r = co_await with_timeout(op(), milliseconds(0));
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::timed_out);
  });
}
