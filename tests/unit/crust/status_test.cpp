// The status documents from a made-up snapshot: the JSON of /status and
// the Prometheus text of /metrics, field by field.
#include "crust/status.hpp"

#include "support/test.hpp"

#include <boost/json.hpp>

using namespace crust;
namespace json = boost::json;
namespace ip = boost::asio::ip;

namespace {

node_status sample() {
  node_status s;
  const auto me = identity::from_secrets(secure::key32{1}, secure::key32{2});
  const auto them = identity::from_secrets(secure::key32{3}, secure::key32{4});
  s.id = me.id();
  s.key = me.public_key();
  s.network = "lab \"one\"";
  s.version = "0.1.0";
  s.protocol_version = 1;
  s.uptime = seconds(90);
  s.tcp = ip::tcp::endpoint(ip::make_address("127.0.0.1"), 5483);
  peer_status p;
  p.info.id = them.id();
  p.info.key = them.public_key();
  p.info.transport = transport::kind::utp;
  p.info.path = path_kind::punched;
  p.info.remote = "198.18.0.12:40000";
  p.stats.bytes_sent = 10;
  p.stats.rtt = milliseconds(42);
  p.uptime = seconds(3);
  s.peers.push_back(p);
  p.info.transport = transport::kind::relay;
  p.info.path = path_kind::relayed;
  p.stats.rtt.reset();
  s.peers.push_back(p);
  s.metrics.handshakes_ok = 5;
  s.retiring_tcp = {{boost::asio::ip::make_address("127.0.0.1"), 5482}};
  s.port_rotations = 3;
  s.metrics.punch_attempts = 2;
  s.metrics.punch_successes = 1;
  s.metrics.bytes_received = 1234;
  nat::nat_report r;
  r.mapping = nat::mapping_behaviour::endpoint_independent;
  r.allocation = nat::allocation_behaviour::sequential;
  r.port_step = 2;
  r.hairpinning = false;
  s.nat = r;
  return s;
}

}  // namespace

TEST_CASE("status: the JSON document") {
  const auto s = sample();
  const auto j = json::parse(status_json(s)).as_object();
  CHECK(j.at("id").as_string() == s.id.to_string());
  CHECK(j.at("network").as_string() == "lab \"one\"");
  CHECK(j.at("protocol_version").as_int64() == 1);
  CHECK(j.at("uptime_s").as_double() == doctest::Approx(90));
  CHECK(j.at("listeners").at("tcp").as_string() == "127.0.0.1:5483");
  CHECK(j.at("listeners").at("udp").is_null());
  CHECK(j.at("listeners").at("port_rotations").as_int64() == 3);
  REQUIRE(j.at("listeners").at("retiring_tcp").as_array().size() == 1);
  CHECK(j.at("listeners").at("retiring_tcp").as_array()[0].as_string() == "127.0.0.1:5482");
  const auto& peers = j.at("peers").as_array();
  REQUIRE(peers.size() == 2);
  CHECK(peers[0].at("transport").as_string() == "utp");
  CHECK(peers[0].at("path").as_string() == "punched");
  CHECK(peers[0].at("rtt_ms").as_double() == doctest::Approx(42));
  CHECK(peers[1].at("rtt_ms").is_null());
  CHECK(j.at("nat").at("mapping").as_string() == "endpoint-independent");
  CHECK(j.at("nat").at("port_step").as_int64() == 2);
  CHECK(j.at("nat").at("hairpinning").as_bool() == false);
  CHECK(j.at("metrics").at("punch_successes").as_int64() == 1);
  CHECK(j.at("port_mappings").as_array().empty());
}

TEST_CASE("status: the Prometheus text") {
  const auto t = metrics_text(sample());
  CHECK(t.find("\ncrust_port_rotations_total 3\n") != std::string::npos);
  CHECK(t.find("# HELP crust_handshakes_ok_total ") != std::string::npos);
  CHECK(t.find("# TYPE crust_handshakes_ok_total counter\ncrust_handshakes_ok_total 5\n") !=
        std::string::npos);
  CHECK(t.find("crust_punch_attempts_total 2\n") != std::string::npos);
  CHECK(t.find("crust_received_bytes_total 1234\n") != std::string::npos);
  CHECK(t.find("crust_connections{transport=\"utp\",path=\"punched\"} 1\n") != std::string::npos);
  CHECK(t.find("crust_connections{transport=\"relay\",path=\"relayed\"} 1\n") != std::string::npos);
  // Every series is there, open or not.
  CHECK(t.find("crust_connections{transport=\"tcp\",path=\"direct\"} 0\n") != std::string::npos);
  // Label values are escaped.
  CHECK(t.find("network=\"lab \\\"one\\\"\"") != std::string::npos);
  // Every line is a comment or "name{labels} value".
  std::size_t lines = 0;
  for (std::size_t at = 0; at < t.size();) {
    const auto end = t.find('\n', at);
    REQUIRE(end != std::string::npos);
    const auto line = t.substr(at, end - at);
    CAPTURE(line);
    CHECK((line.starts_with("# HELP crust_") || line.starts_with("# TYPE crust_") ||
           (line.starts_with("crust_") && line.find(' ') != std::string::npos)));
    at = end + 1;
    ++lines;
  }
  CHECK(lines > 40);
}
