// crust-node: a command-line node, and the demo of a local Crust network.
#include "common.hpp"

#include "crust/base/log.hpp"

#include <CLI/CLI.hpp>

#include <chrono>
#include <iomanip>
#include <iostream>

int main(int argc, char** argv) {
  using namespace crust_node;
  CLI::App app{
      "crust-node: encrypted, authenticated peer-to-peer connections named by public key.\n"
      "Start with `crust-node demo` to see a local network of nodes connect and exchange\n"
      "encrypted messages; `crust-node <command> --help` explains each command."};
  app.require_subcommand(1);
  options opt;
  app.add_flag("-v,--verbose", opt.verbose, "log to stderr (-v info, -vv debug, -vvv trace)");

  auto node_options = [&](CLI::App* sub) {
    sub->add_option("-k,--key", opt.key_file, "identity file, created (mode 0600) if missing")
        ->capture_default_str();
    sub->add_option("-c,--config", opt.config_file, "JSON config file (see README: Configuration)");
    sub->add_option("-n,--network", opt.network,
                    "network name (peers of another network are refused)");
    sub->add_option("-a,--address", opt.address,
                    "address to listen on (default from config: 0.0.0.0)");
    sub->add_option("-p,--port", opt.port, "TCP port to listen on (0 = random)");
    sub->add_flag("--json", opt.json, "print JSON lines instead of text");
    sub->add_flag("--no-port-mapping", opt.no_port_mapping,
                  "ask the gateway for no port mapping (PCP, NAT-PMP, UPnP)");
  };

  auto* id = app.add_subcommand("id", "print this node's id and the peer key others dial it with");
  node_options(id);

  bool echo = false;
  double seconds = 0;
  auto* listen = app.add_subcommand("listen", "listen for peers and print what happens");
  node_options(listen);
  listen->add_flag("--echo", echo, "send every message back to its sender");
  listen->add_option("--for", seconds, "stop after this many seconds (default: until Ctrl-C)");

  bool no_bootstrap = false;
  auto* run = app.add_subcommand(
      "run",
      "run a long-lived node: bootstrap from its cache and contacts, accept peers, keep the "
      "cache (next to the key file unless the config names one), follow config edits");
  node_options(run);
  run->add_flag("--echo", echo, "send every message back to its sender");
  run->add_option("--for", seconds, "stop after this many seconds (default: until Ctrl-C)");
  run->add_flag("--no-bootstrap", no_bootstrap, "only accept peers; do not bootstrap at start");
  status_args status;
  run->add_option("--status", status.at,
                  "serve /status (JSON), /metrics (Prometheus) and a live page at IP:PORT "
                  "(port 0: any; loopback only unless --status-remote)");
  run->add_flag("--status-remote", status.remote,
                "allow --status on an address other than loopback (the page lists every peer)");

  auto* boot = app.add_subcommand(
      "bootstrap", "bootstrap once from the cache and the config's contacts, and report");
  node_options(boot);

  int window_ms = 500;
  auto* lan = app.add_subcommand(
      "lan", "ask the LAN who is there (a beacon on the service-discovery port) and list them");
  node_options(lan);
  lan->add_option("--window", window_ms, "how long to listen for answers (ms)")
      ->check(CLI::Range(10, 60000))
      ->capture_default_str();

  double peers_for = 5;
  std::string find_id;
  auto* peers_cmd = app.add_subcommand(
      "peers",
      "bootstrap, gossip for a while, and list the peers this node learnt of and from whom");
  node_options(peers_cmd);
  peers_cmd->add_option("--for", peers_for, "how long to gossip, in seconds")
      ->check(CLI::Range(0.0, 3600.0))
      ->capture_default_str();
  peers_cmd->add_option("--find", find_id,
                        "then look this peer id up through the network and connect to it");

  std::string endpoint, peer;
  auto* connect =
      app.add_subcommand("connect", "connect to a peer, print what it proved, disconnect");
  node_options(connect);
  connect->add_option("endpoint", endpoint, "ip:port of the peer")->required();
  connect->add_option("--peer", peer,
                      "the peer's 128-hex-digit key (omit for an address-only dial)");

  std::vector<std::string> words;
  bool sign = false;
  auto* send = app.add_subcommand("send", "connect to a peer and send one message");
  node_options(send);
  send->add_option("endpoint", endpoint, "ip:port of the peer")->required();
  send->add_option("message", words, "the message text")->required();
  send->add_option("--peer", peer, "the peer's 128-hex-digit key (omit for an address-only dial)");
  send->add_flag("--sign", sign, "sign the message so the receiver can prove who sent it");

  auto* chat = app.add_subcommand("chat",
                                  "exchange lines with a peer: one side runs `chat --port P`, the "
                                  "other `chat IP:P --peer KEY`");
  node_options(chat);
  chat->add_option("endpoint", endpoint, "ip:port of the peer (omit to wait for one)");
  chat->add_option("--peer", peer, "the peer's 128-hex-digit key (omit for an address-only dial)");

  std::vector<std::string> stun_servers;
  int stun_port = 0;
  // The UDP socket stun and nat ask from.
  auto udp_socket_options = [&](CLI::App* sub) {
    sub->add_option("-a,--address", opt.address, "local address to bind (default: all)");
    sub->add_option("--local-port", stun_port, "local UDP port (0 = random)")
        ->check(CLI::Range(0, 65535))
        ->capture_default_str();
  };
  auto* stun = app.add_subcommand(
      "stun",
      "ask STUN servers (any RFC 8489 server, or Crust nodes) where this host's UDP "
      "socket appears to be");
  stun->add_option("servers", stun_servers, "ip:port of each server")->required();
  udp_socket_options(stun);
  stun->add_flag("--json", opt.json, "print JSON lines instead of text");

  auto* nat_cmd = app.add_subcommand(
      "nat",
      "find out what NAT is in front of this host: mapping, port allocation, filtering, "
      "hairpinning (observers: Crust nodes or STUN servers; an RFC 5780 server allows "
      "every test)");
  nat_cmd->add_option("observers", stun_servers, "ip:port of each observer")->required();
  udp_socket_options(nat_cmd);
  nat_cmd->add_flag("--json", opt.json, "print the report as JSON");

  std::vector<std::string> info_stun;
  bool info_bootstrap = false, info_wire = false;
  double info_hold = 0;
  auto* info = app.add_subcommand(
      "info",
      "start a node and print its connection info (signed candidates, JSON), for a peer that "
      "connects through NATs");
  node_options(info);
  info->add_option("--stun", info_stun,
                   "ip:port of a STUN server to learn the reflexive address "
                   "from (repeatable; connected peers are asked too)");
  info->add_flag("--bootstrap", info_bootstrap,
                 "bootstrap first, so the peers reached serve as STUN servers");
  info->add_flag("--wire", info_wire, "print the binary (wire) form in hex instead");
  info->add_option("--hold", info_hold, "keep the node running this many seconds after printing")
      ->check(CLI::Range(0.0, 86400.0));

  rendezvous_args rv;
  auto* rendezvous = app.add_subcommand(
      "rendezvous",
      "connect to a peer through NATs: write this node's connection info to a file, read the "
      "peer's from another, race a UDP punch (µTP) against TCP dials");
  node_options(rendezvous);
  rendezvous->add_option("--info-out", rv.info_out, "where to write our connection info (JSON)")
      ->required();
  rendezvous->add_option("--peer-info", rv.peer_info, "the peer's connection info file (JSON)")
      ->required();
  rendezvous->add_option("--stun", rv.stun_servers, "ip:port of a STUN server (repeatable)");
  rendezvous->add_flag("--udp-only", rv.udp_only, "only punch UDP (µTP)");
  rendezvous->add_flag("--tcp-only", rv.tcp_only, "only dial TCP candidates");
  rendezvous->add_option("--wait", rv.wait_seconds, "seconds to wait for the peer's info file")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  rendezvous->add_option("--message", rv.message, "send this, and wait for the peer's message");

  reach_args ra;
  auto* reach = app.add_subcommand(
      "reach",
      "connect to a peer through a mutual one: swap connection infos through it, punch, and "
      "fall back to a relay circuit through it; prints the path that won");
  node_options(reach);
  reach->add_option("target", ra.target, "the peer's id (64 hex digits)")->required();
  reach->add_option("--via", ra.via, "ip:port of a peer both are connected to")->required();
  reach->add_option("--via-key", ra.via_key, "its 128-hex-digit key (omit for Noise XX)");
  reach->add_flag("--relay-first", ra.relay_first,
                  "go through a relay circuit at once; a direct path replaces it later");
  reach->add_flag("--no-relay", ra.no_relay, "direct paths only");
  reach->add_flag("--udp-only", ra.udp_only, "punch UDP (µTP) only");
  reach->add_flag("--tcp-only", ra.tcp_only, "TCP only");
  reach->add_option("--message", ra.message, "send this; the target must echo it back");

  portmap_args pm;
  auto* portmap = app.add_subcommand(
      "portmap",
      "ask the gateway for port mappings (PCP, NAT-PMP, UPnP-IGD, in that order), print what "
      "it granted or why not, hold them for a while (renewing) and delete them");
  portmap->add_option("--tcp", pm.tcp_ports, "a TCP port to map (repeatable)")
      ->check(CLI::Range(1, 65535));
  portmap->add_option("--udp", pm.udp_ports, "a UDP port to map (repeatable)")
      ->check(CLI::Range(1, 65535));
  portmap->add_option("--method", pm.methods,
                      "pcp, natpmp or upnp (repeatable; default all three)");
  portmap->add_option("--gateway", pm.gateway,
                      "the PCP/NAT-PMP gateway (default: the default route's)");
  portmap->add_option("--lifetime", pm.lifetime, "lease asked for, seconds")
      ->check(CLI::Range(120, 86400))
      ->capture_default_str();
  portmap
      ->add_option("--hold", pm.hold,
                   "keep the mappings this many seconds, renewing, then delete them (default: "
                   "delete at once)")
      ->check(CLI::Range(0.0, 86400.0));
  portmap->add_option("-a,--address", opt.address,
                      "the local address the mappings point at (default: the one facing the "
                      "gateway)");
  portmap->add_flag("--json", opt.json, "print JSON lines instead of text");

  int nodes = 5;
  std::string demo_network = "crust-demo";
  bool demo_json = false;
  auto* demo =
      app.add_subcommand("demo", "run a local network of nodes in this process and report");
  demo->add_option("-N,--nodes", nodes, "how many nodes")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  demo->add_option("-n,--network", demo_network, "network name")->capture_default_str();
  demo->add_flag("--json", demo_json, "print the report as JSON");

  CLI11_PARSE(app, argc, argv);

  if (opt.verbose > 0) {
    auto level = opt.verbose >= 3   ? crust::log_level::trace
                 : opt.verbose == 2 ? crust::log_level::debug
                                    : crust::log_level::info;
    // Each line says when, in seconds since the start, to time what happens.
    const auto t0 = crust::clock::now();
    crust::set_log_handler(
        [t0](crust::log_level l, std::string_view comp, std::string_view msg) {
          const double at = std::chrono::duration<double>(crust::clock::now() - t0).count();
          std::cerr << std::fixed << std::setprecision(3) << at << " [" << crust::to_string(l)
                    << "] " << comp << ": " << msg << "\n";
        },
        level);
  }

  try {
    if (*id) return cmd_id(opt);
    if (*listen) return cmd_listen(opt, echo, seconds);
    if (*run) return cmd_run(opt, echo, seconds, !no_bootstrap, status);
    if (*boot) return cmd_bootstrap(opt);
    if (*lan) return cmd_lan(opt, window_ms);
    if (*peers_cmd) return cmd_peers(opt, peers_for, find_id);
    if (*rendezvous) return cmd_rendezvous(opt, rv);
    if (*info) return cmd_info(opt, info_stun, info_bootstrap, info_wire, info_hold);
    if (*connect) return cmd_connect(opt, endpoint, peer);
    if (*send) return cmd_send(opt, endpoint, peer, words, sign);
    if (*chat) return cmd_chat(opt, endpoint, peer);
    if (*stun) return cmd_stun(opt, stun_servers, stun_port);
    if (*nat_cmd) return cmd_nat(opt, stun_servers, stun_port);
    if (*portmap) return cmd_portmap(opt, pm);
    if (*reach) return cmd_reach(opt, ra);
    if (*demo) return cmd_demo(nodes, demo_network, demo_json);
  } catch (const std::exception& e) {
    std::cerr << "crust-node: internal error: " << e.what() << "\n";
    return 70;
  }
  return 2;
}
