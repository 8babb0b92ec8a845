// The NAT commands: stun (where this host's UDP socket appears to servers).
#include "common.hpp"

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

}  // namespace

int cmd_stun(const options& opt, const std::vector<std::string>& servers, int local_port) {
  std::vector<asio::ip::udp::endpoint> targets;
  for (const auto& s : servers) {
    auto ep = transport::parse_endpoint(s);
    if (!ep) {
      std::cerr << "crust-node: \"" << s << "\" is not ip:port\n";
      return 1;
    }
    targets.emplace_back(ep->address(), ep->port());
  }
  const auto bind_address = asio::ip::make_address(opt.address.empty() ? "::" : opt.address);
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    auto mux = transport::udp_mux::open(io.get_executor(),
                                        {bind_address, static_cast<std::uint16_t>(local_port)});
    if (!mux) {
      std::cerr << "crust-node: cannot open a UDP socket: " << mux.error().message() << "\n";
      co_return 1;
    }
    nat::stun_agent::options o;
    o.serve = false;  // only ask
    auto agent = nat::stun_agent::attach(*mux, o);
    asio::co_spawn(io, (*mux)->run(), asio::detached);
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
    (*mux)->close();
    co_return failures == 0 ? 0 : 1;
  });
}

}  // namespace crust_node
