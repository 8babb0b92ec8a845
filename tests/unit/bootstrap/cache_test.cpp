#include "bootstrap/cache.hpp"

#include "crust/base/file.hpp"
#include "support/temp_dir.hpp"
#include "support/test.hpp"

#include <sys/stat.h>

using namespace crust;
using namespace crust::bootstrap;
namespace ip = boost::asio::ip;

namespace {
peer_key new_key() {
  return identity::generate().public_key();
}
transport::tcp_endpoint ep(const char* text) {
  return transport::parse_endpoint(text).value();
}
std::vector<std::string> order(const cache& c, std::int64_t now) {
  std::vector<std::string> out;
  for (const auto& e : c.candidates(now)) out.push_back(transport::to_string(e.endpoint));
  return out;
}
using strings = std::vector<std::string>;
}  // namespace

TEST_CASE("cache: most recent first; a new success moves a peer to the front") {
  cache c;
  auto a = new_key(), b = new_key(), d = new_key();
  c.record_success(a, ep("127.0.0.1:1"), 10);
  c.record_success(b, ep("127.0.0.1:2"), 20);
  c.record_success(d, ep("127.0.0.1:3"), 30);
  CHECK(order(c, 30) == strings{"127.0.0.1:3", "127.0.0.1:2", "127.0.0.1:1"});
  c.record_success(a, ep("127.0.0.1:4"), 40);  // a moved to another port
  CHECK(order(c, 40) == strings{"127.0.0.1:4", "127.0.0.1:3", "127.0.0.1:2"});
  // Another key now answering at b's endpoint replaces b.
  c.record_success(new_key(), ep("127.0.0.1:2"), 50);
  CHECK(order(c, 50) == strings{"127.0.0.1:2", "127.0.0.1:4", "127.0.0.1:3"});
  CHECK(c.size() == 3);
  CHECK_FALSE(c.record_success(new_key(), ep("0.0.0.0:5"), 60));
  CHECK_FALSE(c.record_success(new_key(), ep("127.0.0.1:0"), 60));
}

TEST_CASE("cache: bounded; the least recently reached goes first") {
  cache c(cache_limits{.capacity = 3});
  for (int i = 1; i <= 5; ++i)
    c.record_success(new_key(), ep(("10.0.0.1:" + std::to_string(i)).c_str()), i);
  CHECK(order(c, 5) == strings{"10.0.0.1:5", "10.0.0.1:4", "10.0.0.1:3"});
}

TEST_CASE("cache: tighter limits keep what they would have kept") {
  cache c(cache_limits{.capacity = 10, .per_group = 10});
  for (int i = 1; i <= 6; ++i)
    c.record_success(new_key(), ep(("203.0.0." + std::to_string(i) + ":9").c_str()), i);
  c.set_limits(cache_limits{.capacity = 10, .per_group = 2});
  CHECK(order(c, 6) == strings{"203.0.0.6:9", "203.0.0.5:9"});
  c.set_limits(cache_limits{.capacity = 1, .per_group = 2});
  CHECK(order(c, 6) == strings{"203.0.0.6:9"});
}

TEST_CASE("cache: address groups") {
  CHECK(address_group(ip::make_address("203.0.113.7")) == "v4:203.0");
  CHECK(address_group(ip::make_address("::ffff:203.0.113.7")) == "v4:203.0");
  CHECK(address_group(ip::make_address("2001:db8:1:2::1")) == "v6:2001:0db8");
  for (const char* lan : {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.9.9", "192.168.1.1",
                          "169.254.1.1", "::1", "fe80::1", "fd00::1"})
    CHECK_MESSAGE(address_group(ip::make_address(lan)).empty(), lan);
  CHECK(address_group(ip::make_address("172.32.0.1")) == "v4:172.32");
}

TEST_CASE("cache: eclipse bound per /16, per /32 and per informant") {
  cache c(cache_limits{.capacity = 100, .per_group = 2, .per_source = 3});
  // A flood from one /16 keeps only its two most recent entries.
  for (int i = 1; i <= 50; ++i)
    c.record_success(new_key(), ep(("203.0." + std::to_string(i) + ".1:9").c_str()), i);
  c.record_success(new_key(), ep("198.51.100.1:9"), 100);
  CHECK(order(c, 100) == strings{"198.51.100.1:9", "203.0.50.1:9", "203.0.49.1:9"});
  // The same for an IPv6 /32.
  for (int i = 1; i <= 10; ++i)
    c.record_success(new_key(), ep(("[2001:db8:" + std::to_string(i) + "::1]:9").c_str()), 200 + i);
  std::size_t v6 = 0;
  for (const auto& e : c.entries()) v6 += e.endpoint.address().is_v6() ? 1 : 0;
  CHECK(v6 == 2);
  // One informant, many groups: at most per_source of what it told us.
  auto informant = new_key().id.to_string();
  for (int i = 1; i <= 20; ++i)
    c.record_success(new_key(), ep(("100." + std::to_string(i) + ".0.1:9").c_str()), 300 + i,
                     informant);
  std::size_t told = 0;
  for (const auto& e : c.entries()) told += e.source == informant ? 1 : 0;
  CHECK(told == 3);
  // The LAN is exempt from the group bound.
  for (int i = 1; i <= 10; ++i)
    c.record_success(new_key(), ep(("192.168.0." + std::to_string(i) + ":9").c_str()), 400 + i);
  std::size_t lan = 0;
  for (const auto& e : c.entries()) lan += address_group(e.endpoint.address()).empty() ? 1 : 0;
  CHECK(lan == 10);
}

TEST_CASE("cache: stale entries come last and go at their first failure") {
  cache c(cache_limits{.ttl_seconds = 100, .max_failures = 3});
  auto old = new_key(), fresh = new_key();
  c.record_success(old, ep("127.0.0.1:1"), 0);
  c.record_success(fresh, ep("127.0.0.1:2"), 150);
  c.record_success(new_key(), ep("127.0.0.1:3"), 120);
  // Entry 1 is 200 s old: after the fresh ones even though recorded first.
  CHECK(order(c, 200) == strings{"127.0.0.1:3", "127.0.0.1:2", "127.0.0.1:1"});
  CHECK(c.is_stale(c.entries().back(), 200));
  CHECK(c.record_failure(old.id, 200));  // stale: one failure drops it
  CHECK(c.size() == 2);
  // A fresh entry survives two failures; a success resets the count.
  CHECK_FALSE(c.record_failure(fresh.id, 200));
  CHECK_FALSE(c.record_failure(fresh.id, 200));
  c.record_success(fresh, ep("127.0.0.1:2"), 201);
  CHECK_FALSE(c.record_failure(fresh.id, 202));
  CHECK_FALSE(c.record_failure(fresh.id, 202));
  CHECK(c.record_failure(fresh.id, 202));
  CHECK_FALSE(c.record_failure(fresh.id, 202));  // no longer there
}

TEST_CASE("cache: JSON round trip keeps order, counts and sources") {
  cache c;
  auto informant = new_key().id.to_string();
  c.record_success(new_key(), ep("127.0.0.1:1"), 10);
  c.record_success(new_key(), ep("[::1]:2"), 20, informant);
  c.record_failure(c.entries().front().key.id, 21);
  auto text = c.to_json("lab");
  cache d;
  auto r = d.parse(text, "lab");
  CHECK(r.problem.empty());
  CHECK(r.loaded == 2);
  CHECK(d.to_json("lab") == text);
  CHECK(d.entries().front().failures == 1);
  CHECK(d.entries().front().source == informant);
}

TEST_CASE("cache: corrupt, foreign and partly broken files are reported, never fatal") {
  cache good;
  good.record_success(new_key(), ep("127.0.0.1:1"), 10);
  const auto text = good.to_json("lab");
  struct bad {
    std::string text;
    const char* says;
  };
  for (const auto& b : {bad{"", "not valid JSON"}, bad{text.substr(0, text.size() / 2), "JSON"},
                        bad{"[]", "not a bootstrap cache"},
                        bad{R"({"format":"crust-identity","version":1})", "not a bootstrap cache"},
                        bad{text, "another network"}}) {
    CAPTURE(b.text);
    cache c;
    c.record_success(new_key(), ep("127.0.0.1:7"), 1);
    auto r = c.parse(b.text, b.says == std::string("another network") ? "other" : "lab");
    CHECK(c.size() == 0);
    CHECK(r.loaded == 0);
    CHECK_MESSAGE(r.problem.find(b.says) != std::string::npos, r.problem);
  }
  // Bad entries are skipped one by one.
  auto mixed = R"({"format":"crust-bootstrap-cache","version":1,"network":"lab","peers":[
    {"key":"zz","endpoint":"127.0.0.1:1","last_success":1,"failures":0,"source":"direct"},
    {"key":")" +
               new_key().to_string() +
               R"(","endpoint":"127.0.0.1:2","last_success":1,"failures":0,"source":"direct"},
    {"key":")" +
               new_key().to_string() +
               R"(","endpoint":"nowhere","last_success":1,"failures":0,"source":"direct"},
    7]})";
  cache c;
  auto r = c.parse(mixed, "lab");
  CHECK(r.loaded == 1);
  CHECK(r.skipped == 3);
  CHECK(r.problem.find("3 malformed") != std::string::npos);
}

TEST_CASE("cache: files are written whole and private, and a missing file is empty") {
  test::temp_dir dir;
  const auto path = dir.path / "cache.json";
  cache c;
  auto r0 = c.load(path, "lab");
  CHECK(r0.problem.empty());
  CHECK(c.size() == 0);
  c.record_success(new_key(), ep("127.0.0.1:1"), 10);
  REQUIRE(c.save(path, "lab"));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  cache d;
  auto r = d.load(path, "lab");
  CHECK(r.problem.empty());
  CHECK(d.to_json("lab") == c.to_json("lab"));
  // A directory in the way is an error value, not a crash.
  CHECK_FALSE(c.save(dir.path, "lab"));
}
