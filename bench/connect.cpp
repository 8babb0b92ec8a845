// Connect + first round trip: how long from "dial" to the first echoed
// message, for raw TCP, TCP + TLS 1.3 and Crust, between the same two hosts
// (bench/connect.sh puts them in two network namespaces joined by a delayed
// link). The raw TCP connect alone is one round trip and is reported as the
// measured RTT, the unit the others are counted in.
// TLS is full handshakes (no tickets, no resumption) with the client
// verifying the server's certificate; Crust authenticates both ends.
//   bench_connect serve PORT_TCP PORT_TLS PORT_CRUST SECONDS CERT.pem
//       writes its TLS certificate to CERT.pem, prints "key HEX" (the Crust
//       node's peer key), then echoes on all three ports for SECONDS
//   bench_connect dial ADDR PORT_TCP PORT_TLS PORT_CRUST KEY ROUNDS CERT.pem
//       trusts CERT.pem, dials interleaved (tcp, tls, crust, tcp, ...) and
//       prints one JSON object with the medians and every sample
#include "bench/common.hpp"
#include "bench/tls.hpp"
#include "crust/service.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/pem.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using namespace crust;
using steady = std::chrono::steady_clock;

namespace {

constexpr std::size_t probe = 32;  // the first message's size, each way
const char* suite = "TLS_AES_256_GCM_SHA384";

config node_config() {
  config cfg;
  cfg.listen_address = "0.0.0.0";
  cfg.enable_lan_discovery = false;
  cfg.enable_port_mapping = false;
  cfg.enable_utp = false;
  return cfg;
}

template <class Stream>
asio::awaitable<void> echo_once(Stream& s) {
  std::array<std::uint8_t, probe> buf{};
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read(s, asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    auto [wec, m] =
        co_await asio::async_write(s, asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (wec) co_return;
  }
}

asio::awaitable<void> serve_tcp(tcp::acceptor& acc) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    sock.set_option(tcp::no_delay(true));
    asio::co_spawn(
        acc.get_executor(),
        [s = std::move(sock)]() mutable -> asio::awaitable<void> { co_await echo_once(s); },
        asio::detached);
  }
}

asio::awaitable<void> serve_tls(tcp::acceptor& acc, asio::ssl::context& ctx) {
  for (;;) {
    auto [ec, sock] = co_await acc.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    sock.set_option(tcp::no_delay(true));
    asio::co_spawn(
        acc.get_executor(),
        [s = asio::ssl::stream<tcp::socket>(std::move(sock),
                                            ctx)]() mutable -> asio::awaitable<void> {
          auto [hec] = co_await s.async_handshake(asio::ssl::stream_base::server,
                                                  asio::as_tuple(asio::use_awaitable));
          if (!hec) co_await echo_once(s);
        },
        asio::detached);
  }
}

asio::awaitable<void> serve_crust(service& svc) {
  for (;;) {
    auto ev = co_await svc.next_event();
    if (!ev) co_return;
    if (auto* m = std::get_if<events::new_message>(&*ev)) (void)svc.send(m->peer, m->payload);
  }
}

int serve(unsigned short tcp_port, unsigned short tls_port, unsigned short crust_port,
          int seconds_to_run, const std::string& pem_path) {
  asio::io_context io;
  auto tls = bench::make_tls(suite);
  // Hand the certificate to the dialler (same file system: both namespaces
  // are this machine's).
  {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(pem_path.c_str(), "w"), BIO_free);
    if (!bio ||
        PEM_write_bio_X509(bio.get(), SSL_CTX_get0_certificate(tls->server.native_handle())) != 1)
      throw std::runtime_error("cannot write " + pem_path);
  }
  tcp::acceptor a1(io, {tcp::v4(), tcp_port}), a2(io, {tcp::v4(), tls_port});
  auto cfg = node_config();
  cfg.tcp_acceptor_port = crust_port;
  const auto id = identity::generate();
  service svc(io.get_executor(), cfg, id);
  asio::co_spawn(io, serve_tcp(a1), asio::detached);
  asio::co_spawn(io, serve_tls(a2, tls->server), asio::detached);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto ep = co_await svc.start();
        if (!ep) throw std::runtime_error("start: " + ep.error().message());
        std::printf("key %s\n", id.public_key().to_string().c_str());
        std::fflush(stdout);
        co_await serve_crust(svc);
      },
      asio::detached);
  asio::steady_timer stop(io, std::chrono::seconds(seconds_to_run));
  stop.async_wait([&](auto) { io.stop(); });
  io.run();
  return 0;
}

double ms_since(steady::time_point t0) {
  return std::chrono::duration<double, std::milli>(steady::now() - t0).count();
}

// Raw TCP: returns {connect ms, connect + echo ms}.
asio::awaitable<std::pair<double, double>> dial_tcp(tcp::endpoint to) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket s(ex);
  const auto t0 = steady::now();
  co_await s.async_connect(to, asio::use_awaitable);
  const double connected = ms_since(t0);
  s.set_option(tcp::no_delay(true));
  std::array<std::uint8_t, probe> buf{};
  co_await asio::async_write(s, asio::buffer(buf), asio::use_awaitable);
  co_await asio::async_read(s, asio::buffer(buf), asio::use_awaitable);
  co_return std::pair{connected, ms_since(t0)};
}

asio::awaitable<double> dial_tls(tcp::endpoint to, asio::ssl::context& ctx) {
  auto ex = co_await asio::this_coro::executor;
  asio::ssl::stream<tcp::socket> s(ex, ctx);
  const auto t0 = steady::now();
  co_await s.next_layer().async_connect(to, asio::use_awaitable);
  s.next_layer().set_option(tcp::no_delay(true));
  co_await s.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
  std::array<std::uint8_t, probe> buf{};
  co_await asio::async_write(s, asio::buffer(buf), asio::use_awaitable);
  co_await asio::async_read(s, asio::buffer(buf), asio::use_awaitable);
  co_return ms_since(t0);
}

// Crust: a fresh node and identity each time (so the peer holds no earlier
// connection of ours); timed from connect() to the echo's arrival. Returns
// {connect() ms, connect + echo ms}.
asio::awaitable<std::pair<double, double>> dial_crust(tcp::endpoint to, peer_key key) {
  auto ex = co_await asio::this_coro::executor;
  auto cfg = node_config();
  service svc(ex, cfg, identity::generate());
  auto started = co_await svc.start();
  if (!started) throw std::runtime_error("start: " + started.error().message());
  const auto t0 = steady::now();
  auto info = co_await svc.connect(to, key);
  if (!info) throw std::runtime_error("crust connect: " + info.error().message());
  const double connected = ms_since(t0);
  if (auto r = svc.send(info->id, bytes(probe, 0x5a)); !r)
    throw std::runtime_error("send: " + r.error().message());
  for (;;) {
    auto ev = co_await svc.next_event();
    if (!ev) throw std::runtime_error("no echo: " + ev.error().message());
    if (std::holds_alternative<events::new_message>(*ev)) break;
  }
  const double total = ms_since(t0);
  co_await svc.stop(std::chrono::milliseconds(200));
  co_return std::pair{connected, total};
}

int dial(const std::string& addr, unsigned short tcp_port, unsigned short tls_port,
         unsigned short crust_port, const std::string& key_hex, int rounds,
         const std::string& pem_path) {
  auto key = peer_key::parse(key_hex);
  if (!key) throw std::runtime_error("bad key");
  auto tls = bench::make_tls(suite);  // for its settings; the trust is the server's certificate
  {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(pem_path.c_str(), "r"), BIO_free);
    X509* cert = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
    if (!cert) throw std::runtime_error("cannot read " + pem_path);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(tls->client.native_handle()), cert);
    X509_free(cert);
  }
  const auto ip = asio::ip::make_address(addr);
  std::vector<double> rtt, tcp_ms, tls_ms, crust_connect, crust_ms;
  auto run = bench::on_thread([&](asio::io_context&) -> asio::awaitable<int> {
    (void)co_await dial_tcp({ip, tcp_port});  // not counted: warms the neighbour caches
    for (int r = 0; r < rounds; ++r) {
      auto [c, t] = co_await dial_tcp({ip, tcp_port});
      rtt.push_back(c);
      tcp_ms.push_back(t);
      tls_ms.push_back(co_await dial_tls({ip, tls_port}, tls->client));
      auto [cc, ct] = co_await dial_crust({ip, crust_port}, *key);
      crust_connect.push_back(cc);
      crust_ms.push_back(ct);
    }
    co_return 0;
  });
  run.get();
  const double unit = bench::median(rtt);
  boost::json::object o{{"benchmark", "connect"},
                        {"rounds", rounds},
                        {"tls_suite", suite},
                        {"rtt_ms", unit},
                        {"tcp_ms", bench::median(tcp_ms)},
                        {"tls_ms", bench::median(tls_ms)},
                        {"crust_connect_ms", bench::median(crust_connect)},
                        {"crust_ms", bench::median(crust_ms)},
                        {"tcp_rtts", bench::median(tcp_ms) / unit},
                        {"tls_rtts", bench::median(tls_ms) / unit},
                        {"crust_connect_rtts", bench::median(crust_connect) / unit},
                        {"crust_rtts", bench::median(crust_ms) / unit},
                        {"samples",
                         {{"rtt", bench::to_json(rtt)},
                          {"tcp", bench::to_json(tcp_ms)},
                          {"tls", bench::to_json(tls_ms)},
                          {"crust_connect", bench::to_json(crust_connect)},
                          {"crust", bench::to_json(crust_ms)}}}};
  std::cout << boost::json::serialize(o) << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto port = [&](int i) { return static_cast<unsigned short>(std::atoi(argv[i])); };
    if (argc == 7 && std::strcmp(argv[1], "serve") == 0)
      return serve(port(2), port(3), port(4), std::atoi(argv[5]), argv[6]);
    if (argc == 9 && std::strcmp(argv[1], "dial") == 0)
      return dial(argv[2], port(3), port(4), port(5), argv[6], std::atoi(argv[7]), argv[8]);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_connect: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr,
               "usage: bench_connect serve TCP_PORT TLS_PORT CRUST_PORT SECONDS CERT.pem\n"
               "       bench_connect dial ADDR TCP_PORT TLS_PORT CRUST_PORT KEY ROUNDS CERT.pem\n");
  return 2;
}
