// `crust-node demo`: a local network of nodes in one process. Every pair
// connects (the first node is dialled by address only, as a hard-coded
// contact without a key would be; the others by key), each side sends
// messages of several sizes, one larger than a frame and one signed, and
// the receiver checks every byte and every signature. The report is a table;
// the exit code is non-zero if anything failed.
#include "common.hpp"

#include "crust/base/race.hpp"
#include "crust/secure/crypto.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>

#include <cstdio>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

namespace crust_node {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace crust;

namespace {

// 16 B, 1 KiB, 64 KiB (one frame holds at most 65519 bytes, so this one is
// two frames) and 1 MiB (17 frames); the last message is also signed.
const std::vector<std::size_t> demo_sizes = {16, 1024, 64 * 1024, 1024 * 1024};

bytes payload_for(std::size_t from, std::size_t to, std::size_t k, std::size_t size) {
  bytes b(size);
  std::uint32_t x = static_cast<std::uint32_t>(from * 7919 + to * 104729 + k * 1299709 + 1);
  for (auto& v : b) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    v = static_cast<byte>(x);
  }
  return b;
}

struct direction {
  std::size_t sent = 0, sent_bytes = 0;
  std::size_t received = 0, received_bytes = 0;
  std::size_t verified = 0;
  std::size_t signatures_ok = 0;
};

struct link {
  std::size_t a = 0, b = 0;       // a < b
  std::optional<peer_info> info;  // as the dialler saw it
  std::string error;
  direction ab, ba;
};

std::string human_bytes(double n) {
  const char* unit[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (n >= 1024 && u < 3) {
    n /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", n, unit[u]);
  return buf;
}

}  // namespace

int cmd_demo(int node_count, const std::string& network, bool as_json) {
  const auto n = static_cast<std::size_t>(node_count);
  asio::io_context io;
  std::vector<std::unique_ptr<service>> nodes;
  std::vector<std::string> listening(n);
  std::vector<link> links;
  std::map<std::pair<std::size_t, std::size_t>, std::size_t> link_of;  // (a, b) -> index
  std::map<public_id, std::size_t> index_of;
  bool ok = true;
  std::size_t expected_messages = 0;
  std::size_t delivered_messages = 0;
  const auto t_start = clock::now();
  duration elapsed{};

  for (std::size_t i = 0; i < n; ++i) {
    config cfg;
    cfg.listen_address = "127.0.0.1";
    cfg.network_name = network;
    nodes.push_back(std::make_unique<service>(io.get_executor(), cfg, identity::generate()));
    index_of[nodes.back()->id().id()] = i;
  }
  for (std::size_t a = 0; a < n; ++a)
    for (std::size_t b = a + 1; b < n; ++b) {
      link_of[{a, b}] = links.size();
      links.push_back(link{a, b, std::nullopt, {}, {}, {}});
    }

  auto receive_loop = [&](std::size_t me) -> asio::awaitable<void> {
    for (;;) {
      auto ev = co_await nodes[me]->next_event();
      if (!ev) co_return;
      auto* m = std::get_if<events::new_message>(&*ev);
      if (!m) continue;
      std::size_t from = index_of.at(m->peer);
      auto& l = links[link_of.at({std::min(from, me), std::max(from, me)})];
      auto& d = from < me ? l.ab : l.ba;
      std::size_t k = d.received++;
      d.received_bytes += m->payload.size();
      if (k < demo_sizes.size() && m->payload == payload_for(from, me, k, demo_sizes[k]))
        ++d.verified;
      if (m->signature &&
          verify_message_signature(m->peer, nodes[me]->id().id(), m->payload, *m->signature))
        ++d.signatures_ok;
      ++delivered_messages;
    }
  };

  auto main_task = [&]() -> asio::awaitable<void> {
    for (std::size_t i = 0; i < n; ++i) {
      auto ep = co_await nodes[i]->start();
      if (!ep) {
        std::cerr << "demo: node " << i << " cannot listen: " << ep.error().message() << "\n";
        ok = false;
        co_return;
      }
      listening[i] = transport::to_string(*ep);
      asio::co_spawn(io, receive_loop(i), asio::detached);
    }
    // Every pair connects. n0 plays the seed: the others reach it by
    // address alone (Noise XX), as a hard-coded contact without a key.
    for (auto& l : links) {
      const bool to_seed = l.a == 0;
      auto& dialler = *nodes[to_seed ? l.b : l.a];
      auto& target = *nodes[to_seed ? l.a : l.b];
      auto ep = *target.local_endpoint();
      // (GCC 12 miscompiles `c ? co_await x : co_await y`; keep them apart.)
      result<peer_info> r = make_error_code(errc::not_connected);
      if (to_seed)
        r = co_await dialler.connect(ep);
      else
        r = co_await dialler.connect(ep, target.id().public_key());
      if (!r) {
        l.error = r.error().message();
        ok = false;
        continue;
      }
      l.info = *r;
    }
    // connect() returns when the dialler holds the keys; the other end
    // registers the peer when the last handshake message reaches it. Wait
    // (bounded) until every node sees every other.
    const auto settle = clock::now() + seconds(10);
    auto everyone_connected = [&] {
      for (auto& node : nodes)
        if (node->peers().size() != n - 1) return false;
      return true;
    };
    while (!everyone_connected() && clock::now() < settle) {
      timer t(io);
      t.expires_after(milliseconds(2));
      co_await t.async_wait(asio::use_awaitable);
    }
    // Sends both ways on every link.
    for (auto& l : links) {
      if (!l.info) continue;
      for (auto [from, to, dir] : {std::tuple{l.a, l.b, &l.ab}, std::tuple{l.b, l.a, &l.ba}}) {
        for (std::size_t k = 0; k < demo_sizes.size(); ++k) {
          const bool sign = k + 1 == demo_sizes.size();
          auto r = nodes[from]->send(nodes[to]->id().id(), payload_for(from, to, k, demo_sizes[k]),
                                     {priority::normal, sign});
          if (!r) {
            l.error = "send: " + r.error().message();
            ok = false;
            continue;
          }
          ++dir->sent;
          dir->sent_bytes += demo_sizes[k];
          ++expected_messages;
        }
      }
    }
    // Wait for delivery, bounded.
    const auto deadline = clock::now() + seconds(30);
    while (delivered_messages < expected_messages && clock::now() < deadline) {
      timer t(io);
      t.expires_after(milliseconds(5));
      co_await t.async_wait(asio::use_awaitable);
    }
    elapsed = clock::now() - t_start;
    for (auto& node : nodes) co_await node->stop();
  };
  asio::co_spawn(io, main_task(), [&](std::exception_ptr e) {
    if (e) std::rethrow_exception(e);
  });
  io.run_for(seconds(60));

  // --- the report ---
  std::size_t total_msgs = 0, total_bytes = 0, verified_links = 0;
  for (auto& l : links) {
    bool good = l.info && l.error.empty() && l.ab.verified == demo_sizes.size() &&
                l.ba.verified == demo_sizes.size() && l.ab.received == l.ab.sent &&
                l.ba.received == l.ba.sent && l.ab.signatures_ok == 1 && l.ba.signatures_ok == 1;
    if (!good) ok = false;
    verified_links += good;
    total_msgs += l.ab.received + l.ba.received;
    total_bytes += l.ab.received_bytes + l.ba.received_bytes;
  }

  if (as_json) {
    json::array rows;
    for (auto& l : links) {
      json::object r{{"a", l.a}, {"b", l.b}, {"error", l.error}};
      if (l.info) {
        r["transport"] = transport::to_string(l.info->transport);
        r["pattern"] = l.info->address_only ? "XX" : "XK";
        r["handshake_ms"] =
            std::chrono::duration<double, std::milli>(l.info->handshake_time).count();
        r["connection_id"] = l.info->connection_id;
      }
      r["a_to_b"] = {
          {"messages", l.ab.received}, {"bytes", l.ab.received_bytes}, {"verified", l.ab.verified}};
      r["b_to_a"] = {
          {"messages", l.ba.received}, {"bytes", l.ba.received_bytes}, {"verified", l.ba.verified}};
      rows.push_back(std::move(r));
    }
    json::array ns;
    for (std::size_t i = 0; i < n; ++i)
      ns.push_back(json::object{
          {"node", i}, {"id", nodes[i]->id().id().to_string()}, {"listening", listening[i]}});
    std::cout << json::serialize(json::object{{"network", network},
                                              {"nodes", std::move(ns)},
                                              {"links", std::move(rows)},
                                              {"ok", ok}})
              << std::endl;
    return ok ? 0 : 1;
  }

  std::cout << "Crust demo: " << n << " nodes on loopback, network \"" << network << "\"\n\n";
  std::cout << "  node  id        listening on\n";
  for (std::size_t i = 0; i < n; ++i)
    std::cout << "  " << std::left << std::setw(6) << ("n" + std::to_string(i))
              << nodes[i]->id().id().short_string() << "  " << listening[i] << "\n";
  std::cout << "\n  link      transport  noise  handshake   a->b msgs  bytes       b->a msgs  "
               "bytes       verified\n";
  for (auto& l : links) {
    std::ostringstream name;
    name << "n" << l.a << " <> n" << l.b;
    std::cout << "  " << std::left << std::setw(10) << name.str();
    if (!l.info) {
      std::cout << "failed: " << l.error << "\n";
      continue;
    }
    char hs[32];
    std::snprintf(hs, sizeof hs, "%.2f ms",
                  std::chrono::duration<double, std::milli>(l.info->handshake_time).count());
    bool good = l.ab.verified == demo_sizes.size() && l.ba.verified == demo_sizes.size() &&
                l.ab.signatures_ok == 1 && l.ba.signatures_ok == 1 && l.error.empty();
    std::cout << std::setw(11) << transport::to_string(l.info->transport) << std::setw(7)
              << (l.info->address_only ? "XX" : "XK") << std::setw(12) << hs << std::setw(11)
              << l.ab.received << std::setw(12)
              << human_bytes(static_cast<double>(l.ab.received_bytes)) << std::setw(11)
              << l.ba.received << std::setw(12)
              << human_bytes(static_cast<double>(l.ba.received_bytes)) << (good ? "yes" : "NO")
              << (l.error.empty() ? "" : "  (" + l.error + ")") << "\n";
  }
  std::cout
      << "\n  Each direction sends 16 B, 1 KiB, 64 KiB (2 frames) and 1 MiB (17 frames, signed);\n"
      << "  the receiver compares every byte and checks the signature. Links to n0 are\n"
      << "  address-only dials (Noise XX), the others dial a known key (Noise XK).\n\n";
  std::cout << (ok ? "  OK: " : "  FAILED: ") << verified_links << " of " << links.size()
            << " links verified, " << total_msgs << " messages, "
            << human_bytes(static_cast<double>(total_bytes)) << " encrypted end to end in "
            << std::chrono::duration_cast<milliseconds>(elapsed).count() << " ms\n";
  return ok ? 0 : 1;
}

}  // namespace crust_node
