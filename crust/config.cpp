#include "crust/config.hpp"

#include "transports/endpoint.hpp"

#include <boost/json.hpp>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace crust {

namespace json = boost::json;

namespace {

using cfg_result = boost::system::result<config, config::error>;

config::error fail(std::string_view source, std::string msg) {
  return {make_error_code(errc::bad_config), std::string(source) + ": " + std::move(msg)};
}

struct reader {
  std::string_view source;
  std::optional<config::error> err;

  void set(std::string msg) {
    if (!err) err = fail(source, std::move(msg));
  }
  template <class T>
  void number(const json::value& v, std::string_view key, T& out, std::uint64_t lo,
              std::uint64_t hi) {
    if (!v.is_int64() && !v.is_uint64())
      return set("\"" + std::string(key) + "\" must be a whole number");
    if (v.is_int64() && v.as_int64() < 0)
      return set("\"" + std::string(key) + "\" must not be negative");
    std::uint64_t n = v.is_uint64() ? v.as_uint64() : static_cast<std::uint64_t>(v.as_int64());
    if (n < lo || n > hi)
      return set("\"" + std::string(key) + "\" must be between " + std::to_string(lo) + " and " +
                 std::to_string(hi) + ", not " + std::to_string(n));
    out = static_cast<T>(n);
  }
  void millis(const json::value& v, std::string_view key, duration& out) {
    std::uint64_t ms = 0;
    number(v, key, ms, 1, 24ull * 3600 * 1000);
    if (!err) out = milliseconds(ms);
  }
  void string(const json::value& v, std::string_view key, std::string& out) {
    if (!v.is_string()) return set("\"" + std::string(key) + "\" must be a string");
    out = std::string(v.as_string());
  }
  void seconds_(const json::value& v, std::string_view key, duration& out) {
    std::uint64_t sec = 0;
    number(v, key, sec, 1, 10ull * 365 * 24 * 3600);
    if (!err) out = seconds(sec);
  }
  void ip_list(const json::value& v, std::string_view key,
               std::optional<std::vector<boost::asio::ip::address>>& out) {
    if (v.is_null()) {
      out.reset();
      return;
    }
    if (!v.is_array())
      return set("\"" + std::string(key) + "\" must be an array of IP addresses or null");
    std::vector<boost::asio::ip::address> ips;
    std::size_t i = 0;
    for (const auto& item : v.as_array()) {
      const std::string where = std::string(key) + "[" + std::to_string(i++) + "]";
      if (!item.is_string()) return set("\"" + where + "\" must be a string");
      error_code ec;
      auto ip = boost::asio::ip::make_address(std::string(item.as_string()), ec);
      if (ec)
        return set("\"" + where + "\" is not an IP address: \"" + std::string(item.as_string()) +
                   "\"");
      ips.push_back(ip);
    }
    out = std::move(ips);
  }
  void boolean(const json::value& v, std::string_view key, bool& out) {
    if (!v.is_bool()) return set("\"" + std::string(key) + "\" must be true or false");
    out = v.as_bool();
  }
};

}  // namespace

void throw_exception_from_error(const config::error& e, const boost::source_location&) {
  throw std::runtime_error(e.message);
}

cfg_result config::parse(std::string_view text, std::string_view source) {
  boost::system::error_code jec;
  json::parse_options opts;
  opts.allow_comments = true;
  opts.allow_trailing_commas = true;
  json::value doc = json::parse(text, jec, {}, opts);
  if (jec) return fail(source, "not valid JSON: " + jec.message());
  if (!doc.is_object()) return fail(source, "the top level must be a JSON object");

  config c;
  reader r{source, std::nullopt};
  for (const auto& [k, v] : doc.as_object()) {
    std::string_view key = k;
    if (key == "hard_coded_contacts") {
      if (!v.is_array()) {
        r.set("\"hard_coded_contacts\" must be an array");
        break;
      }
      std::size_t i = 0;
      for (const auto& item : v.as_array()) {
        std::string where = "hard_coded_contacts[" + std::to_string(i++) + "]";
        contact ct;
        if (item.is_string()) {
          ct.endpoint = std::string(item.as_string());
        } else if (item.is_object()) {
          for (const auto& [ck, cv] : item.as_object()) {
            if (ck == "endpoint") {
              r.string(cv, where + ".endpoint", ct.endpoint);
            } else if (ck == "key") {
              std::string hex;
              r.string(cv, where + ".key", hex);
              auto pk = peer_key::parse(hex);
              if (!r.err && !pk) r.set("\"" + where + ".key\" must be a 128-hex-digit peer key");
              if (pk) ct.key = *pk;
            } else {
              r.set("unknown key \"" + where + "." + std::string(ck) + "\"");
            }
          }
        } else {
          r.set("\"" + where + "\" must be \"ip:port\" or {\"endpoint\", \"key\"}");
        }
        if (!r.err && !transport::parse_endpoint(ct.endpoint))
          r.set("\"" + where + ".endpoint\" is not an ip:port endpoint: \"" + ct.endpoint + "\"");
        c.hard_coded_contacts.push_back(std::move(ct));
      }
    } else if (key == "listen_address") {
      r.string(v, key, c.listen_address);
      error_code ec;
      if (!r.err) boost::asio::ip::make_address(c.listen_address, ec);
      if (!r.err && ec)
        r.set("\"listen_address\" is not an IP address: \"" + c.listen_address + "\"");
    } else if (key == "tcp_acceptor_port") {
      r.number(v, key, c.tcp_acceptor_port, 0, 65535);
    } else if (key == "network_name") {
      r.string(v, key, c.network_name);
      if (!r.err && (c.network_name.empty() || c.network_name.size() > 255))
        r.set("\"network_name\" must be 1 to 255 bytes");
    } else if (key == "max_message_size") {
      r.number(v, key, c.max_message_size, 1, 1u << 30);
    } else if (key == "send_queue_bytes") {
      r.number(v, key, c.send_queue_bytes, 1024, 1ull << 34);
    } else if (key == "event_queue_messages") {
      r.number(v, key, c.event_queue_messages, 1, 1u << 24);
    } else if (key == "event_queue_bytes") {
      r.number(v, key, c.event_queue_bytes, 1u << 16, std::size_t{1} << 40);
    } else if (key == "event_queue_other") {
      r.number(v, key, c.event_queue_other, 16, std::size_t{1} << 24);
    } else if (key == "max_connections") {
      r.number(v, key, c.max_connections, 1, 1u << 20);
    } else if (key == "max_pending_handshakes") {
      r.number(v, key, c.max_pending_handshakes, 1, 1u << 20);
    } else if (key == "handshakes_per_source") {
      r.number(v, key, c.handshakes_per_source, 0, 1u << 20);
    } else if (key == "heartbeat_interval_ms") {
      r.millis(v, key, c.heartbeat_interval);
    } else if (key == "heartbeat_timeout_ms") {
      r.millis(v, key, c.heartbeat_timeout);
    } else if (key == "handshake_timeout_ms") {
      r.millis(v, key, c.handshake_timeout);
    } else if (key == "connect_timeout_ms") {
      r.millis(v, key, c.connect_timeout);
    } else if (key == "accept_address_only") {
      r.boolean(v, key, c.accept_address_only);
    } else if (key == "address_only_per_second") {
      r.number(v, key, c.address_only_per_second, 0, 1u << 20);
    } else if (key == "role") {
      std::string role;
      r.string(v, key, role);
      if (role == "node") {
        c.role = node_role::node;
      } else if (role == "client") {
        c.role = node_role::client;
      } else if (!r.err) {
        r.set("\"role\" must be \"node\" or \"client\", not \"" + role + "\"");
      }
    } else if (key == "accept_bootstrap") {
      r.boolean(v, key, c.accept_bootstrap);
    } else if (key == "external_reachability_check") {
      r.boolean(v, key, c.external_reachability_check);
    } else if (key == "enable_utp") {
      r.boolean(v, key, c.enable_utp);
    } else if (key == "udp_port") {
      r.number(v, key, c.udp_port, 0, 65535);
    } else if (key == "enable_stun_server") {
      r.boolean(v, key, c.enable_stun_server);
    } else if (key == "stun_answer_floor") {
      r.number(v, key, c.stun_answer_floor, 0, 548);
    } else if (key == "enable_lan_discovery") {
      r.boolean(v, key, c.enable_lan_discovery);
    } else if (key == "lan_discovery_window_ms") {
      r.millis(v, key, c.lan_discovery_window);
    } else if (key == "service_discovery_port") {
      r.number(v, key, c.service_discovery_port, 1, 65535);
    } else if (key == "enable_port_mapping") {
      r.boolean(v, key, c.enable_port_mapping);
    } else if (key == "port_mapping_methods") {
      if (!v.is_array()) {
        r.set("\"port_mapping_methods\" must be an array of \"pcp\", \"natpmp\", \"upnp\"");
      } else {
        c.port_mapping_methods.clear();
        for (const auto& m : v.as_array()) {
          const bool known =
              m.is_string() &&
              (m.as_string() == "pcp" || m.as_string() == "natpmp" || m.as_string() == "upnp");
          if (!known) {
            r.set("\"port_mapping_methods\" may hold only \"pcp\", \"natpmp\" and \"upnp\", not " +
                  json::serialize(m));
            break;
          }
          c.port_mapping_methods.emplace_back(m.as_string());
        }
      }
    } else if (key == "port_mapping_gateway") {
      if (v.is_null()) {
        c.port_mapping_gateway.reset();
      } else {
        std::string text;
        r.string(v, key, text);
        error_code ec;
        auto a = boost::asio::ip::make_address(text, ec);
        if (!r.err && ec) r.set("\"port_mapping_gateway\" is not an IP address: \"" + text + "\"");
        if (!r.err) c.port_mapping_gateway = a;
      }
    } else if (key == "port_mapping_lifetime_s") {
      std::uint64_t sec = 0;
      r.number(v, key, sec, 120, 86400);
      if (!r.err) c.port_mapping_lifetime = seconds(sec);
    } else if (key == "port_mapping_threads") {
      r.number(v, key, c.port_mapping_threads, 1, 64);
    } else if (key == "stun_servers") {
      if (!v.is_array()) {
        r.set("\"stun_servers\" must be an array of \"ip:port\" strings");
      } else {
        c.stun_servers.clear();
        std::size_t i = 0;
        for (const auto& e : v.as_array()) {
          std::string where = "stun_servers[" + std::to_string(i++) + "]";
          std::string text;
          r.string(e, where, text);
          if (!r.err && !transport::parse_endpoint(text)) {
            std::string why = "\"";
            why += where;
            why += "\" is not an ip:port endpoint: \"";
            why += text;
            why += "\"";
            r.set(why);
          }
          if (r.err) break;
          c.stun_servers.push_back(std::move(text));
        }
      }
    } else if (key == "enable_relay") {
      r.boolean(v, key, c.enable_relay);
    } else if (key == "relay_max_circuits") {
      r.number(v, key, c.relay_max_circuits, 0, 100000);
    } else if (key == "relay_circuits_per_peer") {
      r.number(v, key, c.relay_circuits_per_peer, 0, 100000);
    } else if (key == "relay_circuit_bytes") {
      r.number(v, key, c.relay_circuit_bytes, 0, 1ull << 50);
    } else if (key == "enable_gossip") {
      r.boolean(v, key, c.enable_gossip);
    } else if (key == "gossip_interval_ms") {
      r.millis(v, key, c.gossip_interval);
    } else if (key == "gossip_max_records") {
      r.number(v, key, c.gossip_max_records, 1, 100000);
    } else if (key == "gossip_per_source") {
      r.number(v, key, c.gossip_per_source, 1, 100000);
    } else if (key == "gossip_messages_per_minute") {
      r.number(v, key, c.gossip_messages_per_minute, 1, 100000);
    } else if (key == "gossip_fanout") {
      r.number(v, key, c.gossip_fanout, 0, 1000);
    } else if (key == "gossip_dial_backs") {
      r.number(v, key, c.gossip_dial_backs, 0, 1000);
    } else if (key == "port_rotation_interval_ms") {
      std::uint64_t ms = 0;
      r.number(v, key, ms, 0, 24ull * 3600 * 1000);
      if (!r.err && ms != 0 && ms < 1000)
        r.set("\"port_rotation_interval_ms\" must be 0 (no rotation) or at least 1000");
      if (!r.err) c.port_rotation_interval = milliseconds(ms);
    } else if (key == "port_rotation_grace_ms") {
      r.millis(v, key, c.port_rotation_grace);
    } else if (key == "port_rotation_max_retiring") {
      r.number(v, key, c.port_rotation_max_retiring, 0, 64);
    } else if (key == "bootstrap_cache_path") {
      r.string(v, key, c.bootstrap_cache_path);
    } else if (key == "bootstrap_cache_size") {
      r.number(v, key, c.bootstrap_cache_size, 1, 100000);
    } else if (key == "bootstrap_cache_per_group") {
      r.number(v, key, c.bootstrap_cache_per_group, 1, 100000);
    } else if (key == "bootstrap_cache_per_source") {
      r.number(v, key, c.bootstrap_cache_per_source, 1, 100000);
    } else if (key == "bootstrap_cache_ttl_s") {
      r.seconds_(v, key, c.bootstrap_cache_ttl);
    } else if (key == "bootstrap_timeout_ms") {
      r.millis(v, key, c.bootstrap_timeout);
    } else if (key == "bootstrap_concurrency") {
      r.number(v, key, c.bootstrap_concurrency, 1, 256);
    } else if (key == "bootstrap_stagger_ms") {
      r.millis(v, key, c.bootstrap_stagger);
    } else if (key == "whitelisted_node_ips") {
      r.ip_list(v, key, c.whitelisted_node_ips);
    } else if (key == "whitelisted_client_ips") {
      r.ip_list(v, key, c.whitelisted_client_ips);
    } else {
      r.set("unknown key \"" + std::string(key) + "\"");
    }
    if (r.err) return *r.err;
  }
  if (c.heartbeat_timeout <= c.heartbeat_interval)
    return fail(source, "\"heartbeat_timeout_ms\" must be larger than \"heartbeat_interval_ms\"");
  return c;
}

cfg_result config::load(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return fail(path.string(), "cannot be read");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path.string());
}

std::string config::to_json() const {
  json::object o;
  json::array contacts;
  for (const auto& c : hard_coded_contacts) {
    json::object e;
    e["endpoint"] = c.endpoint;
    if (c.key) e["key"] = c.key->to_string();
    contacts.push_back(std::move(e));
  }
  auto ms = [](duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); };
  o["hard_coded_contacts"] = std::move(contacts);
  o["listen_address"] = listen_address;
  o["tcp_acceptor_port"] = tcp_acceptor_port;
  o["network_name"] = network_name;
  o["max_message_size"] = max_message_size;
  o["send_queue_bytes"] = send_queue_bytes;
  o["event_queue_messages"] = event_queue_messages;
  o["event_queue_bytes"] = event_queue_bytes;
  o["event_queue_other"] = event_queue_other;
  o["max_connections"] = max_connections;
  o["max_pending_handshakes"] = max_pending_handshakes;
  o["handshakes_per_source"] = handshakes_per_source;
  o["heartbeat_interval_ms"] = ms(heartbeat_interval);
  o["heartbeat_timeout_ms"] = ms(heartbeat_timeout);
  o["handshake_timeout_ms"] = ms(handshake_timeout);
  o["connect_timeout_ms"] = ms(connect_timeout);
  o["accept_address_only"] = accept_address_only;
  o["address_only_per_second"] = address_only_per_second;
  o["role"] = to_string(role);
  o["accept_bootstrap"] = accept_bootstrap;
  o["external_reachability_check"] = external_reachability_check;
  o["enable_utp"] = enable_utp;
  o["udp_port"] = udp_port;
  o["enable_stun_server"] = enable_stun_server;
  o["stun_answer_floor"] = stun_answer_floor;
  o["enable_lan_discovery"] = enable_lan_discovery;
  o["service_discovery_port"] = service_discovery_port;
  o["lan_discovery_window_ms"] = ms(lan_discovery_window);
  o["enable_port_mapping"] = enable_port_mapping;
  json::array methods;
  for (const auto& m : port_mapping_methods) methods.push_back(json::string(m));
  o["port_mapping_methods"] = std::move(methods);
  o["port_mapping_gateway"] =
      port_mapping_gateway ? json::value(port_mapping_gateway->to_string()) : json::value(nullptr);
  o["port_mapping_lifetime_s"] =
      std::chrono::duration_cast<std::chrono::seconds>(port_mapping_lifetime).count();
  o["port_mapping_threads"] = port_mapping_threads;
  json::array stun;
  for (const auto& e : stun_servers) stun.push_back(json::string(e));
  o["stun_servers"] = std::move(stun);
  o["enable_relay"] = enable_relay;
  o["relay_max_circuits"] = relay_max_circuits;
  o["relay_circuits_per_peer"] = relay_circuits_per_peer;
  o["relay_circuit_bytes"] = relay_circuit_bytes;
  o["enable_gossip"] = enable_gossip;
  o["gossip_interval_ms"] = ms(gossip_interval);
  o["port_rotation_interval_ms"] = ms(port_rotation_interval);
  o["port_rotation_grace_ms"] = ms(port_rotation_grace);
  o["port_rotation_max_retiring"] = port_rotation_max_retiring;
  o["gossip_max_records"] = gossip_max_records;
  o["gossip_per_source"] = gossip_per_source;
  o["gossip_messages_per_minute"] = gossip_messages_per_minute;
  o["gossip_fanout"] = gossip_fanout;
  o["gossip_dial_backs"] = gossip_dial_backs;
  o["bootstrap_cache_path"] = bootstrap_cache_path;
  o["bootstrap_cache_size"] = bootstrap_cache_size;
  o["bootstrap_cache_per_group"] = bootstrap_cache_per_group;
  o["bootstrap_cache_per_source"] = bootstrap_cache_per_source;
  o["bootstrap_cache_ttl_s"] =
      std::chrono::duration_cast<std::chrono::seconds>(bootstrap_cache_ttl).count();
  o["bootstrap_timeout_ms"] = ms(bootstrap_timeout);
  o["bootstrap_concurrency"] = bootstrap_concurrency;
  o["bootstrap_stagger_ms"] = ms(bootstrap_stagger);
  auto ips = [](const std::optional<std::vector<boost::asio::ip::address>>& l) -> json::value {
    if (!l) return nullptr;
    json::array a;
    for (const auto& ip : *l) a.push_back(json::string(ip.to_string()));
    return a;
  };
  o["whitelisted_node_ips"] = ips(whitelisted_node_ips);
  o["whitelisted_client_ips"] = ips(whitelisted_client_ips);
  return json::serialize(o);
}

std::vector<std::string> config::changed_keys(const config& other) const {
  const auto mine = json::parse(to_json()).as_object();
  const auto theirs = json::parse(other.to_json()).as_object();
  std::vector<std::string> out;
  for (const auto& [k, v] : mine) {
    const auto* w = theirs.if_contains(k);
    if (!w || *w != v) out.emplace_back(k);
  }
  return out;
}

}  // namespace crust
