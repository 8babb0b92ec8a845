// Encrypted stream throughput against raw TCP and TLS 1.3, in the same
// harness.
//
// Both sides run on their own io_context thread (2 cores). For each message
// size the same amount of payload goes one way, in batches of `batch` bytes:
// raw TCP writes length-prefixed messages with one write per batch; Crust
// queues the batch's messages and awaits flush(). Raw and Crust runs are
// interleaved, repeated, and the medians compared: the ratio is the figure,
// not the absolute rate, because these machines are shared and noisy.
// TLS 1.3 (asio::ssl over the same OpenSSL, ChaCha20-Poly1305 and
// AES-256-GCM) carries the same length-prefixed batches as raw TCP.
//   bench_throughput [repetitions] [out.json] [--quick] [--size N]
#include "bench/common.hpp"
#include "bench/tls.hpp"
#include "crust/secure/frame.hpp"
#include "crust/secure/noise.hpp"
#include "crust/service.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstdio>
#include <cstring>

namespace asio = boost::asio;
using namespace crust;
using bench::on_thread;

namespace {

constexpr std::size_t batch = 4 << 20;
bool quick = false;  // the test suite's smoke run: tiny totals

std::uint64_t total_for(std::size_t size) {
  // Enough bytes for a stable figure, fewer for tiny messages (per-message cost dominates).
  if (quick) return 1u << 20;
  return size < 1024 ? 32ull << 20 : 256ull << 20;
}

// The sender's side of the raw and TLS runs: length-prefixed messages, one
// write per batch.
template <class Stream>
asio::awaitable<void> send_batches(Stream& s, std::size_t size, std::uint64_t count) {
  bytes msg(size, 0x5a);
  bytes out;
  std::uint64_t sent = 0;
  while (sent < count) {
    out.clear();
    while (out.size() < batch && sent < count) {
      put_u32(out, static_cast<std::uint32_t>(size));
      append(out, msg);
      ++sent;
    }
    co_await asio::async_write(s, asio::buffer(out), asio::use_awaitable);
  }
}

// The receiver's side: reads until `count` messages' bytes arrived; MB/s of payload.
template <class Stream>
asio::awaitable<double> receive_all(Stream& s, std::size_t size, std::uint64_t count) {
  std::vector<std::uint8_t> buf(256 * 1024);
  std::uint64_t got = 0;
  auto t0 = clock::now();
  while (got < count * (size + 4)) {
    auto n = co_await s.async_read_some(asio::buffer(buf), asio::use_awaitable);
    got += n;
  }
  co_return static_cast<double>(count * size) / 1e6 /
      std::chrono::duration<double>(clock::now() - t0).count();
}

// TLS 1.3 with one cipher suite; MB/s at the receiver. The handshake is not timed.
double run_tls(std::size_t size, const std::string& suite) {
  const std::uint64_t count = total_for(size) / size;
  auto tls = bench::make_tls(suite);
  using tls_stream = asio::ssl::stream<asio::ip::tcp::socket>;
  asio::io_context setup;
  asio::ip::tcp::acceptor acc(setup, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acc.local_endpoint().port();
  auto receiver = on_thread([&](asio::io_context& io) -> asio::awaitable<double> {
    asio::ip::tcp::socket sock(io);
    acc.accept(sock);
    sock.set_option(asio::ip::tcp::no_delay(true));
    tls_stream s(std::move(sock), tls->server);
    co_await s.async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
    co_return co_await receive_all(s, size, count);
  });
  auto sender = on_thread([&](asio::io_context& io) -> asio::awaitable<int> {
    tls_stream s(io, tls->client);
    co_await s.next_layer().async_connect({asio::ip::make_address("127.0.0.1"), port},
                                          asio::use_awaitable);
    s.next_layer().set_option(asio::ip::tcp::no_delay(true));
    co_await s.async_handshake(asio::ssl::stream_base::client, asio::use_awaitable);
    co_await send_batches(s, size, count);
    co_return 0;
  });
  sender.get();
  return receiver.get();
}

// Raw TCP: u32 length + payload per message; returns MB/s at the receiver.
double run_raw(std::size_t size) {
  const std::uint64_t total = total_for(size);
  const std::uint64_t count = total / size;
  std::promise<unsigned short> port_p;
  auto port_f = port_p.get_future();
  auto receiver = on_thread([&](asio::io_context& io) -> asio::awaitable<double> {
    auto acc = transport::tcp_listen(io.get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
    port_p.set_value(acc->local_endpoint().port());
    auto s = co_await transport::tcp_accept(*acc);
    co_return co_await receive_all(*s, size, count);
  });
  auto port = port_f.get();
  auto sender = on_thread([&](asio::io_context&) -> asio::awaitable<int> {
    auto s = co_await transport::tcp_dial({asio::ip::make_address("127.0.0.1"), port});
    co_await send_batches(*s, size, count);
    co_return 0;
  });
  sender.get();
  return receiver.get();
}

// The AEAD alone: MB/s of ChaCha20-Poly1305 sealing in place through the
// same cipher_state the frame layer uses, a whole frame at a time. With the
// raw TCP rate it gives the bound an encrypted stream can reach here: each
// byte is both carried and sealed (and opened, on the other core), so
// 1 / (1/raw + 1/aead).
double run_aead() {
  secure::noise::cipher_state cs;
  secure::key32 k{};
  k[0] = 1;
  cs.initialize_key(k);
  // Whole frames at every size: small messages are batched into them.
  const std::size_t piece = secure::max_frame_body;
  bytes buf(piece + secure::aead_tag_size, 0x5a);
  const std::uint64_t total = quick ? 1u << 20 : 128ull << 20;
  std::uint64_t done = 0;
  const auto t0 = clock::now();
  while (done < total) {
    if (!cs.seal_in_place({}, buf.data(), piece)) throw std::runtime_error("seal");
    done += piece;
  }
  return static_cast<double>(done) / 1e6 / std::chrono::duration<double>(clock::now() - t0).count();
}

double run_crust(std::size_t size) {
  const std::uint64_t total = total_for(size);
  const std::uint64_t count = total / size;
  config cfg;
  cfg.listen_address = "127.0.0.1";
  cfg.send_queue_bytes = 2 * batch;
  cfg.event_queue_messages = 1 << 16;
  auto receiver_id = identity::generate();
  std::promise<unsigned short> port_p;
  auto port_f = port_p.get_future();
  auto receiver = on_thread([&](asio::io_context& io) -> asio::awaitable<double> {
    service svc(io.get_executor(), cfg, receiver_id);
    auto ep = co_await svc.start();
    port_p.set_value(ep->port());
    std::uint64_t got = 0;
    time_point t0{};
    while (got < count) {
      auto ev = co_await svc.next_event();
      if (!ev) break;
      if (std::holds_alternative<events::new_message>(*ev)) {
        if (got == 0) t0 = clock::now();
        ++got;
      }
    }
    double mbps = static_cast<double>(count * size) / 1e6 /
                  std::chrono::duration<double>(clock::now() - t0).count();
    co_await svc.stop();
    co_return mbps;
  });
  auto port = port_f.get();
  auto sender = on_thread([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), cfg, identity::generate());
    auto info =
        co_await svc.connect({asio::ip::make_address("127.0.0.1"), port}, receiver_id.public_key());
    if (!info) throw std::runtime_error("connect: " + info.error().message());
    std::uint64_t sent = 0;
    while (sent < count) {
      std::size_t in_batch = 0;
      while (in_batch < batch && sent < count) {
        if (auto r = svc.send(info->id, bytes(size, 0x5a)); !r)
          throw std::runtime_error("send: " + r.error().message());
        in_batch += size;
        ++sent;
      }
      auto f = co_await svc.flush(info->id);
      if (!f) throw std::runtime_error("flush: " + f.error().message());
    }
    // Let the receiver drain before closing.
    timer t(io);
    while (!svc.peers().empty()) {
      t.expires_after(milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
      if (svc.stats(info->id)->messages_sent == count) break;
    }
    co_await svc.stop(seconds(30));
    co_return 0;
  });
  sender.get();
  return receiver.get();
}

}  // namespace

int main(int argc, char** argv) {
  const auto cl = bench::parse_command_line(argc, argv);
  const auto& args = cl.args;
  quick = cl.quick;
  const std::size_t only = cl.size;  // --size N: that message size alone (for profiling)
  const int reps = args.size() > 0 ? std::max(1, std::atoi(args[0].c_str())) : 3;
  const std::string json_out = args.size() > 1 ? args[1] : "";
  const std::vector<std::size_t> sizes =
      only    ? std::vector<std::size_t>{only}
      : quick ? std::vector<std::size_t>{64, 64 * 1024}
              : std::vector<std::size_t>{64, 1024, 16 * 1024, 64 * 1024, 1 << 20};
  const std::string chacha = "TLS_CHACHA20_POLY1305_SHA256", aes = "TLS_AES_256_GCM_SHA384";
  boost::json::array rows;
  std::printf(
      "| message size | raw TCP MB/s | Crust MB/s | TLS ChaCha MB/s | TLS AES-GCM MB/s | "
      "AEAD MB/s | Crust / raw | Crust / bound | Crust / TLS ChaCha | Crust / TLS AES |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (auto size : sizes) {
    std::vector<double> raw, enc, tc, ta, aead;
    for (int r = 0; r < reps; ++r) {  // interleaved: raw, crust, tls, tls, raw, ...
      raw.push_back(run_raw(size));
      enc.push_back(run_crust(size));
      tc.push_back(run_tls(size, chacha));
      ta.push_back(run_tls(size, aes));
      aead.push_back(run_aead());
    }
    const double mr = bench::median(raw), me = bench::median(enc), mc = bench::median(tc),
                 ma = bench::median(ta), mx = bench::median(aead);
    const double bound = 1 / (1 / mr + 1 / mx);
    std::printf("| %zu B | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f |\n", size,
                mr, me, mc, ma, mx, me / mr, me / bound, me / mc, me / ma);
    std::fflush(stdout);
    rows.push_back({{"size", size},
                    {"raw_mbps", mr},
                    {"crust_mbps", me},
                    {"tls_chacha_mbps", mc},
                    {"tls_aes_mbps", ma},
                    {"crust_msgs_per_s", me * 1e6 / static_cast<double>(size)},
                    {"raw_msgs_per_s", mr * 1e6 / static_cast<double>(size)},
                    {"aead_mbps", mx},
                    {"bound_mbps", bound},
                    {"ratio_bound", me / bound},
                    {"ratio_raw", me / mr},
                    {"ratio_tls_chacha", me / mc},
                    {"ratio_tls_aes", me / ma},
                    {"samples",
                     {{"raw", bench::to_json(raw)},
                      {"crust", bench::to_json(enc)},
                      {"tls_chacha", bench::to_json(tc)},
                      {"tls_aes", bench::to_json(ta)}}}});
  }
  bench::write_json(json_out, {{"benchmark", "throughput"},
                               {"repetitions", reps},
                               {"batch_bytes", batch},
                               {"tls_suites", {chacha, aes}},
                               {"rows", std::move(rows)}});
  return 0;
}
