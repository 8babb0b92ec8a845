// The README's example, verbatim, plus main(). The test suite runs it.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <crust/service.hpp>
#include <iostream>
namespace asio = boost::asio;

asio::awaitable<int> hello(asio::io_context& io) {
  crust::config cfg;  // or crust::config::load("crust.json")
  cfg.listen_address = "127.0.0.1";
  crust::service a{io.get_executor(), cfg, crust::identity::generate()};
  crust::service b{io.get_executor(), cfg, crust::identity::load_or_create("b.key").value()};

  auto where = co_await b.start();                                     // TCP on a random port
  auto peer = co_await a.connect(where.value(), b.id().public_key());  // Noise XK
  if (!peer) co_return 1;  // refused, timed out, wrong key, ...: values, not throws
  (void)a.send(peer->id, {'h', 'i'});

  for (auto ev = co_await b.next_event(); ev; ev = co_await b.next_event())
    if (auto* m = std::get_if<crust::events::new_message>(&*ev)) {
      std::cout << "b got " << m->payload.size() << " bytes from " << m->peer.to_string() << "\n";
      break;
    }
  co_await a.stop();
  co_await b.stop();
  co_return 0;
}

int main() {
  asio::io_context io;
  int rc = 1;
  asio::co_spawn(io, hello(io), [&](std::exception_ptr e, int r) { rc = e ? 2 : r; });
  io.run();
  return rc;
}
