// STUN against servers and clients no one here wrote, on loopback:
// - our client against Debian's coturn (RFC 5780 mode: two addresses and
//   an alternate port, so it sends RESPONSE-ORIGIN and OTHER-ADDRESS) and
//   against stund (Vovida's RFC 3489-era server);
// - coturn's turnutils_stunclient against our server, both bare (the
//   agent on a socket of the test's) and inside a running crust-node;
// - crust-node stun against coturn.
// Every daemon runs under `timeout` and is killed by PID.
#include "nat/stun_agent.hpp"

#include "support/co_test.hpp"
#include "support/process.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <regex>

using namespace crust;
namespace asio = boost::asio;
namespace ip = asio::ip;
namespace stun = nat::stun;
using udp = ip::udp;

namespace {

void require_tool(const char* path) {
  REQUIRE_MESSAGE(std::filesystem::exists(path),
                  path << " is required (.ci/install-deps.sh installs coturn and stun-server)");
}

// A UDP port that is free just now on 127.0.0.1 and 127.0.0.2, with the
// next one: a two-address server binds all four.
std::uint16_t free_udp_pair() {
  for (int attempt = 0; attempt < 100; ++attempt) {
    asio::io_context io;
    udp::socket s(io, udp::endpoint(ip::make_address("127.0.0.1"), 0));
    const auto p = s.local_endpoint().port();
    if (p >= 65000) continue;
    bool free = true;
    std::vector<udp::socket> held;
    for (const char* a : {"127.0.0.1", "127.0.0.2"}) {
      for (int k = 0; k < 2; ++k) {
        if (k == 0 && std::string_view(a) == "127.0.0.1") continue;  // s holds it
        error_code ec;
        udp::socket t(io);
        t.open(udp::v4(), ec);
        t.bind({ip::make_address(a), static_cast<std::uint16_t>(p + k)}, ec);
        if (ec) free = false;
        held.push_back(std::move(t));
      }
    }
    if (free) return p;
  }
  FAIL("no free UDP port pair");
  return 0;
}

// Closes the sockets and agent a test made even when it fails early, so a
// failing test ends at once instead of at test::run's limit.
struct closer {
  std::shared_ptr<transport::udp_mux> mux;
  std::shared_ptr<nat::stun_agent> agent;
  ~closer() {
    if (agent) agent->close();
    if (mux) mux->close();
  }
};

std::shared_ptr<transport::udp_mux> open_mux(asio::io_context& io) {
  auto m = transport::udp_mux::open(io.get_executor(), {ip::make_address("127.0.0.1"), 0});
  REQUIRE(m);
  asio::co_spawn(io, (*m)->run(), asio::detached);
  return *m;
}

// Asks until the daemon answers (it takes a moment to start), at most ~5 s.
asio::awaitable<result<nat::binding_result>> ask_until_up(nat::stun_agent& agent,
                                                          udp::endpoint server) {
  result<nat::binding_result> r = make_error_code(errc::timed_out);
  for (int i = 0; i < 25 && !r; ++i) r = co_await agent.binding(server, {milliseconds(100), 2, 1});
  co_return r;
}

}  // namespace

TEST_CASE("stun interop: our client against coturn in RFC 5780 mode") {
  require_tool("/usr/bin/turnserver");
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    const auto port = free_udp_pair();
    test::child_process coturn(
        io.get_executor(),
        {"/usr/bin/timeout", "30", "/usr/bin/turnserver", "-n", "--listening-ip=127.0.0.1",
         "--listening-ip=127.0.0.2", "--listening-port=" + std::to_string(port),
         "--alt-listening-port=" + std::to_string(port + 1), "--stun-only", "--no-tcp", "--no-tls",
         "--no-dtls", "--no-cli", "--log-file=stdout", "--simple-log",
         "--pidfile=" + (std::filesystem::temp_directory_path() /
                         ("crust-coturn-" + std::to_string(::getpid()) + ".pid"))
                            .string()});
    auto mux = open_mux(io);
    auto agent = nat::stun_agent::attach(mux);
    closer guard{mux, agent};
    const udp::endpoint server(ip::make_address("127.0.0.1"), port);
    auto r = co_await ask_until_up(*agent, server);
    REQUIRE_MESSAGE(r, "coturn did not answer: " << r.error().message());
    CHECK(r->mapped == mux->local_endpoint());
    CHECK(r->server == server);
    CHECK(r->software.find("Coturn") != std::string::npos);
    CHECK(r->response_origin == std::optional(server));
    REQUIRE(r->other_address);
    CHECK(r->other_address->address() == ip::make_address("127.0.0.2"));
    CHECK(r->other_address->port() == port + 1);
    // The alternate address answers too, with the same mapping (loopback has no NAT).
    auto alt = co_await agent->binding(*r->other_address, {milliseconds(200), 3, 2});
    REQUIRE(alt);
    CHECK(alt->mapped == mux->local_endpoint());
    agent->close();
    mux->close();
    coturn.terminate();
  });
}

TEST_CASE("stun interop: our client against stund (RFC 3489-era, no FINGERPRINT)") {
  require_tool("/usr/sbin/stund");
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    const auto port = free_udp_pair();
    test::child_process stund(
        io.get_executor(),
        {"/usr/bin/timeout", "30", "/usr/sbin/stund", "-h", "127.0.0.1", "-a", "127.0.0.2", "-p",
         std::to_string(port), "-o", std::to_string(port + 1)});
    auto mux = open_mux(io);
    auto agent = nat::stun_agent::attach(mux);
    closer guard{mux, agent};
    auto r = co_await ask_until_up(*agent, {ip::make_address("127.0.0.1"), port});
    REQUIRE_MESSAGE(r, "stund did not answer: " << r.error().message());
    CHECK(r->mapped == mux->local_endpoint());
    CHECK(r->software.find("Vovida") != std::string::npos);
    agent->close();
    mux->close();
    stund.terminate();
  });
}

TEST_CASE("stun interop: coturn's turnutils_stunclient against our server") {
  require_tool("/usr/bin/turnutils_stunclient");
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto mux = open_mux(io);
    // Its requests are bare (20 bytes): answered only with a floor, since
    // by default no answer is larger than its request.
    nat::stun_agent::options o;
    o.server.answer_floor = 64;
    auto agent = nat::stun_agent::attach(mux, o);
    closer guard{mux, agent};
    const auto port = mux->local_endpoint().port();
    test::child_process client(io.get_executor(),
                               {"/usr/bin/timeout", "10", "/usr/bin/turnutils_stunclient", "-p",
                                std::to_string(port), "127.0.0.1"});
    // It prints "UDP reflexive addr: 127.0.0.1:PORT" once it has our answer.
    std::optional<std::string> reflexive;
    for (int i = 0; i < 40 && !reflexive; ++i) {
      auto line = co_await client.read_line(seconds(10));
      if (!line) break;
      std::smatch m;
      if (std::regex_search(*line, m, std::regex("reflexive addr: *([0-9.]+):([0-9]+)")))
        reflexive = m[1].str() + ":" + m[2].str();
    }
    REQUIRE_MESSAGE(reflexive, "turnutils_stunclient printed no reflexive address");
    CHECK(reflexive->rfind("127.0.0.1:", 0) == 0);
    auto code = co_await client.wait(seconds(10));
    CHECK(code == std::optional<int>(0));
    CHECK(agent->stats().requests_answered >= 1);
    agent->close();
    mux->close();
  });
}

TEST_CASE(
    "stun interop: a running crust-node answers turnutils_stunclient; crust-node stun asks "
    "coturn") {
  require_tool("/usr/bin/turnutils_stunclient");
  require_tool("/usr/bin/turnserver");
  const char* node = std::getenv("CRUST_NODE");
  REQUIRE_MESSAGE(node, "CRUST_NODE must name the crust-node binary");
  test::run([node](asio::io_context& io) -> asio::awaitable<void> {
    const auto dir =
        std::filesystem::temp_directory_path() / ("crust-stun-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    // turnutils_stunclient's requests are bare: answered with a floor only.
    {
      std::ofstream cfg(dir / "floor.json");
      cfg << R"({"stun_answer_floor": 64})";
    }
    test::child_process listener(
        io.get_executor(),
        {"/usr/bin/timeout", "30", node, "listen", "--json", "-a", "127.0.0.1", "-p", "0", "-k",
         (dir / "n.key").string(), "-c", (dir / "floor.json").string()});
    auto first = co_await listener.read_line(seconds(20));
    REQUIRE(first);
    auto v = boost::json::parse(*first).as_object();
    REQUIRE(v.contains("udp"));
    const std::string udp_at(v.at("udp").as_string());
    const auto port = udp_at.substr(udp_at.rfind(':') + 1);
    test::child_process client(
        io.get_executor(),
        {"/usr/bin/timeout", "10", "/usr/bin/turnutils_stunclient", "-p", port, "127.0.0.1"});
    bool saw = false;
    for (int i = 0; i < 40 && !saw; ++i) {
      auto line = co_await client.read_line(seconds(10));
      if (!line) break;
      saw = line->find("reflexive addr: 127.0.0.1:") != std::string::npos;
    }
    CHECK_MESSAGE(saw, "turnutils_stunclient got no answer from crust-node listen");
    listener.terminate();

    const auto cport = free_udp_pair();
    test::child_process coturn(
        io.get_executor(),
        {"/usr/bin/timeout", "30", "/usr/bin/turnserver", "-n", "--listening-ip=127.0.0.1",
         "--listening-port=" + std::to_string(cport), "--stun-only", "--no-tcp", "--no-tls",
         "--no-dtls", "--no-cli", "--log-file=stdout", "--simple-log",
         "--pidfile=" + (dir / "coturn.pid").string()});
    co_await test::sleep_for(milliseconds(1500));  // coturn's start-up
    std::optional<int> code;
    std::string out;
    for (int attempt = 0; attempt < 5 && code != std::optional<int>(0); ++attempt) {
      test::child_process ask(io.get_executor(),
                              {"/usr/bin/timeout", "10", node, "stun", "--json", "-a", "127.0.0.1",
                               "127.0.0.1:" + std::to_string(cport)});
      auto line = co_await ask.read_line(seconds(10));
      out = line.value_or("");
      code = co_await ask.wait(seconds(10));
    }
    REQUIRE_MESSAGE(code == std::optional<int>(0), "crust-node stun: " << out);
    auto j = boost::json::parse(out).as_object();
    CHECK(j.at("event").as_string() == "stun_mapped");
    CHECK(std::string(j.at("mapped").as_string()).rfind("127.0.0.1:", 0) == 0);
    coturn.terminate();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  });
}
