// Crust on a multi-threaded io_context: each node on a strand of its own
// (the service's executor), its application's coroutines on that strand,
// four threads running the context. Run by the test command in every build,
// and in a ThreadSanitizer build of its own (tests/run-all.sh), where any
// data race between the nodes, their sockets' completions and the shared
// parts of the library (logging, crypto, the clock) fails it.
#include "crust/base/log.hpp"
#include "crust/service.hpp"
#include "crust/status_server.hpp"
#include "support/co_test.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <map>
#include <thread>
#include <tuple>

using namespace crust;
namespace asio = boost::asio;

namespace {

constexpr int nodes = 3;
constexpr int per_pair = 300;  // messages each way between each two nodes

using strand = asio::strand<asio::io_context::executor_type>;

// What one node's application saw; touched only on that node's strand
// until the threads have been joined.
struct seen {
  std::map<public_id, int> next;  // the next sequence number expected from each peer
  int messages = 0, out_of_order = 0, corrupt = 0;
  std::vector<error_code> errors;
};

bytes message_of(int seq, const public_id& from) {
  bytes b(200 + static_cast<std::size_t>(seq % 7) * 500, static_cast<byte>(seq));
  std::copy_n(from.key.begin(), 8, b.begin());
  b[8] = static_cast<byte>(seq >> 8);
  b[9] = static_cast<byte>(seq);
  return b;
}

// Runs `body` on `ex` and completes on the caller's executor.
template <class T>
asio::awaitable<T> on(strand& ex, asio::awaitable<T> body) {
  co_return co_await asio::co_spawn(ex, std::move(body), asio::use_awaitable);
}

asio::awaitable<void> receive_all(service& svc, seen& s, int expected) {
  while (s.messages < expected) {
    auto ev = co_await with_timeout(svc.next_event(), seconds(30));
    if (!ev) {
      s.errors.push_back(ev.error());
      co_return;
    }
    auto* m = std::get_if<events::new_message>(&*ev);
    if (!m) continue;
    ++s.messages;
    int& want = s.next[m->peer];
    const int seq = m->payload.size() >= 10 ? (m->payload[8] << 8 | m->payload[9]) : -1;
    if (seq != want) ++s.out_of_order;
    if (m->payload != message_of(seq, m->peer)) ++s.corrupt;
    want = seq + 1;
  }
}

asio::awaitable<void> send_all(service& svc, std::vector<public_id> to, seen& s) {
  for (int i = 0; i < per_pair; ++i) {
    for (const auto& p : to) {
      if (auto r = svc.send(p, message_of(i, svc.id().id())); !r) s.errors.push_back(r.error());
    }
    if (i % 50 == 0) co_await test::sleep_for(milliseconds(1));  // interleave with the others
  }
}

// One GET over HTTP/1.0 from whatever executor runs it; returns the body.
asio::awaitable<std::string> http_get(asio::ip::tcp::endpoint at, std::string target) {
  auto s = co_await transport::tcp_dial(at);
  if (!s) co_return "";
  const std::string req = "GET " + target + " HTTP/1.0\r\nHost: x\r\n\r\n";
  auto [wec, w] =
      co_await asio::async_write(*s, asio::buffer(req), asio::as_tuple(asio::use_awaitable));
  if (wec || w != req.size()) co_return "";
  std::string out;
  std::vector<char> buf(4096);
  for (;;) {
    auto [ec, n] =
        co_await s->async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    out.append(buf.data(), n);
    if (ec) break;
  }
  co_return out;
}

}  // namespace

TEST_CASE("threads: nodes on strands of a 4-thread io_context connect over TCP and µTP") {
  asio::io_context io(4);
  std::vector<strand> strands;
  std::vector<std::unique_ptr<service>> svc;
  std::vector<seen> saw(nodes);
  for (int i = 0; i < nodes; ++i) {
    strands.push_back(asio::make_strand(io));
    svc.push_back(
        std::make_unique<service>(strands.back(), test::loopback_config(), identity::generate()));
  }
  // Every node logs through the one handler, from whichever thread runs it.
  std::atomic<std::size_t> logged{0};
  set_log_handler([&](log_level, std::string_view, std::string_view) { ++logged; },
                  log_level::debug);
  std::atomic<bool> done{false};
  std::exception_ptr failure;
  std::string status_body, metrics_body;
  int connected = 0;

  // The test's own coroutine runs on a strand of its own too; it reaches
  // each node only by running work on that node's strand.
  auto driver = asio::make_strand(io);
  asio::co_spawn(
      driver,
      [&]() -> asio::awaitable<void> {
        std::vector<service::endpoint> tcp(nodes), udp(nodes);
        for (int i = 0; i < nodes; ++i) {
          auto at = co_await on(strands[i], svc[i]->start());
          if (!at) throw std::runtime_error("start: " + at.error().message());
          tcp[i] = *at;
          udp[i] = co_await on(strands[i], [&, i]() -> asio::awaitable<service::endpoint> {
            co_return *svc[i]->local_udp_endpoint();
          }());
        }
        // 0-1 over TCP, 0-2 and 1-2 over µTP.
        const std::tuple<int, int, transport::kind> links[] = {{0, 1, transport::kind::tcp},
                                                               {0, 2, transport::kind::utp},
                                                               {1, 2, transport::kind::utp}};
        for (const auto& [a, b, via] : links) {
          const auto to = via == transport::kind::tcp ? tcp[b] : udp[b];
          auto r = co_await on(strands[a], svc[a]->connect(to, svc[b]->id().public_key(), via));
          if (r) ++connected;
        }
        // Every node waits until it holds both of its connections.
        for (int i = 0; i < nodes; ++i) {
          co_await on(strands[i], [&, i]() -> asio::awaitable<void> {
            co_await test::eventually([&] { return svc[i]->peers().size() == nodes - 1; });
          }());
        }
        // The status server runs on node 0's strand (its executor, as the
        // service's own calls must); clients ask from other strands.
        auto server = status_server::start(strands[0], svc[0]->watch());
        if (!server) throw std::runtime_error("status server: " + server.error().message());
        // Everyone sends to everyone and receives, all at once.
        std::atomic<int> finished{0};
        for (int i = 0; i < nodes; ++i) {
          std::vector<public_id> others;
          for (int j = 0; j < nodes; ++j)
            if (j != i) others.push_back(svc[j]->id().id());
          asio::co_spawn(
              strands[i],
              [&, i, others]() -> asio::awaitable<void> {
                co_await send_all(*svc[i], others, saw[i]);
                co_await receive_all(*svc[i], saw[i], (nodes - 1) * per_pair);
                ++finished;
              },
              asio::detached);
        }
        const auto at = server->local_endpoint();
        while (finished < nodes) {
          metrics_body = co_await http_get(at, "/metrics");
          co_await test::sleep_for(milliseconds(20));
        }
        status_body = co_await http_get(at, "/status");
        co_await on(strands[0], server->stop());
        for (int i = 0; i < nodes; ++i) co_await on(strands[i], svc[i]->stop());
        done = true;
      },
      [&](std::exception_ptr e) {
        failure = e;
        done = true;
      });

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back([&] { io.run_for(std::chrono::seconds(90)); });
  while (!done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  io.stop();
  for (auto& t : threads) t.join();
  set_log_handler(nullptr);
  if (failure) std::rethrow_exception(failure);
  CHECK(logged > 0);
  CHECK(connected == 3);
  for (int i = 0; i < nodes; ++i) {
    CAPTURE(i);
    CHECK(saw[i].errors.empty());
    CHECK(saw[i].messages == (nodes - 1) * per_pair);
    CHECK(saw[i].out_of_order == 0);
    CHECK(saw[i].corrupt == 0);
  }
  CHECK(status_body.find(svc[0]->id().id().to_string()) != std::string::npos);
  CHECK(metrics_body.find("crust_connections{transport=\"utp\"") != std::string::npos);
  CHECK(metrics_body.find("crust_connections{transport=\"tcp\"") != std::string::npos);
}
