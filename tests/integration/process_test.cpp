// crust-node as a separate process: killed or frozen mid-transfer, and the
// CLI's commands end to end.
#include "support/process.hpp"
#include "bootstrap/cache.hpp"
#include "support/co_test.hpp"
#include "support/temp_dir.hpp"
#include "transports/tcp.hpp"

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace crust;
namespace asio = boost::asio;
namespace fs = std::filesystem;

namespace {

std::string node_binary() {
  const char* p = std::getenv("CRUST_NODE");
  REQUIRE_MESSAGE(p, "CRUST_NODE must name the crust-node binary (meson test sets it)");
  return p;
}

struct listening_node {
  transport::tcp_endpoint endpoint;
  peer_key key;
};

// Starts `crust-node listen --json` and reads where it listens.
asio::awaitable<listening_node> started(test::child_process& p) {
  auto line = co_await p.read_line();
  REQUIRE(line);
  auto v = boost::json::parse(*line).as_object();
  REQUIRE(v.at("event").as_string() == "listening");
  auto ep = transport::parse_endpoint(std::string(v.at("endpoint").as_string()));
  auto key = peer_key::parse(std::string(v.at("key").as_string()));
  REQUIRE(ep);
  REQUIRE(key);
  co_return listening_node{*ep, *key};
}

// The first of the next `most` lines of `p` that `pred` accepts, or
// nullopt; each read waits at most 10 s.
template <class Pred>
asio::awaitable<std::optional<std::string>> line_where(test::child_process& p, Pred pred,
                                                       int most = 5) {
  for (int i = 0; i < most; ++i) {
    auto line = co_await p.read_line(seconds(10));
    REQUIRE(line);
    if (pred(*line)) co_return line;
  }
  co_return std::nullopt;
}

// A JSON line's "event".
std::string event_of(const std::string& line) {
  return std::string(boost::json::parse(line).at("event").as_string());
}

std::vector<std::string> listen_args(const test::temp_dir& d) {
  return {node_binary(), "listen", "--json", "--echo", "--address",
          "127.0.0.1",   "--port", "0",      "--key",  (d.path / "node.key").string(),
          "--for",       "60"};
}

}  // namespace

TEST_CASE("process: a peer killed mid-transfer is reported lost at once; nothing is corrupted") {
  test::temp_dir d;
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    test::child_process child(io.get_executor(), listen_args(d));
    auto node = co_await started(child);
    auto me = test::make_node(io);
    // Another peer, in this process: the node must go on serving it.
    auto other = test::make_node(io);
    auto other_at = co_await other->start();
    REQUIRE(other_at);
    auto to_other = co_await me->connect(*other_at, other->id().public_key());
    REQUIRE(to_other);
    auto info = co_await me->connect(node.endpoint, node.key);
    REQUIRE(info);
    // Stream, and kill the peer while data is in flight.
    for (int i = 0; i < 8; ++i) REQUIRE(me->send(info->id, bytes(1 << 20, static_cast<byte>(i))));
    // Echoes arrive in order and whole until the loss: none corrupted,
    // none twice. The first is the signal to kill.
    int echoed = 0;
    std::optional<events::lost_peer> lost;
    for (;;) {
      auto ev = co_await with_timeout(me->next_event(), seconds(10));
      REQUIRE(ev);
      if (auto* m = std::get_if<events::new_message>(&*ev)) {
        CHECK(m->peer == info->id);
        CHECK(m->payload == bytes(1 << 20, static_cast<byte>(echoed)));
        if (echoed++ == 0) child.kill(SIGKILL);
      } else if (auto* l = std::get_if<events::lost_peer>(&*ev); l && l->peer == info->id) {
        lost = *l;
        break;
      }
    }
    CHECK(echoed >= 1);
    CHECK(echoed < 8);
    CHECK((lost->reason == errc::peer_closed || lost->reason == asio::error::connection_reset ||
           lost->reason == asio::error::broken_pipe));
    REQUIRE(me->peers().size() == 1);
    CHECK(me->peers()[0].id == other->id().id());
    // The other peer is still served, both ways.
    REQUIRE(me->send(other->id().id(), {'s', 't', 'i', 'l', 'l'}));
    auto m = co_await test::next_of<events::new_message>(*other);
    CHECK(m.payload == bytes{'s', 't', 'i', 'l', 'l'});
    REQUIRE(other->send(me->id().id(), {'y', 'e', 's'}));
    auto back = co_await test::next_of<events::new_message>(*me);
    CHECK(back.payload == bytes{'y', 'e', 's'});
    co_await other->stop();
    co_await me->stop();
  });
}

TEST_CASE("process: a bootstrap node that disappears; its peers are told and go on together") {
  test::temp_dir d;
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    auto args = listen_args(d);
    args.erase(std::find(args.begin(), args.end(), "--echo"));
    test::child_process child(io.get_executor(), args);
    auto boot = co_await started(child);
    auto cfg = test::loopback_config();
    cfg.hard_coded_contacts = {{transport::to_string(boot.endpoint), boot.key}};
    cfg.bootstrap_cache_path = (d.path / "a-cache.json").string();
    auto a = test::make_node(io, cfg);
    cfg.bootstrap_cache_path = (d.path / "c-cache.json").string();
    auto c = test::make_node(io, cfg);
    REQUIRE(co_await a->start());
    auto c_at = co_await c->start();
    REQUIRE(c_at);
    auto ba = co_await a->bootstrap();
    REQUIRE_MESSAGE(ba, ba.error().message());
    CHECK(ba->id == boot.key.id);
    auto bc = co_await c->bootstrap();
    REQUIRE_MESSAGE(bc, bc.error().message());
    auto ac = co_await a->connect(*c_at, c->id().public_key());
    REQUIRE(ac);
    CHECK(co_await test::eventually([&] { return c->peers().size() == 2; }));
    // The bootstrap node dies without a word.
    child.kill(SIGKILL);
    for (auto* n : {a.get(), c.get()}) {
      auto lost = co_await test::next_of<events::lost_peer>(*n, seconds(10));
      CHECK(lost.peer == boot.key.id);  // (a) told, and of that peer
    }
    // (c) a and c go on: each message arrives, once.
    for (int i = 0; i < 20; ++i) {
      REQUIRE(a->send(c->id().id(), bytes{static_cast<byte>(i)}));
      REQUIRE(c->send(a->id().id(), bytes{static_cast<byte>(100 + i)}));
    }
    for (auto* n : {c.get(), a.get()}) {
      const int base = n == c.get() ? 0 : 100;
      for (int i = 0; i < 20; ++i) {
        auto m = co_await test::next_of<events::new_message>(*n);
        CHECK(m.payload == bytes{static_cast<byte>(base + i)});  // (b) in order, none twice
      }
      auto extra = co_await with_timeout(n->next_event(), milliseconds(300));
      if (extra) CHECK_FALSE(std::holds_alternative<events::new_message>(*extra));
    }
    // Bootstrapping again cannot reach the dead node: it fails with an
    // error, or settles on c (a peer a knows works); nothing else changes.
    auto again = co_await a->bootstrap();
    if (again) CHECK(again->id == c->id().id());
    CHECK(a->peers().size() == 1);
    REQUIRE(a->send(c->id().id(), {'o', 'k'}));
    auto ok = co_await test::next_of<events::new_message>(*c);
    CHECK(ok.payload == bytes{'o', 'k'});
    co_await a->stop();
    co_await c->stop();
  });
}

TEST_CASE("process: a frozen peer (SIGSTOP) is lost by heartbeat timeout") {
  test::temp_dir d;
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    test::child_process child(io.get_executor(), listen_args(d));
    auto node = co_await started(child);
    auto cfg = test::loopback_config();
    cfg.heartbeat_interval = milliseconds(200);
    cfg.heartbeat_timeout = milliseconds(1500);
    auto me = test::make_node(io, cfg);
    auto info = co_await me->connect(node.endpoint, node.key);
    REQUIRE(info);
    child.kill(SIGSTOP);
    auto lost = co_await test::next_of<events::lost_peer>(*me, seconds(20));
    CHECK(lost.reason == errc::connection_lost);
    child.kill(SIGKILL);
    co_await me->stop();
  });
}

TEST_CASE("process: crust-node id, send and listen work together") {
  test::temp_dir d;
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    test::child_process id(io.get_executor(), {node_binary(), "id", "--json", "--key",
                                               (d.path / "sender.key").string()});
    auto id_line = co_await id.read_line();
    REQUIRE(id_line);
    auto sender_id = std::string(boost::json::parse(*id_line).at("id").as_string());
    auto id_rc = co_await id.wait();
    CHECK(id_rc == std::optional<int>(0));
    CHECK((fs::status(d.path / "sender.key").permissions() & fs::perms::others_read) ==
          fs::perms::none);

    auto args = listen_args(d);
    args.erase(std::find(args.begin(), args.end(), "--echo"));
    test::child_process listener(io.get_executor(), args);
    auto node = co_await started(listener);
    test::child_process sender(
        io.get_executor(),
        {node_binary(), "send", transport::to_string(node.endpoint), "hello", "world", "--peer",
         node.key.to_string(), "--sign", "--key", (d.path / "sender.key").string()});
    auto sent_rc = co_await sender.wait();
    CHECK(sent_rc == std::optional<int>(0));
    // The listener prints the accept and the message as JSON lines.
    auto message = co_await line_where(
        listener, [](const std::string& l) { return event_of(l) == "NewMessage"; }, 10);
    REQUIRE(message);
    auto v = boost::json::parse(*message).as_object();
    CHECK(v.at("peer").as_string() == sender_id);
    CHECK(v.at("bytes").as_int64() == 11);
    CHECK(v.at("signed").as_bool());
  });
}

TEST_CASE("process: crust-node run serves a bootstrap; crust-node bootstrap reports it") {
  test::temp_dir d;
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    test::child_process node(
        io.get_executor(), {node_binary(), "run", "--json", "--address", "127.0.0.1", "--port", "0",
                            "--key", (d.path / "boot.key").string(), "--for", "60"});
    auto at = co_await started(node);
    // The joiner's config names the running node as its only contact.
    const auto cfg_path = d.path / "joiner.json";
    std::ofstream(cfg_path)
        << R"({"listen_address": "127.0.0.1", "hard_coded_contacts": [{"endpoint": ")"
        << transport::to_string(at.endpoint) << R"(", "key": ")" << at.key.to_string() << R"("}]})";
    std::vector<std::string> args{
        node_binary(), "bootstrap",      "--json", "--key", (d.path / "joiner.key").string(),
        "--config",    cfg_path.string()};
    test::child_process joiner(io.get_executor(), args);
    auto report = co_await joiner.read_line();
    REQUIRE(report);
    auto v = boost::json::parse(*report).as_object();
    CHECK(v.at("ok").as_bool());
    CHECK(v.at("peer").at("id").as_string() == at.key.id.to_string());
    CHECK(v.at("contacts").as_int64() == 1);
    auto rc = co_await joiner.wait();
    CHECK(rc == std::optional<int>(0));
    // Contacts are never cached.
    bootstrap::cache cached;
    auto loaded = cached.load(d.path / "joiner.cache.json", "crust");
    CHECK(loaded.problem.empty());
    CHECK(cached.size() == 0);
    // The running node printed the accepted bootstrap.
    auto accept = co_await line_where(
        node, [](const std::string& l) { return event_of(l) == "BootstrapAccept"; });
    CHECK(accept.has_value());
    // With no contacts and an empty cache there is nobody to ask: a clear failure.
    // (Its own network, so the running node's LAN beacon does not answer it.)
    test::child_process alone(io.get_executor(),
                              {node_binary(), "bootstrap", "--key", (d.path / "alone.key").string(),
                               "--address", "127.0.0.1", "--network", "nobody-else"});
    std::string all;
    for (;;) {
      auto line = co_await alone.read_line(seconds(10));
      if (!line) break;
      all += *line + "\n";
    }
    auto alone_rc = co_await alone.wait();
    CHECK(alone_rc == std::optional<int>(1));
    CHECK_MESSAGE(all.find("bootstrap failed: no one to bootstrap from") != std::string::npos, all);
  });
}

TEST_CASE("process: crust-node chat carries lines between two processes") {
  test::temp_dir d;
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    test::child_process waiting(io.get_executor(),
                                {node_binary(), "chat", "--address", "127.0.0.1", "--port", "0",
                                 "--key", (d.path / "a.key").string()},
                                true);
    // "waiting for a peer: crust-node chat IP:PORT --peer KEY"
    auto hint = co_await waiting.read_line();
    REQUIRE(hint);
    auto at = hint->find("chat ");
    REQUIRE(at != std::string::npos);
    std::istringstream words(hint->substr(at + 5));
    std::string endpoint, flag, key;
    words >> endpoint >> flag >> key;
    REQUIRE(flag == "--peer");
    test::child_process dialling(
        io.get_executor(),
        {node_binary(), "chat", endpoint, "--peer", key, "--key", (d.path / "b.key").string()},
        true);
    auto joined = co_await dialling.read_line();
    REQUIRE(joined);
    CHECK(joined->rfind("chatting with", 0) == 0);
    dialling.write_stdin("hello from b\n");
    auto heard = co_await line_where(waiting, [](const std::string& l) {
      return l.find(": hello from b") != std::string::npos;
    });
    CHECK(heard.has_value());
    waiting.write_stdin("and back\n");
    auto heard_back = co_await line_where(
        dialling, [](const std::string& l) { return l.find(": and back") != std::string::npos; });
    CHECK(heard_back.has_value());
    dialling.close_stdin();  // end of input: b flushes, closes and exits
    auto b_rc = co_await dialling.wait(seconds(10));
    CHECK(b_rc == std::optional<int>(0));
    auto a_rc = co_await waiting.wait(seconds(10));  // a sees LostPeer and exits
    CHECK(a_rc == std::optional<int>(0));
  });
}

TEST_CASE("process: bad input on the command line gets a clear error, not a crash") {
  test::temp_dir d;
  { std::ofstream(d.path / "bad.json") << R"({"network_name": "x", "tcp_port": 1})"; }
  test::run([&](asio::io_context& io) -> asio::awaitable<void> {
    for (auto args : std::vector<std::vector<std::string>>{
             {"listen", "--config", (d.path / "bad.json").string()},
             {"connect", "nowhere"},
             {"connect", "127.0.0.1:1", "--peer", "abc"},
             {"connect", "127.0.0.1:1"},  // refused
         }) {
      args.insert(args.begin(), node_binary());
      args.push_back("--key");
      args.push_back((d.path / "k.key").string());
      test::child_process p(io.get_executor(), args);
      auto rc = co_await p.wait(seconds(20));
      CHECK(rc == std::optional<int>(1));
    }
  });
}
