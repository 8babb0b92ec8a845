// Encrypted stream throughput against raw TCP, in the same harness.
//
// Both sides run on their own io_context thread (2 cores). For each message
// size the same amount of payload goes one way, in batches of `batch` bytes:
// raw TCP writes length-prefixed messages with one write per batch; Crust
// queues the batch's messages and awaits flush(). Raw and Crust runs are
// interleaved, repeated, and the medians compared: the ratio is the figure,
// not the absolute rate, because these machines are shared and noisy.
#include "crust/service.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <future>
#include <iostream>
#include <thread>

namespace asio = boost::asio;
using namespace crust;

namespace {

constexpr std::size_t batch = 4 << 20;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::uint64_t total_for(std::size_t size) {
  // Enough bytes for a stable figure, fewer for tiny messages (per-message cost dominates).
  return size < 1024 ? 32ull << 20 : 256ull << 20;
}

// Runs `f` on a fresh io_context in its own thread; returns its result.
template <class F>
auto on_thread(F f) {
  using R = typename decltype(f(std::declval<asio::io_context&>()))::value_type;
  return std::async(std::launch::async, [f]() mutable {
    asio::io_context io;
    std::optional<R> out;
    asio::co_spawn(io, f(io), [&](std::exception_ptr e, R r) {
      if (e) std::rethrow_exception(e);
      out = std::move(r);
    });
    io.run();
    return *out;
  });
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
    std::vector<std::uint8_t> buf(256 * 1024);
    std::uint64_t got = 0;
    auto t0 = clock::now();
    while (got < count * (size + 4)) {
      auto n = co_await s->async_read_some(asio::buffer(buf), asio::use_awaitable);
      got += n;
    }
    co_return static_cast<double>(count * size) / 1e6 /
        std::chrono::duration<double>(clock::now() - t0).count();
  });
  auto port = port_f.get();
  auto sender = on_thread([&](asio::io_context&) -> asio::awaitable<int> {
    auto s = co_await transport::tcp_dial({asio::ip::make_address("127.0.0.1"), port});
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
      co_await asio::async_write(*s, asio::buffer(out), asio::use_awaitable);
    }
    co_return 0;
  });
  sender.get();
  return receiver.get();
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
  int reps = argc > 1 ? std::atoi(argv[1]) : 3;
  std::string json_out = argc > 2 ? argv[2] : "";
  const std::vector<std::size_t> sizes = {64, 1024, 16 * 1024, 64 * 1024, 1 << 20};
  boost::json::array rows;
  std::printf("| message size | raw TCP MB/s | Crust MB/s | Crust / raw |\n");
  std::printf("|---:|---:|---:|---:|\n");
  for (auto size : sizes) {
    std::vector<double> raw, enc;
    for (int r = 0; r < reps; ++r) {  // interleaved: raw, crust, raw, crust...
      raw.push_back(run_raw(size));
      enc.push_back(run_crust(size));
    }
    double mr = median(raw), me = median(enc);
    std::printf("| %zu B | %.0f | %.0f | %.2f |\n", size, mr, me, me / mr);
    std::fflush(stdout);
    rows.push_back({{"size", size},
                    {"raw_mbps", mr},
                    {"crust_mbps", me},
                    {"ratio", me / mr},
                    {"repetitions", reps}});
  }
  if (!json_out.empty()) {
    std::ofstream(json_out) << boost::json::serialize(boost::json::object{
        {"benchmark", "encrypted stream throughput vs raw TCP"}, {"rows", std::move(rows)}});
  }
  return 0;
}
