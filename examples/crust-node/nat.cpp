// The NAT commands: stun (where this host's UDP socket appears to servers)
// and nat (what kind of NAT is in front of it).
#include "common.hpp"

#include "crust/status.hpp"
#include "nat/discover.hpp"
#include "nat/stun_agent.hpp"
#include "transports/endpoint.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/json.hpp>

#include <iostream>

namespace crust_node {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace crust;

namespace {

std::string text(const asio::ip::udp::endpoint& e) {
  return transport::to_string({e.address(), e.port()});
}

// crust-node nat --json: the report as /status has it, after an "event" key.
json::object report_json(const nat::nat_report& r) {
  json::object out{{"event", "nat_report"}};
  auto parsed = json::parse(crust::nat_report_json(r));  // named: the loop borrows from it
  for (auto& kv : parsed.as_object()) out.emplace(kv.key(), kv.value());
  return out;
}

void print_report(const nat::nat_report& r) {
  std::cout << "mapping:      " << to_string(r.mapping) << "\n"
            << "allocation:   " << to_string(r.allocation);
  if (r.allocation == nat::allocation_behaviour::sequential)
    std::cout << " (step " << r.port_step << ")";
  std::cout << "\nfiltering:    " << to_string(r.filtering) << "\n"
            << "hairpinning:  " << (r.hairpinning ? (*r.hairpinning ? "yes" : "no") : "unknown")
            << "\nexternal:     ";
  for (std::size_t i = 0; i < r.external.size(); ++i)
    std::cout << (i ? ", " : "") << text(r.external[i]);
  std::cout << (r.external.empty() ? "none seen" : "") << "\n"
            << "direct UDP:   "
            << (r.punchable() ? "expected to work (hole punching)"
                              : "not expected without a relay or a port mapping")
            << "\n";
  for (const auto& o : r.observations)
    std::cout << "  socket " << o.socket << " " << text(o.local) << " -> " << text(o.observer)
              << " saw " << text(o.mapped) << "\n";
  for (const auto& n : r.notes) std::cout << "  note: " << n << "\n";
  std::cout << std::flush;
}

// A running UDP socket on `address` (`fallback` when empty) for one of
// these commands; nullptr, having said why, when there is none.
std::shared_ptr<transport::udp_mux> open_udp(asio::io_context& io, const std::string& address,
                                             const char* fallback, int port) {
  error_code ec;
  const auto at = asio::ip::make_address(address.empty() ? fallback : address, ec);
  if (ec) {
    std::cerr << "crust-node: \"" << address << "\" is not an IP address\n";
    return nullptr;
  }
  auto mux = transport::udp_mux::open(io.get_executor(), {at, static_cast<std::uint16_t>(port)});
  if (!mux) {
    std::cerr << "crust-node: cannot open a UDP socket: " << mux.error().message() << "\n";
    return nullptr;
  }
  asio::co_spawn(io, (*mux)->run(), asio::detached);
  return *mux;
}

}  // namespace

crust::result<std::vector<asio::ip::udp::endpoint>> parse_servers(
    const std::vector<std::string>& in) {
  std::vector<asio::ip::udp::endpoint> out;
  for (const auto& s : in) {
    auto ep = transport::parse_endpoint(s);
    if (!ep) {
      std::cerr << "crust-node: \"" << s << "\" is not ip:port\n";
      return ep.error();
    }
    out.emplace_back(ep->address(), ep->port());
  }
  return out;
}

int cmd_nat(const options& opt, const std::vector<std::string>& servers, int local_port) {
  auto targets = parse_servers(servers);
  if (!targets) return 1;
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    auto mux = open_udp(io, opt.address, "0.0.0.0", local_port);
    if (!mux) co_return 1;
    // It serves too: the hairpinning test sends to itself through the NAT.
    auto agent = nat::stun_agent::attach(mux);
    nat::discover_options o;
    o.observers = *targets;
    auto report = co_await nat::discover(mux, agent, o);
    if (opt.json)
      std::cout << json::serialize(report_json(report)) << std::endl;
    else
      print_report(report);
    agent->close();
    mux->close();
    co_return report.mapping == nat::mapping_behaviour::unknown ? 1 : 0;
  });
}

int cmd_stun(const options& opt, const std::vector<std::string>& servers, int local_port) {
  auto parsed = parse_servers(servers);
  if (!parsed) return 1;
  const auto& targets = *parsed;
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    auto mux = open_udp(io, opt.address, "::", local_port);
    if (!mux) co_return 1;
    nat::stun_agent::options o;
    o.serve = false;  // only ask
    auto agent = nat::stun_agent::attach(mux, o);
    int failures = 0;
    std::optional<asio::ip::udp::endpoint> first;
    bool varies = false;
    for (const auto& t : targets) {
      auto r = co_await agent->binding(t);
      if (!r) {
        ++failures;
        if (opt.json)
          std::cout << json::serialize(json::object{{"event", "stun_failed"},
                                                    {"server", text(t)},
                                                    {"error", r.error().message()}})
                    << std::endl;
        else
          std::cout << text(t) << ": " << r.error().message() << std::endl;
        continue;
      }
      if (!first) first = r->mapped;
      varies = varies || r->mapped != *first;
      const double rtt_ms =
          r->rtt ? std::chrono::duration<double, std::milli>(*r->rtt).count() : -1;
      if (opt.json) {
        json::object j{{"event", "stun_mapped"},    {"server", text(t)},
                       {"mapped", text(r->mapped)}, {"answered_from", text(r->server)},
                       {"software", r->software},   {"requests", r->requests}};
        if (r->rtt) j["rtt_ms"] = rtt_ms;
        std::cout << json::serialize(j) << std::endl;
      } else {
        std::cout << text(t) << ": mapped " << text(r->mapped);
        if (r->rtt) std::cout << ", rtt " << rtt_ms << " ms";
        if (!r->software.empty()) std::cout << ", server \"" << r->software << "\"";
        std::cout << std::endl;
      }
    }
    if (!opt.json && targets.size() > 1 && first)
      std::cout << (varies ? "the mapping differs between servers (address-dependent: a "
                             "symmetric NAT, or servers that see different interfaces)"
                           : "the same mapping at every server that answered")
                << std::endl;
    agent->close();
    mux->close();
    co_return failures == 0 ? 0 : 1;
  });
}

}  // namespace crust_node
