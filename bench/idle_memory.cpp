// User-space memory per idle encrypted connection, at 1 000 and 10 000
// connections on one node.
//
// The process forks before it starts anything: the parent is the node (a
// crust::service listening on loopback), the child dials it N times with
// N distinct identities, each a real Noise XK handshake and hello over TCP
// (the raw client keeps nothing but the socket and its keys). The parent
// counts admissions, lets the node settle, and reads glibc's heap in use
// (mallinfo2: arena + mmapped chunks) and its resident set; the figure is
// the growth over the started, empty node divided by the connections. The
// kernel's socket buffers are not user-space memory and are not counted.
// After the child closes every connection, the heap is read again, so a
// leak per connection shows as a remainder.
//   bench_idle_memory [out.json] [--quick]   (--quick: 100 and 300)
#include "bench/common.hpp"
#include "crust/secure/frame.hpp"
#include "crust/secure/handshake.hpp"
#include "crust/secure/message.hpp"
#include "crust/service.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>

namespace asio = boost::asio;
using namespace crust;

namespace {

struct memory {
  double heap = 0;  // bytes in use by malloc
  double rss = 0;   // resident bytes
};

memory read_memory() {
  malloc_trim(0);
  struct mallinfo2 mi = mallinfo2();
  memory m;
  m.heap = static_cast<double>(mi.uordblks + mi.hblkhd);
  std::ifstream statm("/proc/self/statm");
  double pages = 0, resident = 0;
  statm >> pages >> resident;
  m.rss = resident * static_cast<double>(sysconf(_SC_PAGESIZE));
  return m;
}

void write_all(int fd, const void* p, std::size_t n) {
  if (write(fd, p, n) != static_cast<ssize_t>(n)) throw std::runtime_error("pipe write");
}
void read_all(int fd, void* p, std::size_t n) {
  if (read(fd, p, n) != static_cast<ssize_t>(n)) throw std::runtime_error("pipe read");
}

struct raw_conn {
  transport::stream s;
  secure::frame_sealer sealer;
};

// The child: dials in stages of `stages[i]` connections (64 at a time),
// telling the parent after each stage and waiting for its go-ahead.
int run_client(unsigned short port, peer_key node, const std::vector<std::size_t>& stages,
               int to_parent, int from_parent) {
  asio::io_context io;
  std::vector<std::unique_ptr<raw_conn>> conns;
  int status = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        std::uint64_t go = 0;
        read_all(from_parent, &go, sizeof go);  // the parent has read its baseline
        for (auto target : stages) {
          std::size_t next = conns.size();
          conns.resize(target);
          auto worker = [&]() -> asio::awaitable<void> {
            while (next < target) {
              const std::size_t i = next++;
              auto me = identity::generate();
              auto s = co_await transport::tcp_dial({asio::ip::make_address("127.0.0.1"), port});
              if (!s) throw std::runtime_error("dial: " + s.error().message());
              auto hs = co_await secure::run_handshake(
                  *s, secure::handshake::initiator(me, "crust", node));
              if (!hs) throw std::runtime_error("handshake: " + hs.error().message());
              auto c = std::make_unique<raw_conn>(
                  raw_conn{std::move(*s), secure::frame_sealer(std::move(hs->keys.send))});
              bytes frame;
              c->sealer.open_frame(frame);
              const bytes hello = secure::encode_hello(node_role::node, false);
              put_u16(frame, static_cast<std::uint16_t>(hello.size()));
              append(frame, hello);
              if (!c->sealer.close_frame(frame)) throw std::runtime_error("seal");
              co_await asio::async_write(c->s, asio::buffer(frame), asio::use_awaitable);
              conns[i] = std::move(c);
            }
          };
          int running = 0;
          asio::steady_timer done(io);
          for (int w = 0; w < 64; ++w) {
            ++running;
            asio::co_spawn(io, worker(), [&](std::exception_ptr e) {
              if (e) {
                try {
                  std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                  std::fprintf(stderr, "client: %s\n", ex.what());
                }
                status = 1;
              }
              if (--running == 0) done.cancel();
            });
          }
          done.expires_after(std::chrono::hours(1));
          co_await done.async_wait(asio::as_tuple(asio::use_awaitable));
          if (status) break;
          const std::uint64_t n = conns.size();
          write_all(to_parent, &n, sizeof n);
          read_all(from_parent, &go, sizeof go);  // blocks: every connection is idle
        }
        conns.clear();  // closes every socket
      }(),
      asio::detached);
  io.run();
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  const auto cl = bench::parse_command_line(argc, argv);
  const auto& args = cl.args;
  const bool quick = cl.quick;
  const std::string json_out = args.size() > 0 ? args[0] : "";
  const std::vector<std::size_t> stages =
      quick ? std::vector<std::size_t>{100, 300} : std::vector<std::size_t>{1000, 10000};

  // Two sockets per connection across both processes, and some spare.
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  lim.rlim_cur = std::max<rlim_t>(lim.rlim_cur, std::min<rlim_t>(lim.rlim_max, 65536));
  setrlimit(RLIMIT_NOFILE, &lim);

  config cfg;
  cfg.listen_address = "127.0.0.1";
  cfg.enable_lan_discovery = false;
  cfg.enable_port_mapping = false;
  cfg.enable_utp = false;  // the µTP socket's buffers are per node, not per connection
  // Idle means idle: the raw clients never answer heartbeats, so the node
  // must not give up on them while the figure is read.
  cfg.heartbeat_timeout = std::chrono::minutes(10);
  const auto node_id = identity::generate();

  int up[2], down[2];
  if (pipe(up) != 0 || pipe(down) != 0) return 2;
  asio::io_context io;
  service svc(io.get_executor(), cfg, node_id);
  std::optional<unsigned short> port;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto ep = co_await svc.start();
        if (ep) port = ep->port();
      },
      asio::detached);
  io.run_one();
  while (!port && io.run_one() > 0) {
  }
  io.restart();
  if (!port) {
    std::fprintf(stderr, "cannot start the node\n");
    return 2;
  }
  std::fflush(nullptr);
  const pid_t child = fork();
  if (child == 0) {
    close(up[0]);
    close(down[1]);
    // The child must not run the parent's service: a fresh context only.
    _exit(run_client(*port, node_id.public_key(), stages, up[1], down[0]));
  }
  close(up[1]);
  close(down[0]);

  // Let the started node settle before the baseline.
  asio::steady_timer settle(io);
  std::vector<memory> at;
  memory base, after_close;
  std::size_t admitted = 0, lost = 0;
  bool failed = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        settle.expires_after(std::chrono::milliseconds(300));
        co_await settle.async_wait(asio::use_awaitable);
        base = read_memory();
        std::uint64_t go = 1;
        write_all(down[1], &go, sizeof go);
        for (std::size_t target : stages) {
          while (admitted < target) {
            auto ev = co_await svc.next_event();
            if (!ev) {
              failed = true;
              co_return;
            }
            if (std::holds_alternative<events::bootstrap_accept>(*ev)) ++admitted;
            if (std::holds_alternative<events::lost_peer>(*ev)) ++lost;
          }
          std::uint64_t n = 0;
          read_all(up[0], &n, sizeof n);  // the child is done with this stage
          settle.expires_after(std::chrono::milliseconds(500));
          co_await settle.async_wait(asio::use_awaitable);
          at.push_back(read_memory());
          write_all(down[1], &n, sizeof n);
        }
        while (lost < admitted) {
          auto ev = co_await svc.next_event();
          if (!ev) break;
          if (std::holds_alternative<events::lost_peer>(*ev)) ++lost;
        }
        settle.expires_after(std::chrono::milliseconds(300));
        co_await settle.async_wait(asio::use_awaitable);
        after_close = read_memory();
        co_await svc.stop();
      },
      asio::detached);
  io.run();
  int st = 0;
  waitpid(child, &st, 0);
  if (failed || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || at.size() != stages.size()) {
    std::fprintf(stderr, "the run did not complete (admitted %zu)\n", admitted);
    return 1;
  }
  std::printf(
      "| connections | heap per connection | RSS per connection | heap left after all closed |\n");
  std::printf("|---:|---:|---:|---:|\n");
  boost::json::array rows;
  for (std::size_t i = 0; i < stages.size(); ++i) {
    const double n = static_cast<double>(stages[i]);
    const double heap = (at[i].heap - base.heap) / n, rss = (at[i].rss - base.rss) / n;
    std::printf("| %zu | %.0f B (%.1f KiB) | %.0f B | %+.0f B |\n", stages[i], heap, heap / 1024,
                rss, after_close.heap - base.heap);
    rows.push_back({{"connections", stages[i]},
                    {"heap_bytes_per_connection", heap},
                    {"rss_bytes_per_connection", rss}});
  }
  bench::write_json(json_out, {{"benchmark", "idle_memory"},
                               {"base_heap_bytes", base.heap},
                               {"heap_left_after_close_bytes", after_close.heap - base.heap},
                               {"rows", std::move(rows)}});
  return 0;
}
