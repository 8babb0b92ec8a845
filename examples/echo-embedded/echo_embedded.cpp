// Crust as a part of an existing Asio program, not a framework around it.
//
// The program already has a server of its own: a line-based admin port
// ("stats", "quit") on its io_context. Crust joins that io_context like
// any other component: it starts no thread and runs no loop of its own.
// Peers that connect by key get every message back, and the program's own
// server reports how many.
//
//   crust-echo-embedded [--port P] [--admin-port Q] [--key FILE]
//
// prints one JSON line, {"crust":"IP:PORT","key":"...","admin":"IP:PORT"},
// then serves until "quit" on the admin port, or SIGINT/SIGTERM.
#include <crust/service.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cstdlib>
#include <iostream>
#include <string>

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct counters {
  std::uint64_t echoed = 0, bytes = 0;
};

// The program's existing server: one command per line, one answer each.
// Clients are served one after another; returns on "quit".
asio::awaitable<void> admin_server(tcp::acceptor& acceptor, const counters& c,
                                   const crust::service& node) {
  for (;;) {
    auto [ec, s] = co_await acceptor.async_accept(use_tuple);
    if (ec) co_return;  // closed: the program is stopping
    asio::streambuf in(1024);
    for (;;) {
      auto [rec, n] = co_await asio::async_read_until(s, in, '\n', use_tuple);
      if (rec) break;
      std::string line(asio::buffers_begin(in.data()), asio::buffers_begin(in.data()) + n);
      in.consume(n);
      while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
      std::string answer;
      if (line == "stats")
        answer = "echoed " + std::to_string(c.echoed) + " messages, " + std::to_string(c.bytes) +
                 " bytes, " + std::to_string(node.peers().size()) + " peers\n";
      else if (line == "quit")
        answer = "bye\n";
      else
        answer = "commands: stats, quit\n";
      co_await asio::async_write(s, asio::buffer(answer), use_tuple);
      if (line == "quit") co_return;
    }
  }
}

// The Crust part: every message goes back to its sender.
asio::awaitable<void> echo(crust::service& node, counters& c) {
  for (;;) {
    auto ev = co_await node.next_event();
    if (!ev) co_return;  // stopped or cancelled
    if (auto* m = std::get_if<crust::events::new_message>(&*ev)) {
      if (node.send(m->peer, m->payload, {m->prio, false})) {
        ++c.echoed;
        c.bytes += m->payload.size();
      }
    }
  }
}

int main(int argc, char** argv) {
  std::uint16_t port = 0, admin_port = 0;
  std::string key_file = "echo.key";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--port")
      port = static_cast<std::uint16_t>(std::atoi(argv[i + 1]));
    else if (a == "--admin-port")
      admin_port = static_cast<std::uint16_t>(std::atoi(argv[i + 1]));
    else if (a == "--key")
      key_file = argv[i + 1];
  }
  auto id = crust::identity::load_or_create(key_file);
  if (!id) {
    std::cerr << "crust-echo-embedded: " << key_file << ": " << id.error().message() << "\n";
    return 1;
  }

  asio::io_context io;  // the program's own, shared by everything below
  tcp::acceptor admin(io, {asio::ip::make_address("127.0.0.1"), admin_port});
  crust::config cfg;
  cfg.listen_address = "127.0.0.1";
  cfg.tcp_acceptor_port = port;
  cfg.enable_lan_discovery = false;
  crust::service node(io.get_executor(), cfg, *id);
  counters c;
  int rc = 0;

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { admin.close(); });

  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto at = co_await node.start();
        if (!at) {
          std::cerr << "crust-echo-embedded: cannot listen: " << at.error().message() << "\n";
          rc = 1;
          co_return;
        }
        std::cout << "{\"crust\":\"" << at->address().to_string() << ":" << at->port()
                  << "\",\"key\":\"" << node.id().public_key().to_string()
                  << "\",\"admin\":\"127.0.0.1:" << admin.local_endpoint().port() << "\"}"
                  << std::endl;
        // Whichever ends first (quit, a signal, the node) ends the other.
        co_await (admin_server(admin, c, node) || echo(node, c));
        co_await node.stop();
      },
      [&](std::exception_ptr e) {
        if (e) rc = 2;
        signals.cancel();
      });
  io.run();
  return rc;
}
