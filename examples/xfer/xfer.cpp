// crust-xfer: a bulk transfer over µTP or TCP (the bare transports, no
// secure channel), checked byte for byte; the network lab's loss tests and
// the µTP benchmark drive it.
//
//   crust-xfer recv [--tcp] [--bind 127.0.0.1] [--port 0] [--timeout 300]
//       prints "LISTENING <port>", takes one connection, reads to EOF while
//       checking the pattern, closes, prints "RECEIVED <bytes> OK" (exit 0)
//       or "RECEIVED <bytes> CORRUPT <offset>" (exit 1)
//   crust-xfer send [--tcp] --to IP:PORT --bytes N [--timeout 300]
//       writes N bytes of the pattern, ends its side, waits for the
//       receiver's end, prints "SENT <bytes> <seconds> <MB/s>" and, for
//       µTP, "UTP resent=<n> timeouts=<n> rtt_ms=<x> window=<bytes>"
//   --progress (either side, µTP): a "STATS ..." line of the connection's
//       figures every second, and one more at the timeout, for looking
//       inside a slow or stuck transfer
// Errors print "ERROR <what>" and exit 1; the timeout exits 2.
#include "transports/endpoint.hpp"
#include "transports/stream.hpp"
#include "transports/tcp.hpp"
#include "transports/udp.hpp"
#include "transports/utp/manager.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

namespace asio = boost::asio;
using namespace crust;

namespace {

// The byte at offset i of every transfer.
inline byte pattern(std::uint64_t i) {
  return static_cast<byte>((i * 131 + (i >> 8) * 7 + 1) & 0xff);
}

struct options {
  bool tcp = false;
  std::string bind = "127.0.0.1";
  std::uint16_t port = 0;
  std::string to;
  std::uint64_t bytes = 0;
  int timeout = 300;
  bool progress = false;
};

std::shared_ptr<transport::udp_mux> mux_;
std::shared_ptr<utp::manager> utp_;
const utp::utp_stream* watched_ = nullptr;  // the connection --progress reports on

void print_stats(const char* when) {
  if (!watched_) return;
  const auto f = watched_->stats();
  const auto ms = [](duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  char line[480];
  std::snprintf(line, sizeof line,
                "STATS %s window=%zu in_flight=%zu peer_window=%zu rtt_ms=%.2f rto_ms=%.0f "
                "queue_ms=%.1f sent=%llu resent=%llu timeouts=%llu fast=%llu probes=%llu "
                "slow_start=%d state=%s next=%u oldest=%u kept=%zu to_resend=%zu ack_nr=%u "
                "out_of_order=%zu mtu=%zu",
                when, f.max_window, f.in_flight, f.peer_window, ms(f.rtt), ms(f.rto),
                static_cast<double>(f.queue_delay_us) / 1000.0,
                static_cast<unsigned long long>(f.packets_sent),
                static_cast<unsigned long long>(f.packets_resent),
                static_cast<unsigned long long>(f.timeouts),
                static_cast<unsigned long long>(f.fast_retransmits),
                static_cast<unsigned long long>(f.tail_probes), f.slow_start ? 1 : 0,
                utp::to_string(watched_->state()), f.next_seq, f.oldest_unacked, f.packets_kept,
                f.packets_to_resend, f.ack_nr, f.out_of_order, f.mtu);
  std::cout << line << std::endl;
}

// Declared after the stream it watches, so it lets go first.
struct watch_guard {
  watch_guard() = default;
  watch_guard(const watch_guard&) = delete;
  watch_guard& operator=(const watch_guard&) = delete;
  ~watch_guard() { watched_ = nullptr; }
};

asio::awaitable<void> report_every_second() {
  timer t(co_await asio::this_coro::executor);
  for (;;) {
    t.expires_after(seconds(1));
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    print_stats("tick");
  }
}

result<transport::udp_endpoint> start_utp(asio::io_context& io, const transport::udp_endpoint& at,
                                          bool listen) {
  auto m = transport::udp_mux::open(io.get_executor(), at);
  if (!m) return m.error();
  mux_ = *m;
  utp_ = utp::attach(mux_);
  utp_->listen(listen);
  asio::co_spawn(io, mux_->run(), asio::detached);
  asio::co_spawn(io, utp_->run(), asio::detached);
  return mux_->local_endpoint();
}

void stop_utp() {
  if (utp_) utp_->shutdown();
  if (mux_) mux_->close();
}

asio::awaitable<int> recv(asio::io_context& io, options o) {
  error_code ec;
  const auto addr = asio::ip::make_address(o.bind, ec);
  if (ec) {
    std::cout << "ERROR bad --bind address " << o.bind << std::endl;
    co_return 1;
  }
  transport::stream s;
  watch_guard unwatch;
  if (o.tcp) {
    auto acc = transport::tcp_listen(io.get_executor(), {addr, o.port});
    if (!acc) {
      std::cout << "ERROR listen: " << acc.error().message() << std::endl;
      co_return 1;
    }
    std::cout << "LISTENING " << acc->local_endpoint().port() << std::endl;
    auto in = co_await transport::tcp_accept(*acc);
    if (!in) co_return 1;
    s = std::move(*in);
  } else {
    auto at = start_utp(io, {addr, o.port}, true);
    if (!at) {
      std::cout << "ERROR bind: " << at.error().message() << std::endl;
      co_return 1;
    }
    std::cout << "LISTENING " << at->port() << std::endl;
    auto in = co_await utp_->accept();
    if (!in) co_return 1;
    s = transport::stream(std::move(*in));
    watched_ = s.as_utp();
  }
  std::vector<byte> buf(256 * 1024);
  std::uint64_t got = 0;
  for (;;) {
    auto [rec, n] =
        co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    for (std::size_t i = 0; i < n; ++i) {
      if (buf[i] != pattern(got + i)) {
        std::cout << "RECEIVED " << got + i << " CORRUPT " << got + i << std::endl;
        stop_utp();
        co_return 1;
      }
    }
    got += n;
    if (rec) {
      if (rec != asio::error::eof) {
        std::cout << "ERROR read after " << got << " bytes: " << rec.message() << std::endl;
        stop_utp();
        co_return 1;
      }
      break;
    }
  }
  std::cout << "RECEIVED " << got << " OK" << std::endl;
  s.shutdown_send();
  // Let the FIN (or TCP's) go out before the process ends.
  timer t(io.get_executor());
  t.expires_after(milliseconds(300));
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  stop_utp();
  co_return 0;
}

asio::awaitable<int> send(asio::io_context& io, options o) {
  auto to = transport::parse_endpoint(o.to);
  if (!to) {
    std::cout << "ERROR bad --to endpoint " << o.to << std::endl;
    co_return 1;
  }
  const auto t0 = std::chrono::steady_clock::now();
  transport::stream s;
  watch_guard unwatch;
  if (o.tcp) {
    auto out = co_await transport::tcp_dial(*to);
    if (!out) {
      std::cout << "ERROR connect: " << out.error().message() << std::endl;
      co_return 1;
    }
    s = std::move(*out);
  } else {
    const transport::udp_endpoint any(to->address().is_v4()
                                          ? asio::ip::address(asio::ip::address_v4::any())
                                          : asio::ip::address(asio::ip::address_v6::any()),
                                      0);
    if (auto at = start_utp(io, any, false); !at) {
      std::cout << "ERROR bind: " << at.error().message() << std::endl;
      co_return 1;
    }
    auto out = co_await utp_->connect({to->address(), to->port()});
    if (!out) {
      std::cout << "ERROR connect: " << out.error().message() << std::endl;
      stop_utp();
      co_return 1;
    }
    s = transport::stream(std::move(*out));
    watched_ = s.as_utp();
  }
  std::vector<byte> chunk(256 * 1024);
  for (std::uint64_t done = 0; done < o.bytes;) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk.size(), o.bytes - done));
    for (std::size_t i = 0; i < n; ++i) chunk[i] = pattern(done + i);
    auto [ec, w] = co_await asio::async_write(s, asio::buffer(chunk.data(), n),
                                              asio::as_tuple(asio::use_awaitable));
    if (ec) {
      std::cout << "ERROR write after " << done << " bytes: " << ec.message() << std::endl;
      stop_utp();
      co_return 1;
    }
    done += w;
  }
  s.shutdown_send();
  // The receiver ends its side once it has read (and checked) everything.
  std::vector<byte> sink(4096);
  for (;;) {
    auto [ec, n] =
        co_await s.async_read_some(asio::buffer(sink), asio::as_tuple(asio::use_awaitable));
    if (ec) break;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  char line[160];
  std::snprintf(line, sizeof line, "SENT %llu %.3f %.2f", static_cast<unsigned long long>(o.bytes),
                secs, static_cast<double>(o.bytes) / 1e6 / secs);
  std::cout << line << std::endl;
  if (!o.tcp) {
    // The handle is still ours: its figures are the connection's.
    if (const auto* u = s.as_utp()) {
      const auto f = u->stats();
      std::snprintf(line, sizeof line,
                    "UTP resent=%llu timeouts=%llu rtt_ms=%.2f window=%zu mtu=%zu "
                    "mtu_probes=%llu mtu_probes_lost=%llu",
                    static_cast<unsigned long long>(f.packets_resent),
                    static_cast<unsigned long long>(f.timeouts),
                    std::chrono::duration<double, std::milli>(f.rtt).count(), f.max_window, f.mtu,
                    static_cast<unsigned long long>(f.probes_sent),
                    static_cast<unsigned long long>(f.probes_lost));
      std::cout << line << std::endl;
    }
  }
  stop_utp();
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"crust-xfer: a checked bulk transfer over µTP or TCP"};
  app.require_subcommand(1);
  options o;
  auto* r = app.add_subcommand("recv", "take one connection and check what arrives");
  auto* s = app.add_subcommand("send", "send the pattern to a receiver");
  for (auto* sub : {r, s}) {
    sub->add_flag("--tcp", o.tcp, "TCP instead of µTP");
    sub->add_option("--timeout", o.timeout, "give up after this many seconds");
    sub->add_flag("--progress", o.progress, "print the µTP connection's figures every second");
  }
  r->add_option("--bind", o.bind, "address to listen on");
  r->add_option("--port", o.port, "port to listen on (0 = random)");
  s->add_option("--to", o.to, "receiver, ip:port")->required();
  s->add_option("--bytes", o.bytes, "how many bytes")->required();
  CLI11_PARSE(app, argc, argv);

  asio::io_context io;
  int rc = 2;
  auto body = r->parsed() ? recv(io, o) : send(io, o);
  asio::co_spawn(io, std::move(body), [&](std::exception_ptr e, int v) {
    rc = e ? 1 : v;
    io.stop();
  });
  if (o.progress) asio::co_spawn(io, report_every_second(), asio::detached);
  io.run_for(std::chrono::seconds(o.timeout));
  if (rc == 2) {
    print_stats("at-timeout");
    std::cout << "ERROR timeout after " << o.timeout << " s" << std::endl;
  }
  watched_ = nullptr;
  // The socket and manager go before the io_context they were made on
  // (their timers need its services); coroutines still holding them are
  // destroyed with the io_context.
  stop_utp();
  utp_.reset();
  mux_.reset();
  return rc;
}
