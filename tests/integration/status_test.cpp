// The status server on loopback, spoken to by a plain socket (no HTTP
// library on the client side): /status, /metrics and / for a node with a
// peer, the errors (404, 405, 400, 431), HEAD, keep-alive, the bounds
// (loopback only, clients at once, a silent client's timeout), and a
// node that is gone (503).
#include "crust/status_server.hpp"
#include "support/co_test.hpp"

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>

using namespace crust;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

struct http_reply {
  int status = 0;
  std::string head, body;
  bool closed = false;  // the server closed after it
};

// One exchange on `s`: writes `request`, reads one reply (its head, then
// Content-Length bytes of body; none for HEAD, whose length is GET's).
asio::awaitable<http_reply> exchange(asio::ip::tcp::socket& s, std::string request) {
  http_reply r;
  const bool head_only = request.starts_with("HEAD ");
  auto [wec, wn] =
      co_await asio::async_write(s, asio::buffer(request), asio::as_tuple(asio::use_awaitable));
  if (wec) co_return r;
  std::string in;
  std::optional<std::size_t> total;  // head and body, once the head is in
  std::array<char, 4096> buf{};
  for (;;) {
    if (const auto end = in.find("\r\n\r\n"); !total && end != std::string::npos) {
      r.head = in.substr(0, end);
      const auto cl = r.head.find("Content-Length: ");
      const std::size_t body =
          cl == std::string::npos || head_only ? 0 : std::stoul(r.head.substr(cl + 16));
      total = end + 4 + body;
      r.status = std::stoi(r.head.substr(9, 3));  // "HTTP/1.1 200 OK"
    }
    if (total && in.size() >= *total) {
      r.body = in.substr(r.head.size() + 4, *total - r.head.size() - 4);
      break;
    }
    auto [ec, n] =
        co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (ec) {
      r.closed = true;
      break;
    }
    in.append(buf.data(), n);
  }
  co_return r;
}

asio::awaitable<asio::ip::tcp::socket> dial(asio::io_context& io, asio::ip::tcp::endpoint at) {
  asio::ip::tcp::socket s(io);
  auto [ec] = co_await s.async_connect(at, asio::as_tuple(asio::use_awaitable));
  REQUIRE_FALSE(ec);
  co_return s;
}

asio::awaitable<http_reply> get(asio::io_context& io, asio::ip::tcp::endpoint at,
                                std::string_view target, std::string_view method = "GET") {
  auto s = co_await dial(io, at);
  co_return co_await exchange(s, std::string(method) + " " + std::string(target) +
                                     " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
}

// Reads until the server closes; true if it did.
asio::awaitable<bool> closed_by_server(asio::ip::tcp::socket& s) {
  std::array<char, 256> buf{};
  for (;;) {
    auto [ec, n] =
        co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    if (ec) co_return true;
  }
}

}  // namespace

TEST_CASE("status server: /status, /metrics and / describe a node and its peer") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto p = co_await test::connected_pair(io);
    auto srv = status_server::start(io.get_executor(), p.b->watch());
    REQUIRE(srv);
    const auto at = srv->local_endpoint();
    CHECK(at.address().is_loopback());
    REQUIRE(p.a->send(p.b->id().id(), bytes(1000, 7)));
    auto got = co_await test::next_of<events::new_message>(*p.b);
    CHECK(got.payload.size() == 1000);

    auto st = co_await get(io, at, "/status");
    REQUIRE(st.status == 200);
    CHECK(st.head.find("Content-Type: application/json") != std::string::npos);
    CHECK(st.head.find("Cache-Control: no-store") != std::string::npos);
    const auto j = json::parse(st.body).as_object();
    CHECK(j.at("id").as_string() == p.b->id().id().to_string());
    CHECK(j.at("key").as_string() == p.b->id().public_key().to_string());
    CHECK(j.at("listeners").at("tcp").as_string() == transport::to_string(*p.b->local_endpoint()));
    const auto& peers = j.at("peers").as_array();
    REQUIRE(peers.size() == 1);
    const auto& peer = peers[0].as_object();
    CHECK(peer.at("id").as_string() == p.a->id().id().to_string());
    CHECK(peer.at("transport").as_string() == "tcp");
    CHECK(peer.at("path").as_string() == "direct");
    CHECK(peer.at("inbound").as_bool());
    CHECK(peer.at("bytes_received").as_int64() == 1000);
    CHECK(peer.at("rtt_ms").is_double());  // the kernel's TCP estimate
    const auto& m = j.at("metrics").as_object();
    CHECK(m.at("handshakes_ok").as_int64() == 1);
    CHECK(m.at("connections_opened").as_int64() == 1);
    CHECK(m.at("bytes_received").as_int64() == 1000);

    auto me = co_await get(io, at, "/metrics");
    REQUIRE(me.status == 200);
    CHECK(me.head.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
    CHECK(me.body.find("crust_connections{transport=\"tcp\",path=\"direct\"} 1\n") !=
          std::string::npos);
    CHECK(me.body.find("crust_connections{transport=\"utp\",path=\"punched\"} 0\n") !=
          std::string::npos);
    CHECK(me.body.find("# TYPE crust_handshakes_ok_total counter\ncrust_handshakes_ok_total 1\n") !=
          std::string::npos);
    CHECK(me.body.find("crust_received_bytes_total 1000\n") != std::string::npos);

    auto page = co_await get(io, at, "/");
    REQUIRE(page.status == 200);
    CHECK(page.head.find("Content-Type: text/html") != std::string::npos);
    CHECK(page.body.find("<title>Crust node</title>") != std::string::npos);
    CHECK(page.body.find("fetch('/status'") != std::string::npos);

    // The counters stay after the peer leaves.
    p.a->disconnect(p.b->id().id());
    const bool gone = co_await test::eventually([&] { return p.b->peers().empty(); });
    REQUIRE(gone);
    auto after = co_await get(io, at, "/status");
    const auto k = json::parse(after.body).as_object();
    CHECK(k.at("peers").as_array().empty());
    CHECK(k.at("metrics").at("bytes_received").as_int64() == 1000);

    co_await srv->stop();
    co_await p.a->stop(milliseconds(100));
    co_await p.b->stop(milliseconds(100));
  });
}

TEST_CASE("status server: errors, HEAD and keep-alive") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto node = test::make_node(io);
    REQUIRE(co_await node->start());
    auto srv = status_server::start(io.get_executor(), node->watch());
    REQUIRE(srv);
    const auto at = srv->local_endpoint();

    CHECK((co_await get(io, at, "/nothing")).status == 404);
    auto post = co_await get(io, at, "/status", "POST");
    CHECK(post.status == 405);
    CHECK(post.head.find("Allow: GET, HEAD") != std::string::npos);
    auto head = co_await get(io, at, "/status", "HEAD");
    CHECK(head.status == 200);
    CHECK(head.head.find("Content-Length: 0") == std::string::npos);
    CHECK(head.body.empty());
    CHECK((co_await get(io, at, "/status?pretty=1")).status == 200);

    {
      auto s = co_await dial(io, at);
      auto r = co_await exchange(s, "HELLO THERE\r\n\r\n");
      CHECK(r.status == 400);
      CHECK(co_await closed_by_server(s));
    }
    {
      auto s = co_await dial(io, at);
      auto r = co_await exchange(
          s, "GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n");
      CHECK(r.status == 431);
    }
    {
      // Two requests on one connection.
      auto s = co_await dial(io, at);
      auto r1 = co_await exchange(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
      auto r2 = co_await exchange(s, "GET /status HTTP/1.1\r\nHost: x\r\n\r\n");
      CHECK(r1.status == 200);
      CHECK(r2.status == 200);
      CHECK_FALSE(r1.closed);
    }
    co_await srv->stop();
    co_await node->stop();
  });
}

TEST_CASE("status server: loopback only, bounded clients, silent clients closed, a gone node") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto node = test::make_node(io);
    REQUIRE(co_await node->start());
    status_options wide;
    wide.at = {asio::ip::make_address("0.0.0.0"), 0};
    auto refused = status_server::start(io.get_executor(), node->watch(), wide);
    REQUIRE_FALSE(refused);
    CHECK(refused.error() == errc::not_allowed);

    status_options o;
    o.max_clients = 2;
    o.idle_timeout = milliseconds(300);
    auto srv = status_server::start(io.get_executor(), node->watch(), o);
    REQUIRE(srv);
    const auto at = srv->local_endpoint();
    // Two idle clients hold both places; a third is closed at once.
    auto c1 = co_await dial(io, at);
    auto c2 = co_await dial(io, at);
    co_await test::sleep_for(milliseconds(50));
    auto c3 = co_await dial(io, at);
    const auto t0 = clock::now();
    CHECK(co_await closed_by_server(c3));
    CHECK(clock::now() - t0 < milliseconds(250));  // well before the idle timeout
    // A client that sends half a request and stops is closed at the idle timeout.
    std::string half = "GET /status HTTP/1.1\r\nHost:";
    co_await asio::async_write(c1, asio::buffer(half), asio::as_tuple(asio::use_awaitable));
    CHECK(co_await closed_by_server(c1));
    CHECK(co_await closed_by_server(c2));
    // Then a new client is served.
    CHECK((co_await get(io, at, "/status")).status == 200);

    // A node that is gone: 503, and the server still answers.
    co_await node->stop();
    node.reset();
    CHECK((co_await get(io, at, "/status")).status == 503);
    CHECK((co_await get(io, at, "/nothing")).status == 404);

    // stop() ends an idle keep-alive client at once.
    auto idle = co_await dial(io, at);
    co_await test::sleep_for(milliseconds(20));
    co_await srv->stop();
    CHECK(co_await closed_by_server(idle));
  });
}
