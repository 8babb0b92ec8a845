// Shared pieces of the crust-node commands.
#pragma once

#include "crust/config.hpp"
#include "crust/service.hpp"

#include <boost/asio/io_context.hpp>

#include <functional>
#include <string>
#include <vector>

namespace crust_node {

struct options {
  std::string key_file = "crust-node.key";
  std::string config_file;  // empty: defaults
  std::string network;      // overrides the config when set
  std::string address;      // overrides listen_address when set
  int port = -1;            // overrides tcp_acceptor_port when >= 0
  bool json = false;
  bool no_port_mapping = false;  // overrides enable_port_mapping when set
  int verbose = 0;
};

// Runs `body` on a fresh io_context until it returns; SIGINT/SIGTERM
// cancel it (it still gets to clean up). Returns its exit code.
int run_main(const std::function<boost::asio::awaitable<int>(boost::asio::io_context&)>& body);

// Loads the config and identity named by `opt`; prints a clear error and
// returns false on bad input.
bool load(const options& opt, crust::config& cfg, std::optional<crust::identity>& id);

// Parses "ip:port" server names; on a bad one, says which and fails.
crust::result<std::vector<boost::asio::ip::udp::endpoint>> parse_servers(
    const std::vector<std::string>& in);

int cmd_id(const options& opt);
int cmd_listen(const options& opt, bool echo, double seconds);
// `run --status IP:PORT`: where the status server listens ("" for none).
struct status_args {
  std::string at;
  bool remote = false;
};
int cmd_run(const options& opt, bool echo, double seconds, bool do_bootstrap,
            const status_args& status);
int cmd_bootstrap(const options& opt);
int cmd_lan(const options& opt, int window_ms);
int cmd_peers(const options& opt, double seconds, const std::string& find);
// info: start, optionally bootstrap, prepare a connection info and print it.
int cmd_info(const options& opt, const std::vector<std::string>& stun_servers, bool do_bootstrap,
             bool wire, double hold);
// rendezvous: exchange connection infos through files and connect through NATs.
struct rendezvous_args {
  std::string info_out, peer_info;
  std::vector<std::string> stun_servers;
  bool udp_only = false, tcp_only = false;
  int wait_seconds = 60;
  std::string message;
};
int cmd_rendezvous(const options& opt, const rendezvous_args& a);
// reach: connect to a peer through a mutual one (introduction, punching,
// relay fallback).
struct reach_args {
  std::string target;        // the peer's id
  std::string via, via_key;  // the mutual peer: ip:port, and its key (optional)
  bool relay_first = false, no_relay = false, udp_only = false, tcp_only = false;
  std::string message;  // sent, and expected back (the target echoes)
};
int cmd_reach(const options& opt, const reach_args& a);
int cmd_connect(const options& opt, const std::string& endpoint, const std::string& peer);
int cmd_send(const options& opt, const std::string& endpoint, const std::string& peer,
             const std::vector<std::string>& words, bool sign);
int cmd_chat(const options& opt, const std::string& endpoint, const std::string& peer);
// stun SERVER...: where this host's UDP socket appears to each server.
int cmd_stun(const options& opt, const std::vector<std::string>& servers, int local_port);
// nat OBSERVER...: the NAT in front of this host (nat/discover.hpp).
int cmd_nat(const options& opt, const std::vector<std::string>& observers, int local_port);
// portmap: ask the gateway for port mappings, hold them, delete them.
struct portmap_args {
  std::vector<int> tcp_ports, udp_ports;
  std::vector<std::string> methods;  // empty: pcp, natpmp, upnp
  std::string gateway;               // empty: the default route's
  int lifetime = 3600;
  double hold = 0;  // seconds to keep them (renewing); 0: map, report, delete
};
int cmd_portmap(const options& opt, const portmap_args& a);
int cmd_demo(int nodes, const std::string& network, bool json);

}  // namespace crust_node
