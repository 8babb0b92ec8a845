// Bootstrap and admission on loopback: the cache, hard-coded contacts, the
// race's deadline, blacklists, whitelists (also edited on a running node)
// and the cache file surviving kill -9.
#include "bootstrap/cache.hpp"
#include "crust/base/file.hpp"
#include "crust/base/race.hpp"
#include "support/co_test.hpp"
#include "support/temp_dir.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/ip/udp.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <random>
#include <set>

using namespace crust;
namespace asio = boost::asio;
using test::eventually;

namespace {

transport::tcp_endpoint ep_of(service& s) {
  return *s.local_endpoint();
}

contact contact_of(service& s, bool with_key = true) {
  contact c{transport::to_string(ep_of(s)), std::nullopt};
  if (with_key) c.key = s.id().public_key();
  return c;
}

// An endpoint on loopback where nothing listens (bound, then closed).
transport::tcp_endpoint dead_endpoint(asio::io_context& io) {
  auto acc = transport::tcp_listen(io.get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
  REQUIRE(acc);
  return acc->local_endpoint();
}

// A UDP port free right now, for a test's own LAN beacon.
std::uint16_t free_udp_port(asio::io_context& io) {
  asio::ip::udp::socket s(io, {asio::ip::address_v4::any(), 0});
  return s.local_endpoint().port();
}

config lan_config(std::uint16_t port, std::string network) {
  auto c = test::loopback_config();
  c.enable_lan_discovery = true;
  c.service_discovery_port = port;
  c.network_name = std::move(network);
  c.lan_discovery_window = milliseconds(300);
  return c;
}

void write_text(const std::filesystem::path& p, const std::string& text) {
  std::ofstream(p, std::ios::trunc) << text;
}

}  // namespace

TEST_CASE("bootstrap: from hard-coded contacts, by key and address-only; contacts are not cached") {
  for (bool with_key : {true, false}) {
    test::run([with_key](asio::io_context& io) -> asio::awaitable<void> {
      auto b = test::make_node(io);
      REQUIRE(co_await b->start());
      auto cfg = test::loopback_config();
      cfg.hard_coded_contacts = {contact_of(*b, with_key)};
      auto a = test::make_node(io, cfg);
      REQUIRE(co_await a->start());
      auto boot = co_await a->bootstrap();
      REQUIRE(boot);
      CHECK(boot->id == b->id().id());
      auto ev = co_await test::next_of<events::bootstrap_connect>(*a);
      CHECK(ev.peer.id == b->id().id());
      auto acc = co_await test::next_of<events::bootstrap_accept>(*b);
      CHECK(acc.peer.role == node_role::node);
      CHECK(a->cached_peers().empty());
      co_await a->stop();
      co_await b->stop();
    });
  }
}

TEST_CASE("bootstrap: from the cache file of an earlier run, most recent first") {
  test::temp_dir dir;
  const auto cache_path = (dir.path / "cache.json").string();
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    std::vector<std::unique_ptr<service>> peers;
    for (int i = 0; i < 3; ++i) {
      peers.push_back(test::make_node(io));
      REQUIRE(co_await peers.back()->start());
    }
    auto cfg = test::loopback_config();
    cfg.bootstrap_cache_path = cache_path;
    {
      auto a = test::make_node(io, cfg);
      REQUIRE(co_await a->start());
      for (auto& p : peers) REQUIRE(co_await a->connect(ep_of(*p), p->id().public_key()));
      REQUIRE(a->cached_peers().size() == 3);
      CHECK(a->cached_peers().front().key.id == peers[2]->id().id());
      co_await a->stop();
    }
    // A new node with the same cache file and no contacts: one dial at a
    // time, so the most recently reached peer is the one it meets.
    cfg.bootstrap_concurrency = 1;
    cfg.bootstrap_stagger = seconds(5);
    auto again = test::make_node(io, cfg);
    REQUIRE(co_await again->start());
    CHECK(again->cached_peers().size() == 3);
    auto boot = co_await again->bootstrap();
    REQUIRE(boot);
    CHECK(boot->id == peers[2]->id().id());
    CHECK(again->peers().size() == 1);
    co_await again->stop();
    for (auto& p : peers) co_await p->stop();
  });
}

TEST_CASE("bootstrap: a dead cache entry is skipped and pruned; the next one wins") {
  test::temp_dir dir;
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    auto live = test::make_node(io);
    REQUIRE(co_await live->start());
    // The cache file names a live peer and, more recently, a dead one.
    bootstrap::cache c;
    const auto dead_key = identity::generate().public_key();
    c.record_success(live->id().public_key(), ep_of(*live), 1000);
    c.record_success(dead_key, dead_endpoint(io), 2000);
    auto cfg = test::loopback_config();
    cfg.bootstrap_cache_path = (dir.path / "cache.json").string();
    cfg.bootstrap_cache_ttl = seconds(1);  // both entries are stale: one failure drops
    REQUIRE(c.save(cfg.bootstrap_cache_path, cfg.network_name));
    auto a = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    auto boot = co_await a->bootstrap();
    REQUIRE(boot);
    CHECK(boot->id == live->id().id());
    // The dead entry failed (refused) and is gone, from memory and file.
    CHECK(co_await eventually([&] { return a->cached_peers().size() == 1; }));
    bootstrap::cache on_disk;
    auto r = on_disk.load(cfg.bootstrap_cache_path, cfg.network_name);
    CHECK(r.problem.empty());
    REQUIRE(on_disk.size() == 1);
    CHECK(on_disk.entries().front().key.id == live->id().id());
    co_await a->stop();
    co_await live->stop();
  });
}

TEST_CASE("bootstrap: nobody to ask, only blacklisted contacts, or only unreachable ones") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    // No contacts at all.
    auto lonely = test::make_node(io);
    REQUIRE(co_await lonely->start());
    auto none = co_await lonely->bootstrap();
    CHECK(none.error() == errc::no_contacts);
    auto failed = co_await test::next_of<events::bootstrap_failed>(*lonely);
    CHECK(failed.error == errc::no_contacts);
    co_await lonely->stop();

    // Only blacklisted contacts: none is dialled.
    auto b = test::make_node(io);
    REQUIRE(co_await b->start());
    auto cfg = test::loopback_config();
    cfg.hard_coded_contacts = {contact_of(*b)};
    auto a = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    a->blacklist(b->id().id());
    auto blocked = co_await a->bootstrap();
    CHECK(blocked.error() == errc::no_contacts);
    auto why = co_await test::next_of<events::bootstrap_failed>(*a);
    CHECK(why.detail.find("blacklisted") != std::string::npos);
    CHECK(b->peers().empty());
    co_await a->stop();

    // Refused ports fail fast: every attempt failed.
    auto cfg2 = test::loopback_config();
    cfg2.hard_coded_contacts = {{transport::to_string(dead_endpoint(io)), std::nullopt},
                                {transport::to_string(dead_endpoint(io)), std::nullopt}};
    auto c = test::make_node(io, cfg2);
    REQUIRE(co_await c->start());
    auto refused = co_await c->bootstrap();
    CHECK(refused.error() == errc::all_attempts_failed);
    auto ev = co_await test::next_of<events::bootstrap_failed>(*c);
    CHECK(ev.attempts == 2);
    CHECK(ev.detail.find("refused") != std::string::npos);
    co_await c->stop();

    // A contact that accepts TCP and never answers the handshake: the
    // overall deadline (shorter than the handshake timeout) ends the race.
    auto silent =
        transport::tcp_listen(io.get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
    REQUIRE(silent);
    auto cfg3 = test::loopback_config();
    cfg3.handshake_timeout = seconds(60);
    cfg3.bootstrap_timeout = milliseconds(300);
    cfg3.hard_coded_contacts = {{transport::to_string(silent->local_endpoint()), std::nullopt}};
    auto d = test::make_node(io, cfg3);
    REQUIRE(co_await d->start());
    auto late = co_await d->bootstrap();
    CHECK(late.error() == errc::timed_out);
    auto ev3 = co_await test::next_of<events::bootstrap_failed>(*d);
    CHECK(ev3.error == errc::timed_out);
    CHECK(d->peers().empty());
    co_await d->stop();
    co_await b->stop();
  });
}

TEST_CASE("bootstrap: a peer of another network among the contacts does not stop it") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto other_cfg = test::loopback_config();
    other_cfg.network_name = "elsewhere";
    auto other = test::make_node(io, other_cfg);
    auto good = test::make_node(io);
    REQUIRE(co_await other->start());
    REQUIRE(co_await good->start());
    auto cfg = test::loopback_config();
    cfg.hard_coded_contacts = {contact_of(*other), contact_of(*good), contact_of(*other, false)};
    cfg.bootstrap_concurrency = 1;
    auto a = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    auto boot = co_await a->bootstrap();
    REQUIRE(boot);
    CHECK(boot->id == good->id().id());
    CHECK(other->peers().empty());
    co_await a->stop();
    co_await other->stop();
    co_await good->stop();
  });
}

TEST_CASE("bootstrap: the first peer to admit us wins and the others are closed") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    std::vector<std::unique_ptr<service>> peers;
    auto cfg = test::loopback_config();
    for (int i = 0; i < 4; ++i) {
      peers.push_back(test::make_node(io));
      REQUIRE(co_await peers.back()->start());
      cfg.hard_coded_contacts.push_back(contact_of(*peers.back()));
    }
    cfg.bootstrap_stagger = duration::zero();  // all four at once
    auto a = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    auto boot = co_await a->bootstrap();
    REQUIRE(boot);
    CHECK(co_await eventually([&] { return a->peers().size() == 1; }));
    CHECK(a->peers().front().id == boot->id);
    co_await a->stop();
    for (auto& p : peers) co_await p->stop();
  });
}

TEST_CASE("admission: a node that does not accept bootstrap still takes ordinary connections") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto bcfg = test::loopback_config();
    bcfg.accept_bootstrap = false;
    auto b = test::make_node(io, bcfg);
    REQUIRE(co_await b->start());
    auto cfg = test::loopback_config();
    cfg.hard_coded_contacts = {contact_of(*b)};
    auto a = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    auto boot = co_await a->bootstrap();
    CHECK(boot.error() == errc::all_attempts_failed);
    auto ev = co_await test::next_of<events::bootstrap_failed>(*a);
    CHECK(ev.detail.find("does not admit us") != std::string::npos);
    auto direct = co_await a->connect(ep_of(*b), b->id().public_key());
    CHECK(direct);
    // Switched on at run time, the next bootstrap is admitted.
    a->disconnect(b->id().id());
    b->set_accept_bootstrap(true);
    auto later = co_await a->bootstrap();
    CHECK(later);
    co_await a->stop();
    co_await b->stop();
  });
}

TEST_CASE("admission: the external-reachability check dials bootstrapping nodes back") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto bcfg = test::loopback_config();
    bcfg.external_reachability_check = true;
    auto b = test::make_node(io, bcfg);
    REQUIRE(co_await b->start());
    auto cfg = test::loopback_config();
    cfg.hard_coded_contacts = {contact_of(*b)};

    // Listening where it dials from: dialled back, admitted. The dial-back's
    // own handshake is never announced as a peer at either end.
    auto reachable = test::make_node(io, cfg);
    REQUIRE(co_await reachable->start());
    auto boot = co_await reachable->bootstrap();
    REQUIRE(boot);
    CHECK(boot->id == b->id().id());
    auto accepted = co_await test::next_of<events::bootstrap_accept>(*b);
    CHECK(accepted.peer.id == reachable->id().id());
    CHECK(reachable->peers().size() == 1);

    // Listening only on 127.0.0.2 while dialling from 127.0.0.1 (as behind
    // a NAT with no mapping): the dial-back is refused, and so is the node,
    // which is told why.
    auto elsewhere_cfg = cfg;
    elsewhere_cfg.listen_address = "127.0.0.2";
    auto elsewhere = test::make_node(io, elsewhere_cfg);
    REQUIRE(co_await elsewhere->start());
    auto refused = co_await elsewhere->bootstrap();
    CHECK(refused.error() == errc::all_attempts_failed);
    auto why = co_await test::next_of<events::connect_failure>(*elsewhere);
    CHECK(why.error == errc::not_allowed);
    CHECK(why.detail.find("not reachable from outside") != std::string::npos);
    CHECK(why.detail.find("127.0.0.1:" + std::to_string(ep_of(*elsewhere).port())) !=
          std::string::npos);

    // Not listening at all: refused without a dial.
    auto silent = test::make_node(io, cfg);  // never started
    auto none = co_await silent->bootstrap();
    CHECK(none.error() == errc::all_attempts_failed);
    auto said = co_await test::next_of<events::connect_failure>(*silent);
    CHECK(said.detail.find("named no listening port") != std::string::npos);

    // Clients and ordinary connects are not checked.
    auto ccfg = cfg;
    ccfg.role = node_role::client;
    auto client = test::make_node(io, ccfg);
    CHECK(co_await client->bootstrap());
    CHECK(co_await silent->connect(ep_of(*b), b->id().public_key()));

    // Switched off on the running node: the unreachable node gets in.
    auto off = bcfg;
    off.external_reachability_check = false;
    CHECK(b->reload(off).empty());
    CHECK(co_await elsewhere->bootstrap());
    CHECK(b->peers().size() == 4);
    for (auto* n : {&reachable, &elsewhere, &silent, &client}) co_await (*n)->stop();
    co_await b->stop();
  });
}

TEST_CASE("blacklist: connections close, the peer is refused both ways, and it can be lifted") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto p = co_await test::connected_pair(io);
    auto& a = *p.a;  // the dialler
    auto& b = *p.b;
    b.blacklist(a.id().id());
    // a hears why; b, which decided, gets no LostPeer.
    auto lost = co_await test::next_of<events::lost_peer>(a);
    CHECK(lost.reason == errc::not_allowed);
    CHECK(lost.detail.find("blacklisted") != std::string::npos);
    CHECK(b.peers().empty());
    CHECK(b.is_blacklisted(a.id().id()));
    // a dials again: refused after the handshake, by id.
    auto again = co_await a.connect(ep_of(b), b.id().public_key());
    CHECK(again.error() == errc::not_allowed);
    // b dials a: refused before dialling.
    REQUIRE(co_await a.start());
    auto out = co_await b.connect(ep_of(a), a.id().public_key());
    CHECK(out.error() == errc::blacklisted);
    // By address: nothing from 127.0.0.1 gets a handshake at all.
    auto c = test::make_node(io);
    b.blacklist(asio::ip::make_address("127.0.0.1"));
    auto by_ip = co_await c->connect(ep_of(b), b.id().public_key());
    CHECK_FALSE(by_ip);
    CHECK(b.peers().empty());
    // Lifted: back to normal.
    b.unblacklist({{a.id().id()}, {asio::ip::make_address("127.0.0.1")}});
    auto ok = co_await a.connect(ep_of(b), b.id().public_key());
    CHECK(ok);
    co_await c->stop();
    co_await a.stop();
    co_await b.stop();
  });
}

TEST_CASE("whitelists: nodes and clients are admitted by their own lists") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    const auto loop = asio::ip::make_address("127.0.0.1");
    auto bcfg = test::loopback_config();
    bcfg.whitelisted_node_ips = std::vector{loop};
    bcfg.whitelisted_client_ips = std::vector<asio::ip::address>{};  // no clients
    auto b = test::make_node(io, bcfg);
    REQUIRE(co_await b->start());
    auto node = test::make_node(io);
    CHECK(co_await node->connect(ep_of(*b), b->id().public_key()));
    auto ccfg = test::loopback_config();
    ccfg.role = node_role::client;
    auto client = test::make_node(io, ccfg);
    auto refused = co_await client->connect(ep_of(*b), b->id().public_key());
    CHECK(refused.error() == errc::not_allowed);
    // Flip the lists on the running node: the client gets in, the node is dropped.
    auto flipped = bcfg;
    flipped.whitelisted_node_ips = std::vector<asio::ip::address>{};
    flipped.whitelisted_client_ips = std::vector{loop};
    auto restart = b->reload(flipped);
    CHECK(restart.empty());
    auto dropped = co_await test::next_of<events::lost_peer>(*b);
    CHECK(dropped.peer == node->id().id());
    CHECK(dropped.reason == errc::not_allowed);
    auto admitted = co_await client->connect(ep_of(*b), b->id().public_key());
    REQUIRE(admitted);
    auto accepted = co_await test::next_of<events::bootstrap_accept>(*b);
    CHECK(accepted.peer.role == node_role::client);
    // Keys that need a restart are named and not applied.
    auto moved = flipped;
    moved.tcp_acceptor_port = 1;
    auto needs = b->reload(moved);
    CHECK(needs == std::vector<std::string>{"tcp_acceptor_port"});
    CHECK(b->cfg().tcp_acceptor_port == 0);
    co_await client->stop();
    co_await node->stop();
    co_await b->stop();
  });
}

TEST_CASE(
    "whitelists: edits to the config file apply to a running node; broken edits are ignored") {
  test::temp_dir dir;
  const auto path = dir.path / "crust.json";
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    write_text(path, R"({"listen_address": "127.0.0.1"})");
    auto cfg = config::load(path);
    REQUIRE(cfg);
    auto p = co_await test::connected_pair(io, test::loopback_config(), *cfg);
    p.b->watch_config_file(path, milliseconds(20));
    // A broken file changes nothing.
    write_text(path, R"({"listen_address": "127.0.0.1", "whitelisted_node_ips": [)");
    co_await test::sleep_for(milliseconds(200));
    CHECK(p.b->peers().size() == 1);
    // A valid one that no longer lists the dialler drops it.
    write_text(path, R"({"listen_address": "127.0.0.1", "whitelisted_node_ips": ["10.9.9.9"]})");
    auto lost = co_await test::next_of<events::lost_peer>(*p.a);
    CHECK(lost.reason == errc::not_allowed);
    CHECK(p.b->peers().empty());
    co_await p.a->stop();
    co_await p.b->stop();
  });
}

TEST_CASE("cache file: a corrupt one is kept aside and replaced; the node starts") {
  test::temp_dir dir;
  const auto path = dir.path / "cache.json";
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    write_text(path, "{\"format\": \"crust-bootstrap-cache\", \"peers\": [tru");
    auto cfg = test::loopback_config();
    cfg.bootstrap_cache_path = path.string();
    auto a = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    CHECK(a->cached_peers().empty());
    auto bad = read_file(path.string() + ".bad");
    REQUIRE(bad);
    CHECK(bad->find("[tru") != std::string::npos);
    bootstrap::cache c;
    auto r = c.load(path, cfg.network_name);
    CHECK(r.problem.empty());
    co_await a->stop();
  });
}

TEST_CASE("cache file: kill -9 during writes, many times, always leaves a readable cache") {
  test::temp_dir dir;
  const auto path = dir.path / "cache.json";
  std::mt19937 rng(7);
  int killed_mid_run = 0;
  for (int round = 0; round < 60; ++round) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      // The child rewrites a full cache as fast as it can until killed
      // (bounded: it gives up after 10 s on its own).
      bootstrap::cache c;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      std::int64_t t = 0;
      while (std::chrono::steady_clock::now() < deadline) {
        for (int i = 0; i < 20; ++i) {
          auto ep = transport::parse_endpoint("10.0." + std::to_string(i) +
                                              ".1:" + std::to_string(1000 + (t % 1000)));
          c.record_success(identity::generate().public_key(), *ep, ++t);
        }
        (void)c.save(path, "crust");
      }
      ::_exit(0);
    }
    ::usleep(std::uniform_int_distribution<useconds_t>(1000, 20000)(rng));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    killed_mid_run += WIFSIGNALED(status) ? 1 : 0;
    if (!std::filesystem::exists(path)) continue;  // killed before the first rename
    bootstrap::cache c;
    auto r = c.load(path, "crust");
    CAPTURE(round);
    CHECK_MESSAGE(r.problem.empty(), r.problem);
    CHECK(c.size() > 0);
  }
  CHECK(killed_mid_run == 60);
  CHECK(std::filesystem::exists(path));
}

TEST_CASE("LAN discovery (loopback): our network's peers answer, signed; others stay silent") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    const auto port = free_udp_port(io);
    auto b = test::make_node(io, lan_config(port, "lab"));
    auto c = test::make_node(io, lan_config(port, "lab"));
    auto other = test::make_node(io, lan_config(port, "elsewhere"));
    for (auto* n : {b.get(), c.get(), other.get()}) {
      REQUIRE(co_await n->start());
      auto tcp = co_await test::next_of<events::listener_started>(*n);
      auto utp = co_await test::next_of<events::listener_started>(*n);
      auto udp = co_await test::next_of<events::listener_started>(*n);
      auto udp6 = co_await test::next_of<events::listener_started>(*n);
      CHECK(tcp.endpoint.find("tcp ") == 0);
      CHECK(utp.endpoint.find("utp ") == 0);
      CHECK(udp.endpoint.find("udp beacon") == 0);
      CHECK(udp6.endpoint.find("udp6 beacon [::]:") == 0);
    }
    auto a = test::make_node(io, lan_config(port, "lab"));
    REQUIRE(co_await a->start());
    auto found = co_await a->discover_lan(milliseconds(300));
    std::set<public_id> ids;
    for (const auto& f : found) {
      ids.insert(f.key.id);
      REQUIRE(f.endpoints.size() == 1);
      // What each advertises is where it listens: the key and the port agree.
      auto* who = f.key.id == b->id().id() ? b.get() : c.get();
      CHECK(f.key == who->id().public_key());
      CHECK(f.endpoints[0] == ep_of(*who));
    }
    CHECK(ids == std::set<public_id>{b->id().id(), c->id().id()});
    // With no cache and no contacts, bootstrap finds the network on the LAN;
    // the node of another network on it does not stop anything.
    auto boot = co_await a->bootstrap();
    REQUIRE(boot);
    CHECK((boot->id == b->id().id() || boot->id == c->id().id()));
    CHECK(other->peers().empty());
    // A node whose network nobody on the LAN shares: no one to bootstrap from.
    auto lonely = test::make_node(io, lan_config(port, "nobody"));
    REQUIRE(co_await lonely->start());
    auto none = co_await lonely->bootstrap();
    CHECK(none.error() == errc::no_contacts);
    // A blacklisted address gets no answer at all.
    b->blacklist(asio::ip::make_address("127.0.0.1"));
    c->blacklist(asio::ip::make_address("127.0.0.1"));
    auto after = co_await a->discover_lan(milliseconds(200));
    CHECK(after.empty());
    for (auto* n : {a.get(), b.get(), c.get(), other.get(), lonely.get()}) co_await n->stop();
  });
}

TEST_CASE(
    "LAN discovery (loopback): the IPv6 responder answers with an endpoint the asker can dial") {
  // Multicast does not run over loopback; a unicast request to [::1]
  // reaches the same IPv6 socket and answer path (tests/netlab covers the
  // multicast group between namespaces).
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    const auto port = free_udp_port(io);
    auto cfg = lan_config(port, "lab");
    cfg.listen_address = "0.0.0.0";  // IPv4 only: a v6 asker is told an IPv4 address
    auto b = test::make_node(io, cfg);
    REQUIRE(co_await b->start());
    bootstrap::beacon_query q("lab");
    asio::ip::udp::socket s(io, {asio::ip::address_v6::loopback(), 0});
    const auto req = q.request();
    co_await s.async_send_to(asio::buffer(req), {asio::ip::address_v6::loopback(), port},
                             asio::use_awaitable);
    std::vector<byte> buf(2048);
    asio::ip::udp::endpoint from;
    auto got = co_await crust::within(
        s.async_receive_from(asio::buffer(buf), from, asio::as_tuple(asio::use_awaitable)),
        seconds(5));
    REQUIRE(got);
    auto [ec, n] = *got;
    REQUIRE_FALSE(ec);
    auto c = q.accept(byte_span(buf.data(), n), from.address());
    REQUIRE(c);
    CHECK(c->key == b->id().public_key());
    REQUIRE(c->endpoints.size() == 1);
    CHECK(c->endpoints[0] ==
          transport::tcp_endpoint(asio::ip::make_address("127.0.0.1"), ep_of(*b).port()));
    auto acfg = test::loopback_config();
    acfg.network_name = "lab";
    auto a = test::make_node(io, acfg);
    CHECK(co_await a->connect(c->endpoints[0], c->key));
    co_await a->stop();
    co_await b->stop();
  });
}
