// The µTP state machine on a manual clock: handshake, transfer, loss,
// duplication and reordering at every position, congestion control,
// timers, FIN and RESET.
#include "support/test.hpp"
#include "support/utp_sim.hpp"

#include <random>

using namespace crust;
using namespace crust::utp;
using test::utp_sim;

namespace {

utp::settings small_packets() {
  utp::settings s;
  s.packet_size = 500;
  return s;
}

// Both directions at once, `n` bytes each way; true when both completed intact.
bool exchange(utp_sim& sim, std::size_t n, duration limit = seconds(600)) {
  test::transfer ab{n, 1}, ba{n, 2};
  sim.on_pump = [&] {
    if (!sim.b_exists() || sim.a().state() != conn_state::connected) return;
    ab.step(sim.a(), sim.b());
    ba.step(sim.b(), sim.a());
  };
  const bool ok = sim.run_until([&] { return ab.done() && ba.done(); }, limit);
  sim.on_pump = nullptr;
  CHECK_FALSE(ab.corrupt);
  CHECK_FALSE(ba.corrupt);
  return ok && !ab.corrupt && !ba.corrupt;
}

// Until both ends are connected: the initiator has the answer to its SYN,
// and the acceptor has the initiator's acknowledgement of it (verified).
bool connect(utp_sim& sim) {
  return sim.run_until(
      [&] {
        return sim.a().state() == conn_state::connected && sim.b_exists() && sim.b().verified();
      },
      seconds(30));
}

}  // namespace

TEST_CASE("utp: the handshake follows BEP 29's connection ids and sequence numbers") {
  std::vector<std::pair<int, packet>> seen;
  utp_sim sim({}, {}, 1000, 5000);
  sim.hook = [&](utp_sim::side from, std::size_t, const packet& p) {
    seen.emplace_back(from, p);
    return utp_sim::fate{};
  };
  REQUIRE(connect(sim));
  REQUIRE(seen.size() >= 2);
  const auto& syn = seen[0].second.h;
  CHECK(seen[0].first == utp_sim::a_side);
  CHECK(syn.type == packet_type::syn);
  CHECK(syn.connection_id == 77);  // the initiator's receive id
  CHECK(syn.seq_nr == 1000);
  const auto& answer = seen[1].second.h;
  CHECK(seen[1].first == utp_sim::b_side);
  CHECK(answer.type == packet_type::state);
  CHECK(answer.connection_id == 77);  // the acceptor sends with the SYN's id
  CHECK(answer.ack_nr == 1000);
  CHECK(answer.seq_nr == 5000);
  CHECK(sim.b().recv_id() == 78);
  CHECK(sim.b().send_id() == 77);
  CHECK(sim.a().send_id() == 78);
  // The initiator acknowledged the answer at once, which verified the acceptor.
  REQUIRE(seen.size() >= 3);
  CHECK(seen[2].first == utp_sim::a_side);
  CHECK(seen[2].second.h.type == packet_type::state);
  CHECK(seen[2].second.h.ack_nr == 4999);
  CHECK(sim.b().verified());
  // The first DATA each way: the initiator's after its SYN, the acceptor's at its ISN.
  seen.clear();
  REQUIRE(sim.a().write(as_bytes("ping")) == 4);
  REQUIRE(sim.b().write(as_bytes("pong")) == 4);
  sim.pump();
  REQUIRE(seen.size() >= 2);
  for (const auto& [from, p] : seen) {
    if (p.h.type != packet_type::data) continue;
    if (from == utp_sim::a_side) {
      CHECK(p.h.connection_id == 78);
      CHECK(p.h.seq_nr == 1001);
      CHECK(p.h.ack_nr == 4999);
    } else {
      CHECK(p.h.connection_id == 77);
      CHECK(p.h.seq_nr == 5000);
      CHECK(p.h.ack_nr == 1000);
    }
  }
}

TEST_CASE("utp: a clean transfer both ways arrives intact and in order") {
  utp_sim sim;
  REQUIRE(connect(sim));
  CHECK(exchange(sim, 4 << 20));
  auto fa = sim.a().stats();
  CHECK(fa.packets_resent == 0);
  CHECK(fa.timeouts == 0);
  CHECK(fa.rtt >= milliseconds(20));  // the link's round trip
  CHECK(fa.rtt < milliseconds(60));
}

TEST_CASE("utp: the sequence space wraps without a hitch") {
  utp_sim sim(small_packets(), {}, 65530, 65520);
  REQUIRE(connect(sim));
  CHECK(exchange(sim, 200000));  // 400 packets each way, across 65535 -> 0
}

TEST_CASE("utp: a drop, a duplicate or a reorder at every position of a short exchange") {
  // 30 packets each way plus the handshake and ACKs: every datagram index
  // in either direction gets each treatment once.
  for (int mode = 0; mode < 3; ++mode) {
    for (std::size_t at = 0; at < 50; ++at) {
      for (auto who : {utp_sim::a_side, utp_sim::b_side}) {
        CAPTURE(mode);
        CAPTURE(at);
        CAPTURE(static_cast<int>(who));
        utp_sim sim(small_packets());
        sim.hook = [&](utp_sim::side from, std::size_t index, const packet&) {
          utp_sim::fate f;
          if (from != who || index != at) return f;
          if (mode == 0) f.copies = 0;                // dropped
          if (mode == 1) f.copies = 2;                // duplicated
          if (mode == 2) f.extra = milliseconds(15);  // overtaken by later ones
          return f;
        };
        REQUIRE(connect(sim));
        REQUIRE(exchange(sim, 15000, seconds(120)));
      }
    }
  }
}

TEST_CASE("utp: heavy random loss, duplication and reordering; still bit-exact") {
  for (double loss : {0.01, 0.05, 0.10, 0.25}) {
    CAPTURE(loss);
    std::mt19937 rng(static_cast<unsigned>(loss * 1000));
    std::uniform_real_distribution<double> u(0, 1);
    utp_sim sim;
    sim.hook = [&](utp_sim::side, std::size_t, const packet&) {
      utp_sim::fate f;
      if (u(rng) < loss) f.copies = 0;
      if (u(rng) < 0.02) f.copies += 1;
      if (u(rng) < 0.05) f.extra = std::chrono::microseconds(static_cast<int>(u(rng) * 20000));
      return f;
    };
    REQUIRE(connect(sim));
    CHECK(exchange(sim, 1 << 20));
    CHECK(sim.a().stats().packets_resent > 0);
  }
}

TEST_CASE("utp: one lost packet is resent by fast retransmit or SACK, before any timeout") {
  utp_sim sim;
  REQUIRE(connect(sim));
  bool dropped = false;
  sim.hook = [&](utp_sim::side from, std::size_t, const packet& p) {
    utp_sim::fate f;
    if (from == utp_sim::a_side && p.h.type == packet_type::data && !dropped &&
        p.h.seq_nr == 1011) {
      dropped = true;
      f.copies = 0;
    }
    return f;
  };
  test::transfer t{300000, 3};
  sim.on_pump = [&] { t.step(sim.a(), sim.b()); };
  REQUIRE(sim.run_until([&] { return t.done(); }));
  CHECK(dropped);
  CHECK_FALSE(t.corrupt);
  auto f = sim.a().stats();
  CHECK(f.timeouts == 0);
  CHECK(f.packets_resent == 1);
  CHECK_FALSE(f.slow_start);  // a loss ends slow start
}

TEST_CASE("utp: a black-holed path times out with backoff, then recovers from one packet") {
  utp_sim sim({}, {milliseconds(10), 2e6});  // 2 MB/s: the transfer outlasts the hole's start
  REQUIRE(connect(sim));
  time_point hole_from{}, hole_until{};
  sim.hook = [&](utp_sim::side, std::size_t, const packet&) {
    utp_sim::fate f;
    if (sim.now() >= hole_from && sim.now() < hole_until) f.copies = 0;
    return f;
  };
  test::transfer t{2 << 20, 4};
  hole_from = sim.now() + milliseconds(200);
  hole_until = hole_from + seconds(3);
  sim.on_pump = [&] { t.step(sim.a(), sim.b()); };
  REQUIRE(sim.run_until([&] { return t.done(); }));
  CHECK_FALSE(t.corrupt);
  auto f = sim.a().stats();
  CHECK(f.timeouts >= 2);  // 3 s of silence with a doubling RTO from about 0.5 s
  CHECK(f.timeouts <= 4);
  CHECK(sim.a().state() == conn_state::connected);
}

TEST_CASE("utp: a peer gone for good ends in timed_out after the retries") {
  utp_sim sim;
  REQUIRE(connect(sim));
  sim.hook = [](utp_sim::side, std::size_t, const packet&) { return utp_sim::fate{0, {}}; };
  REQUIRE(sim.a().write(bytes(5000, 1)) == 5000);
  REQUIRE(sim.run_until([&] { return sim.a().finished(); }, seconds(300)));
  CHECK(sim.a().state() == conn_state::timed_out);
  CHECK(sim.a().stats().timeouts == 7);
}

TEST_CASE("utp: a SYN nobody answers is sent 4 times, 1, 2 and 4 s apart, then times out") {
  utp_sim sim;
  sim.hook = [](utp_sim::side, std::size_t, const packet&) { return utp_sim::fate{0, {}}; };
  REQUIRE(sim.run_until([&] { return sim.a().finished(); }, seconds(60)));
  CHECK(sim.a().state() == conn_state::timed_out);
  CHECK(sim.sent(utp_sim::a_side) == 4);
  CHECK(sim.elapsed() == seconds(1 + 2 + 4 + 8));
}

TEST_CASE("utp: a lost answer to the SYN: the SYN comes again and is answered again") {
  utp_sim sim;
  sim.hook = [](utp_sim::side from, std::size_t index, const packet&) {
    return utp_sim::fate{from == utp_sim::b_side && index == 0 ? 0 : 1, {}};
  };
  REQUIRE(connect(sim));
  CHECK(sim.sent(utp_sim::a_side) == 3);  // two SYNs, then the acknowledgement of the answer
  CHECK(sim.elapsed() >= seconds(1));
  CHECK(exchange(sim, 10000));
}

TEST_CASE("utp: delayed ACKs: one per two packets, a lone one after the delay") {
  utp_sim sim;
  REQUIRE(connect(sim));
  sim.logged_types[utp_sim::b_side].clear();
  const auto before = sim.sent(utp_sim::b_side);
  REQUIRE(sim.a().write(bytes(100, 1)) == 100);
  sim.pump();
  REQUIRE(sim.run_until([&] { return sim.b().readable() == 100; }));
  sim.pump();
  CHECK(sim.sent(utp_sim::b_side) == before);  // the lone packet's ACK waits
  const auto t0 = sim.now();
  REQUIRE(sim.run_until([&] { return sim.sent(utp_sim::b_side) > before; }));
  CHECK(sim.now() - t0 == milliseconds(10));
  // Two full packets: acknowledged together, at once.
  bytes sink(10000);
  sim.b().read(sink);
  const auto before2 = sim.sent(utp_sim::b_side);
  REQUIRE(sim.a().write(bytes(2 * 1200, 2)) == 2400);
  sim.pump();
  REQUIRE(sim.run_until([&] { return sim.b().readable() == 2400; }));
  sim.pump();
  CHECK(sim.sent(utp_sim::b_side) == before2 + 1);
}

TEST_CASE("utp: Nagle: a second short write waits for the first one's ACK") {
  utp_sim sim;
  REQUIRE(connect(sim));
  const auto before = sim.sent(utp_sim::a_side);
  REQUIRE(sim.a().write(bytes(10, 1)) == 10);
  sim.pump();
  CHECK(sim.sent(utp_sim::a_side) == before + 1);
  REQUIRE(sim.a().write(bytes(10, 2)) == 10);
  sim.pump();
  CHECK(sim.sent(utp_sim::a_side) == before + 1);  // held back
  REQUIRE(sim.run_until([&] { return sim.b().readable() == 20; }));
  // A full packet's worth goes at once even with something in flight.
  REQUIRE(sim.a().write(bytes(10, 3)) == 10);
  sim.pump();
  const auto mid = sim.sent(utp_sim::a_side);
  REQUIRE(sim.a().write(bytes(1200, 4)) == 1200);
  sim.pump();
  CHECK(sim.sent(utp_sim::a_side) == mid + 1);
}

TEST_CASE("utp: no_delay: a second short write goes at once, with the first in flight") {
  utp::settings s;
  s.no_delay = true;
  utp_sim sim(s);
  REQUIRE(connect(sim));
  const auto before = sim.sent(utp_sim::a_side);
  REQUIRE(sim.a().write(bytes(10, 1)) == 10);
  sim.pump();
  REQUIRE(sim.a().write(bytes(10, 2)) == 10);
  sim.pump();
  CHECK(sim.sent(utp_sim::a_side) == before + 2);
  // Writes within one turn still share a packet.
  REQUIRE(sim.a().write(bytes(10, 3)) == 10);
  REQUIRE(sim.a().write(bytes(10, 4)) == 10);
  sim.pump();
  CHECK(sim.sent(utp_sim::a_side) == before + 3);
  REQUIRE(sim.run_until([&] { return sim.b().readable() == 40; }));
}

TEST_CASE("utp: FIN both ways ends the connection cleanly after the data") {
  utp_sim sim;
  REQUIRE(connect(sim));
  test::transfer t{50000, 5};
  sim.on_pump = [&] { t.step(sim.a(), sim.b()); };
  REQUIRE(sim.run_until([&] { return t.written == t.total; }));
  sim.a().close();
  CHECK(sim.a().write(bytes(1, 1)) == 0);  // nothing more after close
  REQUIRE(sim.run_until([&] { return sim.b().at_eof(); }));
  CHECK(t.done());
  CHECK(sim.b().state() == conn_state::connected);  // b may still send
  REQUIRE(sim.b().write(as_bytes("bye")) == 3);
  sim.b().close();
  REQUIRE(sim.run_until([&] { return sim.a().finished() && sim.b().finished(); }));
  CHECK(sim.a().state() == conn_state::closed);
  CHECK(sim.b().state() == conn_state::closed);
  byte got[8];
  CHECK(sim.a().read(got) == 3);
  CHECK(sim.a().at_eof());
}

TEST_CASE("utp: FIN survives loss of the FIN and of its ACK") {
  for (int drop_fin = 0; drop_fin < 2; ++drop_fin) {
    utp_sim sim;
    REQUIRE(connect(sim));
    bool dropped = false;
    sim.hook = [&](utp_sim::side from, std::size_t, const packet& p) {
      utp_sim::fate f;
      const bool target = drop_fin ? (from == utp_sim::a_side && p.h.type == packet_type::fin)
                                   : (from == utp_sim::b_side && p.h.type == packet_type::state &&
                                      sim.b().at_eof());
      if (target && !dropped) {
        dropped = true;
        f.copies = 0;
      }
      return f;
    };
    sim.a().close();
    sim.b().close();
    REQUIRE(sim.run_until([&] { return sim.a().finished() && sim.b().finished(); }));
    CHECK(dropped);
    CHECK(sim.a().state() == conn_state::closed);
    CHECK(sim.b().state() == conn_state::closed);
  }
}

TEST_CASE("utp: RESET ends the peer at once") {
  utp_sim sim;
  REQUIRE(connect(sim));
  sim.a().reset();
  CHECK(sim.a().state() == conn_state::reset);
  REQUIRE(sim.run_until([&] { return sim.b().finished(); }));
  CHECK(sim.b().state() == conn_state::reset);
}

TEST_CASE("utp: keepalives every 25 s; a silent peer times out after 60 s") {
  utp_sim sim;
  REQUIRE(connect(sim));
  const auto t0 = sim.now();
  const auto before = sim.sent(utp_sim::a_side);
  sim.run_until([&] { return sim.now() - t0 >= seconds(55); }, seconds(56));
  CHECK(sim.now() - t0 >= seconds(50));
  CHECK(sim.sent(utp_sim::a_side) - before >= 2);
  CHECK(sim.a().state() == conn_state::connected);  // keepalives both ways keep it up
  sim.hook = [](utp_sim::side from, std::size_t, const packet&) {
    return utp_sim::fate{from == utp_sim::b_side ? 0 : 1, {}};
  };
  const auto t1 = sim.now();
  REQUIRE(sim.run_until([&] { return sim.a().finished(); }, seconds(120)));
  CHECK(sim.a().state() == conn_state::timed_out);
  CHECK(sim.now() - t1 <= seconds(60));
}

TEST_CASE("utp: a reader that stops closes the window; reading reopens it") {
  utp::settings s;
  s.recv_window = 64 << 10;
  utp_sim sim(s);
  REQUIRE(connect(sim));
  std::size_t written = 0;
  sim.on_pump = [&] {
    while (written < (1u << 20)) {
      auto n = sim.a().write(bytes(4096, 7));
      written += n;
      if (n == 0) break;
    }
  };
  sim.run_until([] { return false; }, seconds(5));
  CHECK(sim.b().readable() <= s.recv_window);
  CHECK(sim.b().readable() >= s.recv_window - 2 * (s.packet_size + header_size));
  std::size_t total = 0;
  bytes buf(1 << 16);
  sim.on_pump = [&] {
    while (written < (1u << 20)) {
      auto n = sim.a().write(bytes(4096, 7));
      written += n;
      if (n == 0) break;
    }
    total += sim.b().read(buf);
  };
  REQUIRE(sim.run_until([&] { return total == (1u << 20); }, seconds(60)));
}

TEST_CASE("utp: a reader stopped for minutes keeps the connection; it resumes at once") {
  utp::settings s;
  s.recv_window = 64 << 10;
  utp_sim sim(s);
  REQUIRE(connect(sim));
  std::size_t written = 0, total = 0;
  bool reading = false;
  bytes buf(1 << 16);
  sim.on_pump = [&] {
    while (written < (1u << 20)) {
      auto n = sim.a().write(bytes(4096, 7));
      written += n;
      if (n == 0) break;
    }
    if (reading) total += sim.b().read(buf);
  };
  sim.run_until([] { return false; }, seconds(300));
  CHECK(sim.a().state() == conn_state::connected);  // zero-window probes are answered
  CHECK(sim.b().state() == conn_state::connected);
  reading = true;
  const auto t0 = sim.now();
  REQUIRE(sim.run_until([&] { return total == (1u << 20); }, seconds(60)));
  // 1 MiB over a 20 ms RTT with a 64 KiB window: about 16 round trips, not
  // a backed-off retransmission timer.
  CHECK(sim.now() - t0 < seconds(2));
}

TEST_CASE("utp: LEDBAT keeps the bottleneck queue near the 100 ms target") {
  // 1 MB/s bottleneck, 25 ms each way: a sender that filled the queue
  // without restraint would push the delay up without bound.
  utp_sim sim({}, {milliseconds(25), 1e6});
  REQUIRE(connect(sim));
  std::size_t written = 0;
  sim.on_pump = [&] {
    for (;;) {
      auto n = sim.a().write(bytes(16384, 9));
      written += n;
      if (n == 0) break;
    }
    bytes buf(1 << 16);
    while (sim.b().read(buf) > 0) {
    }
  };
  sim.run_until([] { return false; }, seconds(40));
  // After the first 20 s, the queueing delay each packet met.
  double sum = 0, worst = 0;
  std::size_t n = 0;
  for (const auto& [t, q] : sim.queue_samples) {
    if (t < time_point{} + seconds(20)) continue;
    const double ms = std::chrono::duration<double, std::milli>(q).count();
    sum += ms;
    worst = std::max(worst, ms);
    ++n;
  }
  REQUIRE(n > 1000);
  const double mean = sum / static_cast<double>(n);
  MESSAGE("mean queueing delay " << mean << " ms, worst " << worst << " ms over " << n
                                 << " packets; goodput " << written / 40 / 1000 << " kB/s");
  CHECK(mean > 50);                             // it does use the queue: the link stays busy
  CHECK(mean < 150);                            // and holds it near the target
  CHECK(written > 35u * 1000 * 1000 * 9 / 10);  // ~90 % of 1 MB/s over 40 s, less start-up
}

TEST_CASE("utp: 10 % loss on a short path: small windows recover without waiting for the RTO") {
  // Early retransmit and the tail loss probe: at 2 ms RTT and 10 % loss in
  // both directions, 4 MiB must not be paced by a 500 ms minimum RTO.
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  utp_sim sim({}, {milliseconds(1), 0});
  sim.hook = [&](utp_sim::side, std::size_t, const packet&) {
    return utp_sim::fate{u(rng) < 0.10 ? 0 : 1, {}};
  };
  REQUIRE(connect(sim));
  test::transfer t{4 << 20, 8};
  sim.on_pump = [&] { t.step(sim.a(), sim.b()); };
  const auto t0 = sim.now();
  REQUIRE(sim.run_until([&] { return t.done(); }, seconds(600)));
  CHECK_FALSE(t.corrupt);
  const double secs = std::chrono::duration<double>(sim.now() - t0).count();
  auto f = sim.a().stats();
  MESSAGE("4 MiB at 10 % loss, 2 ms RTT: "
          << secs << " s simulated, " << f.timeouts << " timeouts, " << f.fast_retransmits
          << " fast retransmits, " << f.tail_probes << " tail probes");
  CHECK(f.tail_probes > 0);
  CHECK(secs < 60);
}

TEST_CASE("utp: jitter that reorders constantly is not taken for loss") {
  // 25 ms each way plus 0-10 ms of jitter per packet: many packets overtake
  // others. Counting rules would halve the window again and again.
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> jitter_us(0, 10000);
  utp_sim sim({}, {milliseconds(25), 0});
  sim.hook = [&](utp_sim::side, std::size_t, const packet&) {
    return utp_sim::fate{1, std::chrono::microseconds(jitter_us(rng))};
  };
  REQUIRE(connect(sim));
  test::transfer t{8 << 20, 9};
  sim.on_pump = [&] { t.step(sim.a(), sim.b()); };
  const auto t0 = sim.now();
  REQUIRE(sim.run_until([&] { return t.done(); }, seconds(600)));
  CHECK_FALSE(t.corrupt);
  const double secs = std::chrono::duration<double>(sim.now() - t0).count();
  auto f = sim.a().stats();
  MESSAGE("8 MiB over 50-70 ms RTT with reordering: "
          << secs << " s simulated, " << f.packets_resent << " resent, " << f.spurious_retransmits
          << " spurious, " << f.timeouts << " timeouts, " << f.tail_probes << " probes, window "
          << f.max_window);
  // Window-limited by the 1 MiB receive window at ~60 ms: about 17 MB/s.
  CHECK(secs < 3);
}

TEST_CASE("utp: a retransmission lost again is found by the packets sent after it, not the RTO") {
  // The oldest packet's first four sends are all dropped while a large
  // window keeps going. Packets sent after each retransmission arrive and
  // are SACKed, so time-based detection (RACK) resends it each time; the
  // backed-off RTO (1, 2, 4 s) is never needed. The sender keeps within
  // what the receiver's SACK can describe for this to hold.
  utp_sim sim({}, {std::chrono::microseconds(600), 0});
  REQUIRE(connect(sim));
  std::optional<std::uint16_t> target;
  int drops = 0;
  sim.hook = [&](utp_sim::side from, std::size_t, const packet& p) {
    utp_sim::fate f;
    if (from != utp_sim::a_side || p.h.type != packet_type::data) return f;
    if (!target && sim.a().stats().max_window > 200000) target = p.h.seq_nr;
    if (target && p.h.seq_nr == *target && drops < 4) {
      ++drops;
      f.copies = 0;
    }
    return f;
  };
  test::transfer t{64u << 20, 11};
  sim.on_pump = [&] { t.step(sim.a(), sim.b()); };
  REQUIRE(sim.run_until([&] { return t.done(); }));
  CHECK_FALSE(t.corrupt);
  CHECK(drops == 4);
  const auto f = sim.a().stats();
  CHECK(f.timeouts == 0);
  CHECK(f.packets_resent == 4);
  CHECK(sim.a().consistent());
  CHECK(sim.b().consistent());
}

TEST_CASE("utp: packets overdue by time are resent on a timer, with no further ACK to prompt it") {
  // After a clean start, a burst of 12 packets of which the first 10 are
  // dropped: the 2 that arrive are SACKed, too few to declare the others
  // lost by count, and too soon to by time. Then nothing more is sent, so
  // no ACK comes to look again: RACK's own deadline must (RFC 8985), well
  // before a tail loss probe would.
  utp_sim sim({}, {std::chrono::microseconds(500), 0});
  REQUIRE(connect(sim));
  test::transfer warm{256 << 10, 12};
  sim.on_pump = [&] { warm.step(sim.a(), sim.b()); };
  REQUIRE(sim.run_until([&] { return warm.done() && sim.a().all_acked(); }));
  const std::uint16_t first = sim.a().stats().next_seq;
  const std::size_t payload = utp::settings{}.packet_size;
  REQUIRE(sim.a().stats().max_window > 12 * (payload + header_size));
  int dropped = 0;
  sim.hook = [&](utp_sim::side from, std::size_t, const packet& p) {
    utp_sim::fate f;
    if (from == utp_sim::a_side && p.h.type == packet_type::data &&
        seq_distance(first, p.h.seq_nr) < 10 && dropped < 10) {
      ++dropped;
      f.copies = 0;
    }
    return f;
  };
  test::transfer burst{12 * payload, 13};
  sim.on_pump = [&] { burst.step(sim.a(), sim.b()); };
  REQUIRE(sim.run_until([&] { return burst.done(); }, seconds(10)));
  CHECK_FALSE(burst.corrupt);
  CHECK(dropped == 10);
  const auto f = sim.a().stats();
  CHECK(f.tail_probes == 0);
  CHECK(f.timeouts == 0);
  CHECK(f.packets_resent == 10);
}

// --- the path MTU search ---

namespace {

utp::settings probing(std::size_t max_datagram) {
  utp::settings s;
  s.max_datagram = max_datagram;
  return s;
}

// A DATA packet's overhead at most: header, full SACK (128 bytes), echo.
constexpr std::size_t data_overhead = header_size + 2 + 128 + mtu_ext_size;

}  // namespace

TEST_CASE("utp: the MTU search finds what the path carries, and loses no data doing it") {
  // The hosts could send 9000; the path carries 4000. Probes of 9000 are
  // dropped (they may not be fragmented); the search narrows to within its
  // 32-byte step below 4000, and data packets grow to fill it.
  utp_sim sim(probing(9000), {milliseconds(10), 0});
  sim.path_mtu = 4000;
  REQUIRE(connect(sim));
  REQUIRE(exchange(sim, 4 << 20));  // the search runs meanwhile, at 500 ms per lost probe
  sim.run_until([] { return false; }, seconds(15));
  REQUIRE(exchange(sim, 4 << 20));
  for (auto* c : {&sim.a(), &sim.b()}) {
    const auto f = c->stats();
    CHECK(f.mtu <= 4000);
    CHECK(f.mtu > 4000 - 32);
    CHECK(f.max_payload == f.mtu - data_overhead);
    CHECK(f.probes_lost >= 3);  // the 9000 tried three times before it is given up
    CHECK(f.probes_sent <=
          8 * 3);                  // log2((9000 - 1356) / 32) < 8 sizes, each tried at most 3 times
    CHECK(f.packets_resent == 0);  // a lost probe is not lost data
    CHECK(f.timeouts == 0);
    CHECK(c->consistent());
  }
  CHECK(sim.largest_data[utp_sim::a_side] <= 4000);
  CHECK(sim.largest_data[utp_sim::a_side] > 3000);  // the packets did grow
  CHECK(sim.largest_data[utp_sim::b_side] <= 4000);
}

TEST_CASE("utp: without probing the packets stay at the base size, and a whole path is taken") {
  SUBCASE("probing off: nothing is probed") {
    utp_sim sim({}, {milliseconds(10), 0});
    REQUIRE(connect(sim));
    REQUIRE(exchange(sim, 1 << 20));
    CHECK(sim.a().stats().probes_sent == 0);
    CHECK(sim.largest_data[utp_sim::a_side] <= utp::settings{}.packet_size + data_overhead);
  }
  SUBCASE("a path as large as the hosts allow: the first probe confirms it") {
    utp_sim sim(probing(9000), {milliseconds(10), 0});
    REQUIRE(connect(sim));
    REQUIRE(exchange(sim, 1 << 20));
    const auto f = sim.a().stats();
    CHECK(f.mtu == 9000);
    CHECK(f.probes_sent == 1);
    CHECK(f.probes_lost == 0);
  }
}

TEST_CASE("utp: a peer that does not say it answers probes (libutp) is never probed") {
  const auto t0 = time_point{};
  auto c = connection::dial(7, 100, t0, probing(9000));
  std::vector<bytes> out;
  const auto send = [&](byte_span d) { out.emplace_back(d.begin(), d.end()); };
  c.flush(t0, send);
  REQUIRE(out.size() == 1);
  const auto syn = decode(out[0]);
  REQUIRE(syn);
  CHECK(syn->answers_probes);    // ours says so
  CHECK(out[0][1] == ext_bits);  // first: libutp reads a SYN only if its first extension is known
  // The answer, as libutp sends it: no MTU extension.
  header h;
  h.type = packet_type::state;
  h.connection_id = 7;
  h.seq_nr = 500;
  h.ack_nr = 100;
  h.wnd_size = 1 << 20;
  const bytes answer = encode(h);
  c.on_packet(*decode(answer), t0 + milliseconds(20));
  REQUIRE(c.state() == conn_state::connected);
  std::vector<std::uint8_t> data(20000, 7);
  CHECK(c.write(data) == data.size());
  auto t = t0 + milliseconds(20);
  for (int i = 0; i < 50; ++i, t += milliseconds(100)) {
    c.on_timer(t);
    c.flush(t, send);
  }
  for (const auto& d : out) {
    const auto p = decode(d);
    REQUIRE(p);
    CHECK_FALSE(p->mtu_probe);
    CHECK(d.size() <= utp::settings{}.packet_size + data_overhead);
  }
  CHECK(c.stats().probes_sent == 0);
}

TEST_CASE("utp: a probe is answered at once and is not taken for a duplicate ACK") {
  // b receives a probe from a: it echoes the id on its next packet, with
  // no delayed-ACK wait; and a's probes, which repeat its ACK, never make b
  // fast-retransmit.
  utp_sim sim(probing(9000), {milliseconds(10), 0});
  std::vector<std::pair<time_point, std::uint32_t>> probes, echoes;
  sim.hook = [&](utp_sim::side from, std::size_t, const packet& p) {
    if (from == utp_sim::a_side && p.mtu_probe) probes.emplace_back(sim.now(), *p.mtu_probe);
    if (from == utp_sim::b_side && p.mtu_echo && *p.mtu_echo != 0)
      echoes.emplace_back(sim.now(), *p.mtu_echo);
    return utp_sim::fate{};
  };
  REQUIRE(connect(sim));
  REQUIRE(exchange(sim, 1 << 20));
  REQUIRE(!probes.empty());
  REQUIRE(echoes.size() == probes.size());
  for (std::size_t i = 0; i < probes.size(); ++i) {
    CHECK(echoes[i].second == probes[i].second);
    CHECK(echoes[i].first - probes[i].first == milliseconds(10));  // the one-way delay, no more
  }
  CHECK(sim.b().stats().fast_retransmits == 0);
}

TEST_CASE("utp: a path that shrinks mid-transfer: back to the base size, then the new size") {
  // After 2 MiB the path drops to 1400 and black-holes everything larger,
  // until the sender has noticed (as a kernel that learnt the new MTU
  // would then fragment what was already cut larger).
  utp_sim sim(probing(9000), {milliseconds(10), 0});
  REQUIRE(connect(sim));
  test::transfer t{8 << 20, 21};
  bool shrunk = false;
  std::size_t before = 0;
  sim.on_pump = [&] {
    t.step(sim.a(), sim.b());
    if (!shrunk && t.read > (2u << 20)) {
      shrunk = true;
      before = sim.a().stats().mtu;
      sim.path_mtu = 1400;
      sim.fragments = false;
    }
    if (shrunk && sim.a().stats().mtu_black_holes > 0) sim.fragments = true;
  };
  REQUIRE(sim.run_until([&] { return t.done(); }));
  CHECK_FALSE(t.corrupt);
  sim.on_pump = nullptr;
  sim.run_until([] { return false; }, seconds(15));  // the new search
  CHECK(before == 9000);
  const auto f = sim.a().stats();
  CHECK(f.mtu_black_holes == 1);
  CHECK(f.mtu <= 1400);
  CHECK(f.mtu > 1400 - 32);
  CHECK(sim.a().consistent());
}

namespace {

// An acceptor fed by hand: the SYN of an initiator at seq 1000, our ISN 5000.
struct half_open {
  time_point t0{};
  std::vector<bytes> out;
  connection c;
  explicit half_open(utp::settings s = {})
      : c(connection::accept(*decode(encode(syn_header())), 5000, t0, s)) {}
  static header syn_header() {
    header h;
    h.type = packet_type::syn;
    h.connection_id = 77;
    h.seq_nr = 1000;
    h.wnd_size = 1 << 20;
    return h;
  }
  void flush(time_point t) {
    c.flush(t, [&](byte_span d) { out.emplace_back(d.begin(), d.end()); });
  }
  // A DATA from the initiator side acknowledging `ack_nr`.
  void data(std::uint16_t ack_nr, time_point t) {
    header h;
    h.type = packet_type::data;
    h.connection_id = 78;
    h.seq_nr = 1001;
    h.ack_nr = ack_nr;
    h.wnd_size = 1 << 20;
    const auto d = encode(h, {}, as_bytes("forged?"));
    c.on_packet(*decode(d), t);
  }
};

}  // namespace

TEST_CASE("utp: an acceptor takes nothing from a peer that has not acknowledged its answer") {
  for (const std::uint16_t wrong : {0, 4998, 5000, 5001, 1000, 65535}) {
    CAPTURE(wrong);
    half_open h;
    h.flush(h.t0);
    REQUIRE(h.out.size() == 1);  // the answer to the SYN
    CHECK(decode(h.out[0])->h.type == packet_type::state);
    CHECK_FALSE(h.c.verified());
    // A blind sender guesses our number wrong: nothing is taken, and the
    // connection ends (one guess per SYN), quietly: no RESET goes back.
    h.data(wrong, h.t0 + milliseconds(10));
    CHECK(h.c.readable() == 0);
    CHECK(h.c.finished());
    CHECK(h.c.stats().unverified_dropped == 1);
    h.flush(h.t0 + milliseconds(10));
    CHECK(h.out.size() == 1);
  }
}

TEST_CASE("utp: the peer's acknowledgement of the answer verifies an acceptor") {
  half_open h;
  h.flush(h.t0);
  h.data(4999, h.t0 + milliseconds(10));  // ack_nr = our ISN - 1, as BEP 29's initiator sends
  CHECK(h.c.verified());
  CHECK(h.c.state() == conn_state::connected);
  CHECK(h.c.readable() == 7);
}

TEST_CASE("utp: an unverified acceptor sends only its answer, and gives up after 5 s") {
  utp::settings s = probing(9000);
  half_open h(s);
  h.flush(h.t0);
  REQUIRE(h.out.size() == 1);
  CHECK(h.c.write(as_bytes("not before we know you")) > 0);
  // Time passes: no data, no probe, no keepalive, to an address that may be forged.
  auto t = h.t0;
  for (int i = 0; i < 60 && !h.c.finished(); ++i) {
    t += milliseconds(100);
    h.c.on_timer(t);
    h.flush(t);
  }
  CHECK(h.out.size() == 1);
  CHECK(h.c.state() == conn_state::timed_out);
  CHECK(t - h.t0 == s.half_open_timeout);
  CHECK(h.c.stats().probes_sent == 0);
}

TEST_CASE("utp: a repeated SYN is answered again and restarts the half-open time") {
  half_open h;
  h.flush(h.t0);
  const auto later = h.t0 + seconds(4);
  h.c.on_packet(*decode(encode(half_open::syn_header())), later);
  h.flush(later);
  CHECK(h.out.size() == 2);
  h.c.on_timer(h.t0 + seconds(6));
  CHECK_FALSE(h.c.finished());
  CHECK(h.c.next_deadline() == later + utp::settings{}.half_open_timeout);
}
