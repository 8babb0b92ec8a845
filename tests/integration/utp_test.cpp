// µTP over real UDP sockets on loopback: the shared socket, the manager,
// utp_stream under asio::async_read/async_write, close and FIN, reset,
// cancellation.
#include "crust/service.hpp"
#include "support/co_test.hpp"
#include "support/utp_node.hpp"
#include "support/utp_sim.hpp"
#include "transports/udp.hpp"
#include "transports/utp/manager.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

using namespace crust;
namespace asio = boost::asio;
using test::utp_node;

namespace {

asio::awaitable<void> write_pattern(utp::utp_stream& s, std::size_t total, std::uint8_t salt) {
  std::vector<byte> chunk(64 * 1024);
  for (std::size_t done = 0; done < total;) {
    const auto n = std::min(chunk.size(), total - done);
    for (std::size_t i = 0; i < n; ++i) chunk[i] = test::pattern_byte(done + i, salt);
    auto [ec, w] = co_await asio::async_write(s, asio::buffer(chunk.data(), n),
                                              asio::as_tuple(asio::use_awaitable));
    REQUIRE_FALSE(ec);
    done += w;
  }
}

// Reads until EOF; returns how many bytes matched the pattern in order.
asio::awaitable<std::size_t> read_pattern(utp::utp_stream& s, std::uint8_t salt,
                                          error_code* end = nullptr) {
  std::vector<byte> buf(256 * 1024);
  std::size_t got = 0;
  for (;;) {
    auto [ec, n] =
        co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    for (std::size_t i = 0; i < n; ++i)
      if (buf[i] != test::pattern_byte(got + i, salt)) co_return got + i;
    got += n;
    if (ec) {
      if (end) *end = ec;
      co_return got;
    }
  }
}

}  // namespace

TEST_CASE("utp loopback: 16 MiB each way at once, intact, then FIN both ways") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = utp_node::make(io, false);
    auto b = utp_node::make(io, true);
    auto dial = co_await a.mgr->connect(b.at());
    REQUIRE(dial);
    auto in = co_await b.mgr->accept();
    REQUIRE(in);
    auto& sa = *dial;
    auto& sb = *in;
    CHECK(sb.remote_endpoint() == a.at());
    constexpr std::size_t total = 16 << 20;
    using namespace asio::experimental::awaitable_operators;
    std::size_t at_b = 0, at_a = 0;
    error_code end_b, end_a;
    auto send_a = [&]() -> asio::awaitable<void> {
      co_await write_pattern(sa, total, 1);
      sa.shutdown_send();
    };
    auto send_b = [&]() -> asio::awaitable<void> {
      co_await write_pattern(sb, total, 2);
      sb.shutdown_send();
    };
    auto recv_b = [&]() -> asio::awaitable<void> { at_b = co_await read_pattern(sb, 1, &end_b); };
    auto recv_a = [&]() -> asio::awaitable<void> { at_a = co_await read_pattern(sa, 2, &end_a); };
    co_await (send_a() && send_b() && recv_a() && recv_b());
    CHECK(at_b == total);
    CHECK(at_a == total);
    CHECK(end_a == asio::error::eof);
    CHECK(end_b == asio::error::eof);
    MESSAGE("a: " << sa.stats().packets_sent << " packets sent, " << sa.stats().packets_resent
                  << " resent; rtt "
                  << std::chrono::duration<double, std::micro>(sa.stats().rtt).count()
                  << " us; path MTU " << sa.stats().mtu << " after " << sa.stats().probes_sent
                  << " probes");
    // Loopback's MTU is 65536: the search reaches the largest UDP payload
    // to within its step, and data packets use it.
    CHECK(transport::max_udp_payload(b.at()) == 65507);
    CHECK(sa.stats().mtu > 65507 - 32);
    CHECK(sb.stats().mtu > 65507 - 32);
    CHECK(sa.stats().max_payload > 60000);
    a.stop();
    b.stop();
  });
}

TEST_CASE("utp loopback: a dropped handle still delivers what it wrote, then EOF") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = utp_node::make(io, false);
    auto b = utp_node::make(io, true);
    using namespace asio::experimental::awaitable_operators;
    auto writer = [&]() -> asio::awaitable<void> {
      auto dial = co_await a.mgr->connect(b.at());
      REQUIRE(dial);
      co_await write_pattern(*dial, 3 << 20, 3);
    };  // the handle is gone at once; the manager finishes the transfer and the FIN
    std::size_t got = 0;
    error_code end;
    auto reader = [&]() -> asio::awaitable<void> {
      auto in = co_await b.mgr->accept();
      REQUIRE(in);
      got = co_await read_pattern(*in, 3, &end);
    };
    co_await (writer() && reader());
    CHECK(got == (3u << 20));
    CHECK(end == asio::error::eof);
    CHECK(co_await test::eventually([&] { return a.mgr->size() == 0; }, seconds(10)));
    a.stop();
    b.stop();
  });
}

TEST_CASE("utp loopback: a peer that goes away resets the reader") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = utp_node::make(io, false);
    auto b = utp_node::make(io, true);
    auto dial = co_await a.mgr->connect(b.at());
    REQUIRE(dial);
    auto in = co_await b.mgr->accept();
    REQUIRE(in);
    b.mgr->shutdown();  // resets its connections
    std::vector<byte> buf(100);
    auto [ec, n] =
        co_await dial->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    CHECK(ec == asio::error::connection_reset);
    a.stop();
    b.stop();
  });
}

TEST_CASE("utp loopback: stray packets get resets no bigger than themselves, rate-limited") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto b = utp_node::make(io, true);
    // 300 DATA packets for connections b never had, from one source.
    asio::ip::udp::socket s(io, {asio::ip::address_v4::loopback(), 0});
    for (std::uint16_t i = 0; i < 300; ++i) {
      utp::header h;
      h.type = utp::packet_type::data;
      h.connection_id = static_cast<std::uint16_t>(1000 + i);
      h.seq_nr = i;
      const auto d = utp::encode(h, {}, bytes(100, 0x5a));
      co_await s.async_send_to(asio::buffer(d), b.at(), asio::use_awaitable);
    }
    // Whatever came back: resets, each a bare header.
    std::size_t answers = 0;
    byte buf[2048];
    for (;;) {
      asio::ip::udp::endpoint from;
      auto op = s.async_receive_from(asio::buffer(buf), from, asio::as_tuple(asio::use_awaitable));
      auto got = co_await crust::within(std::move(op), milliseconds(300));
      if (!got) break;
      auto [ec, n] = *got;
      if (ec) break;
      ++answers;
      CHECK(n == utp::header_size);
      auto p = utp::decode(byte_span(buf, n));
      REQUIRE(p);
      CHECK(p->h.type == utp::packet_type::reset);
    }
    const auto& st = b.mgr->stats();
    CHECK(st.resets_sent == answers);
    CHECK(st.resets_sent + st.resets_limited == 300);
    // Most of a burst from one source goes unanswered (burst 40, 20/s).
    CHECK(st.resets_limited > 0);
    CHECK(st.resets_sent < 300);
    b.stop();
  });
}

namespace {

utp::header syn_from(std::uint16_t id, std::uint16_t seq) {
  utp::header h;
  h.type = utp::packet_type::syn;
  h.connection_id = id;
  h.seq_nr = seq;
  h.wnd_size = 1 << 20;
  return h;
}

}  // namespace

TEST_CASE("utp loopback: a forged SYN never reaches accept(); a real dial still does") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    utp::manager::options o;
    o.conn.half_open_timeout = milliseconds(300);
    o.max_half_open = 16;
    auto b = utp_node::make(io, true, o);
    asio::ip::udp::socket s(io, {asio::ip::address_v4::loopback(), 0});
    // 1. A SYN, then DATA that guesses our number wrong (a blind sender):
    //    the answer is no bigger than the SYN, the guess ends it quietly.
    const auto syn = utp::encode(syn_from(500, 9));
    co_await s.async_send_to(asio::buffer(syn), b.at(), asio::use_awaitable);
    byte buf[2048];
    asio::ip::udp::endpoint from;
    auto [ec, n] =
        co_await s.async_receive_from(asio::buffer(buf), from, asio::as_tuple(asio::use_awaitable));
    REQUIRE_FALSE(ec);
    CHECK(n <= syn.size());
    auto answer = utp::decode(byte_span(buf, n));
    REQUIRE(answer);
    CHECK(answer->h.type == utp::packet_type::state);
    utp::header guess;
    guess.type = utp::packet_type::data;
    guess.connection_id = 501;
    guess.seq_nr = 10;
    guess.ack_nr = static_cast<std::uint16_t>(answer->h.seq_nr + 7);  // wrong
    const auto d = utp::encode(guess, {}, bytes(600, 0x11));
    co_await s.async_send_to(asio::buffer(d), b.at(), asio::use_awaitable);
    // 2. More SYNs than the half-open table holds, none followed up.
    for (std::uint16_t i = 0; i < 40; ++i) {
      const auto more = utp::encode(syn_from(static_cast<std::uint16_t>(2000 + 2 * i), i));
      co_await s.async_send_to(asio::buffer(more), b.at(), asio::use_awaitable);
    }
    // 3. A real dial meanwhile is accepted, and it is the only one.
    auto a = utp_node::make(io, false);
    auto dial = co_await a.mgr->connect(b.at());
    REQUIRE(dial);
    auto in = co_await with_timeout(b.mgr->accept(), seconds(5));
    REQUIRE(in);
    CHECK(in->remote_endpoint() == a.at());
    auto none = co_await with_timeout(b.mgr->accept(), milliseconds(600));
    CHECK(none.error() == errc::timed_out);
    const auto& st = b.mgr->stats();
    CHECK(st.accepted == 1);
    CHECK(st.verified == 1);
    CHECK(st.half_open_evicted >= 40 + 1 - 16);  // the table held 16 at most
    CHECK(st.half_open_failed >= 1);             // the wrong guess, and those that timed out
    // Every half-open entry is gone after its timeout: only the real one is left.
    CHECK(b.mgr->size() == 1);
    // A flood of SYNs from one source gets answers up to its rate only.
    CHECK(st.syns_limited == 0);
    for (std::uint16_t i = 0; i < 200; ++i) {
      const auto more = utp::encode(syn_from(static_cast<std::uint16_t>(9000 + 2 * i), i));
      co_await s.async_send_to(asio::buffer(more), b.at(), asio::use_awaitable);
    }
    const bool limited = co_await test::eventually([&] { return st.syns_limited > 0; }, seconds(2));
    CHECK(limited);
    CHECK(st.syns_limited < 200);
    dial->close();
    in->close();
    a.stop();
    b.stop();
  });
}

TEST_CASE("utp loopback: connect and read are cancellable; a SYN nobody accepts times out") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    utp::manager::options quick;
    quick.conn.initial_rto = milliseconds(100);
    quick.conn.max_syn_sends = 2;
    auto a = utp_node::make(io, false, quick);
    auto deaf = utp_node::make(io, false);  // does not listen: SYNs are ignored
    auto t0 = clock::now();
    auto r = co_await a.mgr->connect(deaf.at());
    CHECK(r.error() == asio::error::timed_out);
    CHECK(clock::now() - t0 < seconds(2));
    CHECK(deaf.mgr->stats().syns_ignored == 2);
    // Cancelled by a 0 ms timer: it returns at once with operation_aborted.
    auto c = co_await with_timeout(a.mgr->connect(deaf.at()), milliseconds(0));
    CHECK(c.error() == errc::timed_out);
    auto b = utp_node::make(io, true);
    auto dial = co_await a.mgr->connect(b.at());
    REQUIRE(dial);
    std::vector<byte> buf(10);
    auto read = dial->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    auto outcome = co_await crust::within(std::move(read), milliseconds(20));
    CHECK_FALSE(outcome);  // nothing to read: cut by the deadline, and cancelled cleanly
    // The stream still works after a cancelled read.
    auto in = co_await b.mgr->accept();
    REQUIRE(in);
    co_await write_pattern(*in, 1000, 4);
    in->shutdown_send();
    CHECK(co_await read_pattern(*dial, 4) == 1000);
    a.stop();
    b.stop();
    deaf.stop();
  });
}

TEST_CASE("udp mux: datagrams are told apart by their first bytes") {
  CHECK(transport::classify(utp::encode(utp::header{})) == transport::datagram_kind::utp);
  bytes stun = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42};
  stun.resize(20);
  CHECK(transport::classify(stun) == transport::datagram_kind::stun);
  bytes stun_success = {0x01, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42};
  stun_success.resize(20);
  CHECK(transport::classify(stun_success) == transport::datagram_kind::stun);
  CHECK(transport::classify(as_bytes("punch!")) == transport::datagram_kind::other);
}

TEST_CASE("service over µTP: the secure channel runs unchanged; 16 MiB each way by hash") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto a = test::make_node(io);
    auto b = test::make_node(io);
    REQUIRE(co_await a->start());
    REQUIRE(co_await b->start());
    auto udp = b->local_udp_endpoint();
    REQUIRE(udp);
    CHECK(udp->port() != b->local_endpoint()->port());  // a random port of its own
    auto info = co_await a->connect(*udp, b->id().public_key(), transport::kind::utp);
    REQUIRE(info);
    CHECK(info->transport == transport::kind::utp);
    CHECK(co_await test::eventually([&] { return b->peers().size() == 1; }));
    CHECK(b->peers().front().transport == transport::kind::utp);
    CHECK(b->peers().front().inbound);
    CHECK(a->cached_peers().empty());  // the cache holds TCP endpoints only
    constexpr std::size_t chunk = 1 << 20, count = 16;
    auto sender = [&](service& from, service& to, std::uint8_t salt) -> asio::awaitable<void> {
      for (std::size_t i = 0; i < count; ++i) {
        bytes msg(chunk);
        for (std::size_t j = 0; j < chunk; ++j) msg[j] = test::pattern_byte(i * chunk + j, salt);
        REQUIRE(from.send(to.id().id(), std::move(msg)));
        if (i % 4 == 3) REQUIRE(co_await from.flush(to.id().id()));
      }
    };
    auto receiver = [&](service& at, std::uint8_t salt) -> asio::awaitable<std::size_t> {
      std::size_t good = 0;
      for (std::size_t i = 0; i < count; ++i) {
        auto m = co_await test::next_of<events::new_message>(at, seconds(60));
        bool same = m.payload.size() == chunk;
        for (std::size_t j = 0; same && j < chunk; ++j)
          same = m.payload[j] == test::pattern_byte(i * chunk + j, salt);
        good += same ? 1 : 0;
      }
      co_return good;
    };
    using namespace asio::experimental::awaitable_operators;
    auto [got_b, got_a] =
        co_await (sender(*a, *b, 5) && sender(*b, *a, 6) && receiver(*b, 5) && receiver(*a, 6));
    CHECK(got_b == count);
    CHECK(got_a == count);
    // A clean close over µTP: the peer hears of it as a close, not a loss.
    a->disconnect(b->id().id());
    auto lost = co_await test::next_of<events::lost_peer>(*b);
    CHECK(lost.reason == errc::peer_closed);
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("service over µTP: off by config, and a dial to a silent UDP port times out") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto cfg = test::loopback_config();
    cfg.enable_utp = false;
    auto off = test::make_node(io, cfg);
    REQUIRE(co_await off->start());
    CHECK_FALSE(off->local_udp_endpoint());
    auto b = test::make_node(io);
    REQUIRE(co_await b->start());
    auto r =
        co_await off->connect(*b->local_udp_endpoint(), b->id().public_key(), transport::kind::utp);
    CHECK(r.error() == asio::error::operation_not_supported);
    auto quick = test::loopback_config();
    quick.connect_timeout = milliseconds(300);
    auto a = test::make_node(io, quick);
    REQUIRE(co_await a->start());
    const auto t0 = clock::now();
    auto silent = co_await a->connect(*off->local_endpoint(), b->id().public_key(),
                                      transport::kind::utp);  // a TCP port: nothing answers on UDP
    CHECK(silent.error() == errc::timed_out);
    CHECK(clock::now() - t0 < seconds(2));
    co_await a->stop();
    co_await b->stop();
    co_await off->stop();
  });
}
