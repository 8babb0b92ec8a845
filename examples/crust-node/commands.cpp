// The single-node commands: id, listen, connect, send, chat.
#include "common.hpp"

#include "crust/base/file.hpp"
#include "crust/base/race.hpp"
#include "crust/status_server.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <iostream>

namespace crust_node {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace crust;

namespace {

std::int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The next message event, skipping the others.
asio::awaitable<result<events::new_message>> next_message(service& svc) {
  for (;;) {
    auto ev = co_await svc.next_event();
    if (!ev) co_return ev.error();
    if (auto* m = std::get_if<events::new_message>(&*ev)) co_return std::move(*m);
  }
}

json::object peer_json(const peer_info& p) {
  return {{"id", p.id.to_string()},
          {"key", p.key.to_string()},
          {"transport", transport::to_string(p.transport)},
          {"remote", p.remote},
          {"inbound", p.inbound},
          {"pattern", p.address_only ? "XX" : "XK"},
          {"handshake_ms", std::chrono::duration<double, std::milli>(p.handshake_time).count()},
          {"connection_id", p.connection_id},
          {"role", to_string(p.role)},
          {"path", to_string(p.path)},
          {"connect_ms", std::chrono::duration<double, std::milli>(p.connect_time).count()}};
}

void print_peer(const options& opt, const char* what, const peer_info& p) {
  if (opt.json) {
    auto o = peer_json(p);
    o["event"] = what;
    std::cout << json::serialize(o) << std::endl;
  } else {
    std::cout << what << " " << p.id.to_string() << " over " << transport::to_string(p.transport)
              << " at " << p.remote << " (" << to_string(p.path) << ", Noise "
              << (p.address_only ? "XX" : "XK") << ", handshake "
              << std::chrono::duration<double, std::milli>(p.handshake_time).count() << " ms";
    if (p.connect_time > duration::zero())
      std::cout << ", connected in "
                << std::chrono::duration<double, std::milli>(p.connect_time).count() << " ms";
    std::cout << ")" << std::endl;
  }
}

void print_event(const options& opt, const event& ev) {
  if (!opt.json) {
    if (auto* m = std::get_if<events::new_message>(&ev)) {
      std::string text(m->payload.begin(), m->payload.end());
      std::cout << m->peer.short_string() << ": " << text << std::endl;
      return;
    }
    std::cout << describe(ev) << std::endl;
    return;
  }
  json::object o;
  o["event"] = describe(ev).substr(0, describe(ev).find(' '));
  o["text"] = describe(ev);
  if (auto* m = std::get_if<events::new_message>(&ev)) {
    o["peer"] = m->peer.to_string();
    o["bytes"] = m->payload.size();
    o["signed"] = m->signature.has_value();
  }
  if (auto* p = std::get_if<events::port_mapping_changed>(&ev)) {
    o["kind"] = events::to_string(p->kind);
    o["protocol"] = p->protocol;
    o["internal_port"] = p->internal_port;
    o["external"] = p->external;
    o["method"] = p->method;
  }
  std::cout << json::serialize(o) << std::endl;
}

// What another machine (or terminal) should dial: a wildcard listen address
// is shown as loopback, with the port.
std::string dialable(const transport::tcp_endpoint& ep) {
  if (!ep.address().is_unspecified()) return transport::to_string(ep);
  auto loop = ep.address().is_v6() ? asio::ip::address(asio::ip::address_v6::loopback())
                                   : asio::ip::address(asio::ip::address_v4::loopback());
  return transport::to_string({loop, ep.port()});
}

result<transport::tcp_endpoint> endpoint_or_say(const std::string& text) {
  auto ep = transport::parse_endpoint(text);
  if (!ep) std::cerr << "crust-node: \"" << text << "\" is not an ip:port endpoint\n";
  return ep;
}

std::optional<peer_key> key_or_say(const std::string& text, bool& ok) {
  ok = true;
  if (text.empty()) return std::nullopt;
  auto k = peer_key::parse(text);
  if (!k) {
    std::cerr << "crust-node: --peer must be the 128 hex digits `crust-node id` prints\n";
    ok = false;
    return std::nullopt;
  }
  return *k;
}

// Start, dial, and report; nullopt after printing the failure.
asio::awaitable<std::optional<peer_info>> dial(service& svc, const transport::tcp_endpoint& ep,
                                               const std::optional<peer_key>& key) {
  // (GCC 12 miscompiles `c ? co_await x : co_await y`; keep them apart.)
  result<peer_info> r = make_error_code(errc::not_connected);
  if (key)
    r = co_await svc.connect(ep, *key);
  else
    r = co_await svc.connect(ep);
  if (!r) {
    std::cerr << "crust-node: connecting to " << transport::to_string(ep)
              << " failed: " << r.error().message() << "\n";
    co_return std::nullopt;
  }
  co_return *r;
}

// The shared set-up of the dialling commands: arguments checked, config and
// identity loaded. nullopt after printing what is wrong.
struct dial_setup {
  config cfg;
  std::optional<identity> id;
  std::optional<peer_key> key;
  transport::tcp_endpoint endpoint;
};

std::optional<dial_setup> prepare_dial(const options& opt, const std::string& endpoint,
                                       const std::string& peer) {
  dial_setup d;
  bool key_ok = false;
  d.key = key_or_say(peer, key_ok);
  auto ep = endpoint_or_say(endpoint);
  if (!key_ok || !ep || !load(opt, d.cfg, d.id)) return std::nullopt;
  d.endpoint = *ep;
  return d;
}

}  // namespace

// Runs `body` on a fresh io_context until it finishes or SIGINT/SIGTERM.
int run_main(const std::function<asio::awaitable<int>(asio::io_context&)>& body) {
  asio::io_context io;
  int rc = 1;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  std::optional<asio::cancellation_signal> stop_signal{std::in_place};
  signals.async_wait([&](error_code ec, int) {
    if (!ec) stop_signal->emit(asio::cancellation_type::terminal);
  });
  // Ctrl-C cancels the body; it still gets to stop its service cleanly.
  auto guarded = [&]() -> asio::awaitable<int> {
    co_await asio::this_coro::throw_if_cancelled(false);
    co_return co_await body(io);
  };
  asio::co_spawn(
      io, guarded(),
      asio::bind_cancellation_slot(stop_signal->slot(), [&](std::exception_ptr e, int r) {
        signals.cancel();
        if (e) std::rethrow_exception(e);
        rc = r;
      }));
  io.run();
  return rc;
}

bool load(const options& opt, config& cfg, std::optional<identity>& id) {
  if (!opt.config_file.empty()) {
    auto c = config::load(opt.config_file);
    if (!c) {
      std::cerr << "crust-node: " << c.error().message << "\n";
      return false;
    }
    cfg = *c;
  }
  if (!opt.network.empty()) cfg.network_name = opt.network;
  if (!opt.address.empty()) cfg.listen_address = opt.address;
  if (opt.no_port_mapping) cfg.enable_port_mapping = false;
  if (opt.port >= 0) {
    if (opt.port > 65535) {
      std::cerr << "crust-node: --port must be 0 to 65535\n";
      return false;
    }
    cfg.tcp_acceptor_port = static_cast<std::uint16_t>(opt.port);
  }
  auto loaded = identity::load_or_create(opt.key_file);
  if (!loaded) {
    std::cerr << "crust-node: identity file " << opt.key_file << ": " << loaded.error().message()
              << (loaded.error() == errc::bad_key_file
                      ? " (it is corrupt, or readable by others: it must be mode 0600)"
                      : "")
              << "\n";
    return false;
  }
  id = std::move(*loaded);
  return true;
}

int cmd_id(const options& opt) {
  config cfg;
  std::optional<identity> id;
  if (!load(opt, cfg, id)) return 1;
  if (opt.json) {
    std::cout << json::serialize(json::object{{"id", id->id().to_string()},
                                              {"key", id->public_key().to_string()},
                                              {"file", opt.key_file}})
              << std::endl;
  } else {
    std::cout << "id:  " << id->id().to_string() << "\n"
              << "key: " << id->public_key().to_string() << "\n"
              << "(others dial this node with --peer <key>; the key file is " << opt.key_file
              << ")\n";
  }
  return 0;
}

namespace {

// The cache file `run` and `bootstrap` use when the config names none:
// next to the key file, so each identity keeps its own.
void default_cache_path(const options& opt, config& cfg) {
  if (!cfg.bootstrap_cache_path.empty()) return;
  auto p = std::filesystem::path(opt.key_file);
  p.replace_filename(p.stem().string() + ".cache.json");
  cfg.bootstrap_cache_path = p.string();
}

// Starts `svc`; on failure says why and returns nullopt.
asio::awaitable<std::optional<transport::tcp_endpoint>> start_or_say(service& svc) {
  auto ep = co_await svc.start();
  if (!ep) {
    std::cerr << "crust-node: cannot listen: " << ep.error().message() << "\n";
    co_return std::nullopt;
  }
  co_return *ep;
}

// listen and run: print events until the time is up or Ctrl-C. `run` also
// keeps a bootstrap cache, follows config edits and bootstraps at start.
int serve(const options& opt, bool echo, double seconds, bool run_mode, bool do_bootstrap,
          const status_args& status = {}) {
  config cfg;
  std::optional<identity> id;
  if (!load(opt, cfg, id)) return 1;
  if (run_mode) default_cache_path(opt, cfg);
  std::optional<status_options> so;
  if (!status.at.empty()) {
    auto at = transport::parse_endpoint(status.at);
    if (!at) {
      std::cerr << "crust-node: --status \"" << status.at << "\" is not ip:port\n";
      return 1;
    }
    so.emplace();
    so->at = *at;
    so->allow_remote = status.remote;
  }
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), cfg, *id);
    auto ep = co_await start_or_say(svc);
    if (!ep) co_return 1;
    std::optional<status_server> page;
    if (so) {
      auto started = status_server::start(io.get_executor(), svc.watch(), *so);
      if (!started) {
        std::cerr << "crust-node: cannot serve the status page on " << status.at << ": "
                  << (started.error() == errc::not_allowed
                          ? "not a loopback address (add --status-remote to allow it)"
                          : started.error().message())
                  << "\n";
        co_await svc.stop();
        co_return 1;
      }
      page.emplace(std::move(*started));
      const auto url = "http://" + transport::to_string(page->local_endpoint()) + "/";
      if (opt.json)
        std::cout << json::serialize(json::object{{"event", "status"}, {"url", url}}) << std::endl;
      else
        std::cout << "status page: " << url << " (/status, /metrics)" << std::endl;
    }
    const auto udp = svc.local_udp_endpoint();
    if (opt.json) {
      json::object j{{"event", "listening"},
                     {"endpoint", transport::to_string(*ep)},
                     {"key", svc.id().public_key().to_string()}};
      if (udp) j["udp"] = transport::to_string(*udp);
      std::cout << json::serialize(j) << std::endl;
    } else {
      std::cout << "listening on " << transport::to_string(*ep) << "\n"
                << "dial me with: crust-node connect " << dialable(*ep) << " --peer "
                << svc.id().public_key().to_string()
                << (ep->address().is_unspecified() ? "\n(from another machine, use its address)"
                                                   : "")
                << std::endl;
      if (udp)
        std::cout << "udp (µTP" << (cfg.enable_stun_server ? ", STUN" : "") << ") on "
                  << transport::to_string(*udp) << std::endl;
    }
    if (run_mode && !opt.config_file.empty()) svc.watch_config_file(opt.config_file);
    if (run_mode && do_bootstrap &&
        (!cfg.hard_coded_contacts.empty() || !svc.cached_peers().empty())) {
      auto boot = co_await svc.bootstrap();  // its event is printed below
      (void)boot;
    }
    const auto deadline = seconds > 0 ? clock::now() + std::chrono::duration_cast<duration>(
                                                           std::chrono::duration<double>(seconds))
                                      : time_point::max();
    for (;;) {
      auto left = deadline - clock::now();
      if (left <= duration::zero()) break;
      auto ev = co_await with_timeout(svc.next_event(), left);
      if (!ev) break;  // timed out, cancelled (Ctrl-C) or stopped
      // The listeners opened at start were printed already; a rotation's are news.
      if (std::holds_alternative<events::listener_started>(*ev) && svc.status().port_rotations == 0)
        continue;
      print_event(opt, *ev);
      if (auto* m = std::get_if<events::new_message>(&*ev); m && echo)
        (void)svc.send(m->peer, m->payload, {m->prio, false});
    }
    if (page) co_await page->stop();
    co_await svc.stop();
    co_return 0;
  });
}

}  // namespace

int cmd_listen(const options& opt, bool echo, double seconds) {
  return serve(opt, echo, seconds, false, false);
}

int cmd_run(const options& opt, bool echo, double seconds, bool do_bootstrap,
            const status_args& status) {
  return serve(opt, echo, seconds, true, do_bootstrap, status);
}

int cmd_lan(const options& opt, int window_ms) {
  config cfg;
  std::optional<identity> id;
  if (!load(opt, cfg, id)) return 1;
  cfg.enable_lan_discovery = false;  // ask only; do not answer our own beacon
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), cfg, *id);
    auto found = co_await svc.discover_lan(milliseconds(window_ms));
    for (const auto& c : found) {
      json::array eps;
      for (const auto& e : c.endpoints) eps.push_back(json::string(transport::to_string(e)));
      if (opt.json)
        std::cout << json::serialize(json::object{{"event", "lan_peer"},
                                                  {"id", c.key.id.to_string()},
                                                  {"key", c.key.to_string()},
                                                  {"endpoints", std::move(eps)}})
                  << std::endl;
      else
        std::cout << c.key.id.to_string() << " at " << json::serialize(eps) << std::endl;
    }
    if (!opt.json)
      std::cout << found.size() << " peers of network \"" << cfg.network_name << "\" answered"
                << std::endl;
    else
      std::cout << json::serialize(json::object{{"event", "lan_done"}, {"peers", found.size()}})
                << std::endl;
    co_return 0;
  });
}

int cmd_peers(const options& opt, double seconds, const std::string& find) {
  config cfg;
  std::optional<identity> id;
  if (!load(opt, cfg, id)) return 1;
  default_cache_path(opt, cfg);
  std::optional<public_id> wanted;
  if (!find.empty()) {
    auto p = public_id::parse(find);
    if (!p) {
      std::cerr << "crust-node: --find wants a 64-hex-digit peer id, not \"" << find << "\"\n";
      return 2;
    }
    wanted = *p;
  }
  if (!cfg.enable_gossip) {
    std::cerr << "crust-node: gossip is off in this config (\"enable_gossip\": false)\n";
    return 1;
  }
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), cfg, *id);
    auto ep = co_await start_or_say(svc);
    if (!ep) co_return 1;
    auto boot = co_await svc.bootstrap();
    if (!boot) std::cerr << "bootstrap failed: " << boot.error().message() << "\n";
    timer t(io);
    t.expires_after(std::chrono::duration_cast<duration>(std::chrono::duration<double>(seconds)));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    std::optional<result<peer_info>> found;
    if (wanted) found = co_await svc.connect(*wanted);
    const auto known = svc.known_peers();
    auto endpoints = [](const bootstrap::contact_record& r) {
      json::array eps;
      for (const auto& c : r.candidates)
        eps.push_back(json::string(std::string(nat::to_string(c.transport)) + " " +
                                   c.endpoint_string() + " (" +
                                   std::string(nat::to_string(c.kind)) + ")"));
      return eps;
    };
    if (opt.json) {
      for (const auto& e : known)
        std::cout << json::serialize(json::object{{"event", "known_peer"},
                                                  {"id", e.record.key.id.to_string()},
                                                  {"key", e.record.key.to_string()},
                                                  {"endpoints", endpoints(e.record)},
                                                  {"issued", e.record.issued},
                                                  {"taught_by", e.source.to_string()},
                                                  {"proven", e.proven}})
                  << std::endl;
      json::object done{{"event", "peers_done"}, {"known", known.size()}};
      if (found) {
        done["find"] = wanted->to_string();
        if (*found)
          done["connected"] = peer_json(**found);
        else
          done["error"] = found->error().message();
      }
      std::cout << json::serialize(done) << std::endl;
    } else {
      for (const auto& e : known)
        std::cout << e.record.key.id.short_string() << "  " << json::serialize(endpoints(e.record))
                  << "  taught by "
                  << (e.source == e.record.key.id ? std::string("itself") : e.source.short_string())
                  << (e.proven ? ", dialled back" : ", not yet dialled back") << "\n";
      std::cout << known.size() << " peers known through gossip" << std::endl;
      if (found) {
        if (*found)
          print_peer(opt, "found and connected to", **found);
        else
          std::cout << "could not reach " << wanted->short_string() << ": "
                    << found->error().message() << std::endl;
      }
    }
    co_await svc.stop();
    co_return found && !*found ? 1 : 0;
  });
}

int cmd_bootstrap(const options& opt) {
  config cfg;
  std::optional<identity> id;
  if (!load(opt, cfg, id)) return 1;
  default_cache_path(opt, cfg);
  cfg.enable_port_mapping = false;  // one attempt, then gone: nothing to map
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), cfg, *id);
    auto ep = co_await start_or_say(svc);
    if (!ep) co_return 1;
    const auto cached = svc.cached_peers().size();
    auto boot = co_await svc.bootstrap();
    // Every event bootstrap produced, in order: the failures say what was tried.
    std::vector<event> seen;
    for (;;) {
      auto ev = co_await with_timeout(svc.next_event(), milliseconds(1));
      if (!ev) break;
      seen.push_back(std::move(*ev));
    }
    if (opt.json) {
      json::object o{{"event", "bootstrap"},
                     {"contacts", cfg.hard_coded_contacts.size()},
                     {"cached", cached},
                     {"cache_file", cfg.bootstrap_cache_path},
                     {"ok", boot.has_value()}};
      if (boot)
        o["peer"] = peer_json(*boot);
      else
        o["error"] = boot.error().message();
      json::array evs;
      for (const auto& e : seen) evs.push_back(json::string(describe(e)));
      o["events"] = std::move(evs);
      std::cout << json::serialize(o) << std::endl;
    } else {
      std::cout << "candidates: " << cfg.hard_coded_contacts.size() << " hard-coded contacts, "
                << cached << " cached peers (" << cfg.bootstrap_cache_path << ")\n";
      for (const auto& e : seen)
        if (!std::holds_alternative<events::listener_started>(e))
          std::cout << "  " << describe(e) << "\n";
      if (boot)
        print_peer(opt, "bootstrapped off", *boot);
      else
        std::cout << "bootstrap failed: " << boot.error().message() << std::endl;
    }
    co_await svc.stop();
    co_return boot ? 0 : 1;
  });
}

int cmd_info(const options& opt, const std::vector<std::string>& stun_servers, bool do_bootstrap,
             bool wire, double hold) {
  config cfg;
  std::optional<identity> id;
  if (!load(opt, cfg, id)) return 1;
  prepare_options po;
  auto servers = parse_servers(stun_servers);
  if (!servers) return 1;
  po.stun_servers = std::move(*servers);
  if (do_bootstrap) default_cache_path(opt, cfg);
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), cfg, *id);
    auto ep = co_await start_or_say(svc);
    if (!ep) co_return 1;
    if (do_bootstrap) {
      auto boot = co_await svc.bootstrap();
      if (!boot && !opt.json)
        std::cerr << "crust-node: bootstrap failed (" << boot.error().message()
                  << "): the info has no peer-learnt candidates\n";
    }
    auto info = co_await svc.prepare_connection_info(po);
    if (!info) {
      std::cerr << "crust-node: no connection info: " << info.error().message() << "\n";
      co_await svc.stop();
      co_return 1;
    }
    std::optional<events::connection_info_prepared> prepared;
    for (;;) {
      auto ev = co_await with_timeout(svc.next_event(), milliseconds(1));
      if (!ev) break;
      if (auto* p = std::get_if<events::connection_info_prepared>(&*ev)) prepared = *p;
    }
    const auto& pub = info->pub();
    if (wire) {
      std::cout << to_hex(pub.encode()) << std::endl;
    } else if (opt.json) {
      std::cout << pub.to_json() << std::flush;
    } else {
      std::cout << "connection info " << to_hex(pub.nonce) << " for " << pub.key.id.to_string()
                << ", valid " << pub.lifetime << " s, " << pub.encode().size()
                << " bytes on the wire\n";
      for (const auto& c : pub.candidates)
        std::cout << "  " << nat::to_string(c.transport) << " " << nat::to_string(c.kind) << " "
                  << c.endpoint_string() << "\n";
      if (prepared) {
        std::cout << "  NAT: " << prepared->nat << "\n";
        for (const auto& n : prepared->notes) std::cout << "  note: " << n << "\n";
      }
      std::cout << pub.to_json() << std::flush;
    }
    // Holding, the node answers STUN and accepts connections; Ctrl-C ends it.
    const auto until =
        clock::now() + std::chrono::duration_cast<duration>(std::chrono::duration<double>(hold));
    while (clock::now() < until) {
      auto ev = co_await with_timeout(svc.next_event(), until - clock::now());
      if (!ev && ev.error() != make_error_code(errc::timed_out)) break;
    }
    co_await svc.stop();
    co_return 0;
  });
}

int cmd_rendezvous(const options& opt, const rendezvous_args& a) {
  config cfg;
  std::optional<identity> id;
  if (!load(opt, cfg, id)) return 1;
  prepare_options po;
  auto servers = parse_servers(a.stun_servers);
  if (!servers) return 1;
  po.stun_servers = std::move(*servers);
  rendezvous_options ro;
  ro.tcp = !a.udp_only;
  ro.tcp_simultaneous_open = !a.udp_only;
  ro.udp = !a.tcp_only;
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), cfg, *id);
    auto ep = co_await start_or_say(svc);
    if (!ep) co_return 1;
    if (!cfg.hard_coded_contacts.empty()) (void)co_await svc.bootstrap();
    auto mine = co_await svc.prepare_connection_info(po);
    if (!mine) {
      std::cerr << "crust-node: no connection info: " << mine.error().message() << "\n";
      co_await svc.stop();
      co_return 1;
    }
    // Out of band: our info to a file, theirs from one, when it appears.
    if (auto w = write_file_atomically(a.info_out, mine->pub().to_json(), 0644); !w) {
      std::cerr << "crust-node: cannot write " << a.info_out << ": " << w.error().message() << "\n";
      co_await svc.stop();
      co_return 1;
    }
    const auto wait_until = clock::now() + seconds(a.wait_seconds);
    std::optional<nat::connection_info> theirs;
    timer t(io.get_executor());
    while (!theirs && clock::now() < wait_until) {
      if (auto text = read_file(a.peer_info)) {
        auto parsed = nat::connection_info::from_json(*text, cfg.network_name, unix_seconds());
        if (!parsed) {
          std::cerr << "crust-node: " << a.peer_info << ": " << parsed.error().message << "\n";
          co_await svc.stop();
          co_return 1;
        }
        theirs = std::move(*parsed);
        break;
      }
      t.expires_after(milliseconds(50));
      auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec) break;  // cancelled (Ctrl-C)
    }
    if (!theirs) {
      std::cerr << "crust-node: no peer info in " << a.peer_info << " within " << a.wait_seconds
                << " s\n";
      co_await svc.stop();
      co_return 1;
    }
    const auto started = clock::now();
    auto peer = co_await svc.connect(*mine, *theirs, ro);
    const double ms = std::chrono::duration<double, std::milli>(clock::now() - started).count();
    if (!peer) {
      if (opt.json)
        std::cout << json::serialize(json::object{{"event", "rendezvous_failed"},
                                                  {"error", peer.error().message()},
                                                  {"ms", ms}})
                  << std::endl;
      else
        std::cout << "rendezvous failed after " << ms << " ms: " << peer.error().message()
                  << std::endl;
      co_await svc.stop();
      co_return 1;
    }
    if (opt.json) {
      auto o = peer_json(*peer);
      o["event"] = "rendezvous";
      o["ms"] = ms;
      std::cout << json::serialize(o) << std::endl;
    } else {
      print_peer(opt, "rendezvous with", *peer);
      std::cout << "connected after " << ms << " ms" << std::endl;
    }
    // One message each way proves the path carries traffic.
    int rc = 0;
    if (!a.message.empty()) {
      (void)svc.send(peer->id, bytes(a.message.begin(), a.message.end()));
      auto got = co_await with_timeout(next_message(svc), seconds(10));
      if (got) {
        const std::string text(got->payload.begin(), got->payload.end());
        if (opt.json)
          std::cout << json::serialize(json::object{{"event", "message"}, {"text", text}})
                    << std::endl;
        else
          std::cout << "message: " << text << std::endl;
      } else {
        std::cerr << "crust-node: no message from the peer: " << got.error().message() << "\n";
        rc = 1;
      }
      (void)co_await svc.flush(peer->id);
    }
    co_await svc.stop();
    co_return rc;
  });
}

int cmd_reach(const options& opt, const reach_args& a) {
  // A peer's id, or its key (whose first half is the id).
  std::optional<public_id> target;
  if (auto k = peer_key::parse(a.target))
    target = k->id;
  else if (auto i = public_id::parse(a.target))
    target = *i;
  if (!target) {
    std::cerr << "crust-node: the target must be a peer's 64-hex-digit id (or its 128-digit key)\n";
    return 1;
  }
  auto d = prepare_dial(opt, a.via, a.via_key);
  if (!d) return 1;
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), d->cfg, *d->id);
    auto ep = co_await start_or_say(svc);
    if (!ep) co_return 1;
    auto via = co_await dial(svc, d->endpoint, d->key);
    if (!via) co_return 1;
    introduction_options o;
    o.direct.tcp = !a.udp_only;
    o.direct.tcp_simultaneous_open = !a.udp_only;
    o.direct.udp = !a.tcp_only;
    o.relay = !a.no_relay;
    o.direct_first = !a.relay_first;
    auto peer = co_await svc.connect_through(via->id, *target, o);
    if (!peer) {
      std::cerr << "crust-node: no connection to " << target->short_string() << " through "
                << via->id.short_string() << ": " << peer.error().message() << "\n";
      co_await svc.stop();
      co_return 1;
    }
    print_peer(opt, "reached", *peer);
    int rc = 0;
    if (!a.message.empty()) {
      // The target echoes (crust-node run --echo): the path carries traffic.
      (void)svc.send(peer->id, bytes(a.message.begin(), a.message.end()));
      auto got = co_await with_timeout(next_message(svc), seconds(10));
      if (got && std::string(got->payload.begin(), got->payload.end()) == a.message) {
        if (opt.json)
          std::cout << json::serialize(
                           json::object{{"event", "echoed"}, {"bytes", a.message.size()}})
                    << std::endl;
        else
          std::cout << "echoed " << a.message.size() << " bytes" << std::endl;
      } else {
        std::cerr << "crust-node: no echo from the peer\n";
        rc = 1;
      }
    }
    co_await svc.stop();
    co_return rc;
  });
}

int cmd_connect(const options& opt, const std::string& endpoint, const std::string& peer) {
  auto d = prepare_dial(opt, endpoint, peer);
  if (!d) return 1;
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), d->cfg, *d->id);
    auto info = co_await dial(svc, d->endpoint, d->key);
    if (info) print_peer(opt, "connected", *info);
    co_await svc.stop();
    co_return info ? 0 : 1;
  });
}

int cmd_send(const options& opt, const std::string& endpoint, const std::string& peer,
             const std::vector<std::string>& words, bool sign) {
  auto d = prepare_dial(opt, endpoint, peer);
  if (!d) return 1;
  std::string text;
  for (const auto& w : words) text += (text.empty() ? "" : " ") + w;
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), d->cfg, *d->id);
    auto info = co_await dial(svc, d->endpoint, d->key);
    if (!info) co_return 1;
    auto sent = svc.send(info->id, bytes(text.begin(), text.end()), {priority::normal, sign});
    if (sent) sent = co_await svc.flush(info->id);
    if (!sent)
      std::cerr << "crust-node: send failed: " << sent.error().message() << "\n";
    else if (opt.json)
      std::cout << json::serialize(json::object{{"event", "sent"},
                                                {"peer", info->id.to_string()},
                                                {"bytes", text.size()},
                                                {"signed", sign}})
                << std::endl;
    else
      std::cout << "sent " << text.size() << " bytes to " << info->id.to_string()
                << (sign ? " (signed)" : "") << std::endl;
    co_await svc.stop();
    co_return sent ? 0 : 1;
  });
}

int cmd_chat(const options& opt, const std::string& endpoint, const std::string& peer) {
  config cfg;
  std::optional<identity> id;
  bool ok = false;
  auto key = key_or_say(peer, ok);
  std::optional<transport::tcp_endpoint> ep;
  if (!endpoint.empty()) {
    auto e = endpoint_or_say(endpoint);
    if (!e) return 1;
    ep = *e;
  }
  if (!ok || !load(opt, cfg, id)) return 1;
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    service svc(io.get_executor(), cfg, *id);
    std::optional<public_id> other;
    if (ep) {
      auto info = co_await dial(svc, *ep, key);
      if (!info) co_return 1;
      print_peer(opt, "chatting with", *info);
      other = info->id;
    } else {
      auto at = co_await svc.start();
      if (!at) {
        std::cerr << "crust-node: cannot listen: " << at.error().message() << "\n";
        co_return 1;
      }
      std::cout << "waiting for a peer: crust-node chat " << transport::to_string(*at) << " --peer "
                << svc.id().public_key().to_string() << std::endl;
    }
    // Lines from stdin go to the peer; events come back to stdout.
    asio::posix::stream_descriptor in(io, ::dup(STDIN_FILENO));
    asio::streambuf buf;
    auto typing = [&]() -> asio::awaitable<void> {
      for (;;) {
        auto [ec, n] =
            co_await asio::async_read_until(in, buf, '\n', asio::as_tuple(asio::use_awaitable));
        if (ec) co_return;  // end of input
        std::string line(asio::buffers_begin(buf.data()),
                         asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n - 1));
        buf.consume(n);
        if (!other) {
          std::cout << "(no peer yet)" << std::endl;
          continue;
        }
        if (auto r = svc.send(*other, bytes(line.begin(), line.end())); !r)
          std::cout << "(not sent: " << r.error().message() << ")" << std::endl;
      }
    };
    auto listening = [&]() -> asio::awaitable<void> {
      for (;;) {
        auto ev = co_await svc.next_event();
        if (!ev) co_return;
        if (auto* a = std::get_if<events::bootstrap_accept>(&*ev); a && !other) {
          other = a->peer.id;
          print_peer(opt, "chatting with", a->peer);
          continue;
        }
        if (std::holds_alternative<events::listener_started>(*ev) ||
            std::holds_alternative<events::connect_success>(*ev))
          continue;
        print_event(opt, *ev);
        if (auto* l = std::get_if<events::lost_peer>(&*ev); l && other && l->peer == *other)
          co_return;
      }
    };
    using namespace asio::experimental::awaitable_operators;
    co_await (typing() || listening());
    if (other) (void)co_await svc.flush(*other);
    co_await svc.stop();
    co_return 0;
  });
}

}  // namespace crust_node
