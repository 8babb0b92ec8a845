#include "crust/config.hpp"

#include "support/test.hpp"

using namespace crust;

TEST_CASE("config: an empty object gives the documented defaults") {
  auto c = config::parse("{}");
  REQUIRE(c);
  CHECK(c->network_name == "crust");
  CHECK(c->tcp_acceptor_port == 0);
  CHECK(c->max_message_size == 2u << 20);
  CHECK(c->heartbeat_timeout > c->heartbeat_interval);
  // Printing and re-reading keeps every value.
  auto again = config::parse(c->to_json());
  REQUIRE(again);
  CHECK(again->to_json() == c->to_json());
}

TEST_CASE("config: values are read") {
  auto key = identity::generate().public_key().to_string();
  auto c = config::parse(R"({
    // comments are allowed
    "network_name": "lab", "tcp_acceptor_port": 5483, "max_message_size": 1000,
    "heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 500,
    "hard_coded_contacts": ["127.0.0.1:1", {"endpoint": "[::1]:2", "key": ")" +
                         key + R"("}]
  })");
  REQUIRE_MESSAGE(c, c.error().message);
  CHECK(c->network_name == "lab");
  CHECK(c->tcp_acceptor_port == 5483);
  CHECK(c->max_message_size == 1000);
  CHECK(c->heartbeat_timeout == milliseconds(500));
  REQUIRE(c->hard_coded_contacts.size() == 2);
  CHECK_FALSE(c->hard_coded_contacts[0].key);
  CHECK(c->hard_coded_contacts[1].key->to_string() == key);
}

TEST_CASE("config: errors name the key and the file") {
  struct bad {
    const char* text;
    const char* says;
  };
  for (auto b :
       {bad{R"({"netwrok_name": "x"})", "unknown key \"netwrok_name\""},
        bad{R"({"tcp_acceptor_port": "80"})", "\"tcp_acceptor_port\" must be a whole number"},
        bad{R"({"tcp_acceptor_port": 70000})", "between 0 and 65535"},
        bad{R"({"max_message_size": -1})", "must not be negative"},
        bad{R"({"network_name": ""})", "1 to 255 bytes"},
        bad{R"({"hard_coded_contacts": [{"endpoint": "nowhere"}]})",
            "\"hard_coded_contacts[0].endpoint\" is not an ip:port"},
        bad{R"({"hard_coded_contacts": [{"endpoint": "1.2.3.4:5", "key": "zz"}]})",
            "hard_coded_contacts[0].key"},
        bad{R"({"hard_coded_contacts": [{"ep": "1.2.3.4:5"}]})", "hard_coded_contacts[0].ep"},
        bad{R"({"heartbeat_interval_ms": 5000, "heartbeat_timeout_ms": 100})", "larger than"},
        bad{R"({"accept_address_only": 1})", "true or false"},
        bad{R"({"role": "server"})", "\"role\" must be \"node\" or \"client\""},
        bad{R"({"whitelisted_node_ips": ["10.0.0.1", "ten"]})",
            "\"whitelisted_node_ips[1]\" is not an IP address"},
        bad{R"({"whitelisted_client_ips": "10.0.0.1"})", "array of IP addresses or null"},
        bad{R"({"bootstrap_cache_size": 0})", "between 1 and"},
        bad{R"({"service_discovery_port": 0})", "between 1 and 65535"},
        bad{R"({"port_mapping_methods": ["pcp", "igd"]})", "not \"igd\""},
        bad{R"({"port_mapping_methods": "pcp"})", "must be an array"},
        bad{R"({"port_mapping_gateway": "router"})", "\"port_mapping_gateway\" is not an IP"},
        bad{R"({"port_mapping_lifetime_s": 10})", "between 120 and 86400"},
        bad{R"({"port_mapping_threads": 0})", "between 1 and 64"},
        bad{R"({"stun_servers": ["198.18.0.1"]})", "\"stun_servers[0]\" is not an ip:port"},
        bad{R"({"relay_max_circuits": -1})", "must not be negative"},
        bad{"[1]", "top level"},
        bad{"{", "not valid JSON"}}) {
    CAPTURE(b.text);
    auto c = config::parse(b.text, "node.json");
    REQUIRE_FALSE(c);
    CHECK(c.error().code == errc::bad_config);
    CHECK(c.error().message.find("node.json: ") == 0);
    CHECK_MESSAGE(c.error().message.find(b.says) != std::string::npos, c.error().message);
  }
}

TEST_CASE("config: bootstrap and admission keys") {
  auto c = config::parse("{}");
  REQUIRE(c);
  CHECK(c->service_discovery_port == 5484);
  CHECK(c->bootstrap_cache_size == 200);
  CHECK_FALSE(c->whitelisted_node_ips);
  CHECK(c->role == node_role::node);
  auto d = config::parse(R"({"role": "client", "whitelisted_node_ips": [],
    "whitelisted_client_ips": ["127.0.0.1", "::1"], "bootstrap_cache_ttl_s": 60,
    "bootstrap_cache_path": "cache.json", "accept_bootstrap": false})");
  REQUIRE_MESSAGE(d, d.error().message);
  CHECK(d->role == node_role::client);
  REQUIRE(d->whitelisted_node_ips);
  CHECK(d->whitelisted_node_ips->empty());  // present and empty: nobody
  REQUIRE(d->whitelisted_client_ips);
  CHECK(d->whitelisted_client_ips->size() == 2);
  CHECK(d->bootstrap_cache_ttl == seconds(60));
  CHECK_FALSE(d->accept_bootstrap);
  auto again = config::parse(d->to_json());
  REQUIRE(again);
  CHECK(again->to_json() == d->to_json());
}

TEST_CASE("config: port mapping keys") {
  auto c = config::parse("{}");
  REQUIRE(c);
  CHECK(c->enable_port_mapping);
  CHECK(c->port_mapping_methods == std::vector<std::string>{"pcp", "natpmp", "upnp"});
  CHECK_FALSE(c->port_mapping_gateway);
  CHECK(c->port_mapping_lifetime == seconds(3600));
  CHECK(c->port_mapping_threads == 1);
  auto d = config::parse(R"({"port_mapping_methods": ["upnp"], "port_mapping_gateway": "198.19.1.1",
    "port_mapping_lifetime_s": 600, "port_mapping_threads": 2})");
  REQUIRE_MESSAGE(d, d.error().message);
  CHECK(d->port_mapping_methods == std::vector<std::string>{"upnp"});
  CHECK(d->port_mapping_gateway == boost::asio::ip::make_address("198.19.1.1"));
  CHECK(d->port_mapping_lifetime == seconds(600));
  CHECK(d->port_mapping_threads == 2);
  auto again = config::parse(d->to_json());
  REQUIRE(again);
  CHECK(again->to_json() == d->to_json());
  CHECK(d->changed_keys(*c).size() == 4);
}

TEST_CASE("config: relay and STUN keys") {
  auto c = config::parse(R"({"enable_relay": false, "relay_max_circuits": 3,
    "relay_circuits_per_peer": 1, "relay_circuit_bytes": 1000,
    "stun_servers": ["198.18.0.1:3478", "[2001:db8::1]:3478"]})");
  REQUIRE_MESSAGE(c, c.error().message);
  CHECK_FALSE(c->enable_relay);
  CHECK(c->relay_max_circuits == 3);
  CHECK(c->relay_circuits_per_peer == 1);
  CHECK(c->relay_circuit_bytes == 1000);
  CHECK(c->stun_servers.size() == 2);
  auto again = config::parse(c->to_json());
  REQUIRE(again);
  CHECK(again->to_json() == c->to_json());
}

TEST_CASE("config: port rotation keys") {
  auto c = config::parse("{}");
  REQUIRE(c);
  CHECK(c->port_rotation_interval == duration::zero());  // off unless asked for
  CHECK(c->port_rotation_grace == seconds(120));
  CHECK(c->port_rotation_max_retiring == 4);
  auto d = config::parse(R"({"port_rotation_interval_ms": 600000, "port_rotation_grace_ms": 30000,
    "port_rotation_max_retiring": 2})");
  REQUIRE_MESSAGE(d, d.error().message);
  CHECK(d->port_rotation_interval == seconds(600));
  CHECK(d->port_rotation_grace == seconds(30));
  CHECK(d->port_rotation_max_retiring == 2);
  auto again = config::parse(d->to_json());
  REQUIRE(again);
  CHECK(again->to_json() == d->to_json());
  CHECK(d->changed_keys(*c).size() == 3);
  auto fast = config::parse(R"({"port_rotation_interval_ms": 500})", "crust.json");
  REQUIRE_FALSE(fast);
  CHECK(fast.error().message.find("port_rotation_interval_ms") != std::string::npos);
  CHECK(fast.error().message.find("1000") != std::string::npos);
  auto zero_grace = config::parse(R"({"port_rotation_grace_ms": 0})");
  REQUIRE_FALSE(zero_grace);
  CHECK(zero_grace.error().message.find("port_rotation_grace_ms") != std::string::npos);
}

TEST_CASE("config: a missing file is a clear error") {
  auto c = config::load("/nonexistent/crust.json");
  REQUIRE_FALSE(c);
  CHECK(c.error().message.find("cannot be read") != std::string::npos);
}
