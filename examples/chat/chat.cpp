// A chat between two nodes behind their NATs, through a peer both know.
//
//   crust-chat --via IP:PORT --via-key KEY [--to PEER_ID] [--address A] [--key FILE]
//
// Both sides bootstrap off the mutual peer (any `crust-node run` both can
// reach). The side given --to asks it to introduce them: connection infos
// are swapped through it, both punch at the same moment, and a relay
// circuit through it takes over if no direct path comes
// (service::connect_through). The other side just waits. Then each line
// on stdin goes to the other, and each line from it is printed as
// "<its id>: text". JSON lines on stdout say what happened:
// {"event":"ready","id":...}, {"event":"connected","peer":...,"path":...,
// "transport":...}. The end of stdin (Ctrl-D) ends the chat.
#include <crust/base/race.hpp>
#include <crust/service.hpp>
#include <transports/endpoint.hpp>

#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>

#include <iostream>
#include <string>

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

void say(const std::string& json) {
  std::cout << json << std::endl;
}

// Waits for the first peer other than `via` to be admitted (the side
// that was introduced).
asio::awaitable<std::optional<crust::peer_info>> wait_for_peer(crust::service& node,
                                                               const crust::public_id& via) {
  for (;;) {
    auto ev = co_await node.next_event();
    if (!ev) co_return std::nullopt;
    const crust::peer_info* p = nullptr;
    if (auto* a = std::get_if<crust::events::bootstrap_accept>(&*ev)) p = &a->peer;
    if (auto* c = std::get_if<crust::events::connect_success>(&*ev)) p = &c->peer;
    if (p && p->id != via) co_return *p;
  }
}

// stdin to the peer, a line a message, until the end of input.
asio::awaitable<void> typed(crust::service& node, crust::public_id peer) {
  asio::posix::stream_descriptor in(co_await asio::this_coro::executor, ::dup(STDIN_FILENO));
  asio::streambuf buf(64 * 1024);
  for (;;) {
    auto [ec, n] =
        co_await asio::async_read_until(in, buf, '\n', asio::as_tuple(asio::use_awaitable));
    if (ec) break;  // end of input
    std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + n - 1);
    buf.consume(n);
    if (!node.send(peer, crust::bytes(line.begin(), line.end()))) break;
  }
  (void)co_await node.flush(peer);
}

// The peer's lines to stdout, until it goes.
asio::awaitable<void> heard(crust::service& node, crust::public_id peer) {
  for (;;) {
    auto ev = co_await node.next_event();
    if (!ev) co_return;
    if (auto* m = std::get_if<crust::events::new_message>(&*ev); m && m->peer == peer)
      std::cout << peer.short_string() << ": " << std::string(m->payload.begin(), m->payload.end())
                << std::endl;
    if (auto* l = std::get_if<crust::events::lost_peer>(&*ev); l && l->peer == peer) {
      say("{\"event\":\"lost\",\"reason\":\"" + l->reason.message() + "\"}");
      co_return;
    }
  }
}

asio::awaitable<int> chat(crust::service& node, crust::peer_key via,
                          std::optional<crust::public_id> to) {
  auto at = co_await node.start();
  if (!at) {
    std::cerr << "crust-chat: cannot listen: " << at.error().message() << "\n";
    co_return 1;
  }
  say("{\"event\":\"ready\",\"id\":\"" + node.id().id().to_string() + "\"}");
  auto boot = co_await node.bootstrap();
  if (!boot) {
    std::cerr << "crust-chat: cannot reach the mutual peer: " << boot.error().message() << "\n";
    co_return 1;
  }
  std::optional<crust::peer_info> peer;
  if (to) {
    auto r = co_await node.connect_through(via.id, *to);
    if (!r) {
      std::cerr << "crust-chat: cannot reach " << to->short_string() << ": " << r.error().message()
                << "\n";
      co_return 1;
    }
    peer = *r;
  } else {
    peer = co_await wait_for_peer(node, via.id);
    if (!peer) co_return 1;
  }
  say("{\"event\":\"connected\",\"peer\":\"" + peer->id.to_string() + "\",\"path\":\"" +
      crust::to_string(peer->path) + "\",\"transport\":\"" +
      crust::transport::to_string(peer->transport) + "\"}");
  // Either end finishes the chat: our input ends, or the peer leaves.
  co_await (typed(node, peer->id) || heard(node, peer->id));
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string via_ep, via_key, to_id, address = "0.0.0.0", key_file = "chat.key";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--via")
      via_ep = v;
    else if (a == "--via-key")
      via_key = v;
    else if (a == "--to")
      to_id = v;
    else if (a == "--address")
      address = v;
    else if (a == "--key")
      key_file = v;
  }
  auto ep = crust::transport::parse_endpoint(via_ep);
  auto key = crust::peer_key::parse(via_key);
  std::optional<crust::public_id> to;
  bool to_ok = true;
  if (!to_id.empty()) {
    auto t = crust::public_id::parse(to_id);
    to_ok = t.has_value();
    if (t) to = *t;
  }
  if (!ep || !key || !to_ok) {
    std::cerr << "usage: crust-chat --via IP:PORT --via-key KEY [--to PEER_ID] [--address A] "
                 "[--key FILE]\n";
    return 2;
  }
  auto id = crust::identity::load_or_create(key_file);
  if (!id) {
    std::cerr << "crust-chat: " << key_file << ": " << id.error().message() << "\n";
    return 1;
  }
  crust::config cfg;
  cfg.listen_address = address;
  cfg.enable_lan_discovery = false;
  cfg.hard_coded_contacts.push_back({via_ep, *key});
  asio::io_context io;
  crust::service node(io.get_executor(), cfg, *id);
  int rc = 1;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        rc = co_await chat(node, *key, to);
        co_await node.stop();
      },
      [&](std::exception_ptr e) {
        if (e) rc = 3;
      });
  io.run();
  return rc;
}
