// crust-node portmap: ask the gateway for port mappings (PCP, NAT-PMP,
// UPnP-IGD), keep them for a while, then delete them; or say why none was
// granted.
#include "common.hpp"

#include "crust/base/task_group.hpp"
#include "nat/port_mapper.hpp"
#include "transports/endpoint.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/json.hpp>

#include <iostream>

namespace crust_node {

namespace asio = boost::asio;
namespace json = boost::json;
using namespace crust;

namespace {

json::object mapping_json(const char* what, const nat::port_mapping& m) {
  return json::object{
      {"event", what},
      {"method", nat::to_string(m.method)},
      {"protocol", nat::pmp::to_string(m.protocol)},
      {"internal", transport::to_string({m.internal_address, m.internal_port})},
      {"external", m.external_address.is_unspecified()
                       ? "?:" + std::to_string(m.external_port)
                       : transport::to_string({m.external_address, m.external_port})},
      {"gateway", m.gateway.to_string()},
      {"lifetime", m.lifetime}};
}

void say(const options& opt, const char* what, const nat::port_mapping& m) {
  if (opt.json)
    std::cout << json::serialize(mapping_json(what, m)) << std::endl;
  else
    std::cout << what << ": " << m.describe() << std::endl;
}

void say_failed(const options& opt, const nat::mapping_request& r,
                const std::vector<std::string>& notes) {
  if (opt.json) {
    json::array n;
    for (const auto& s : notes) n.push_back(json::string(s));
    std::cout << json::serialize(json::object{{"event", "failed"},
                                              {"protocol", nat::pmp::to_string(r.protocol)},
                                              {"port", r.internal_port},
                                              {"notes", std::move(n)}})
              << std::endl;
    return;
  }
  std::cout << "no mapping for " << nat::pmp::to_string(r.protocol) << " port " << r.internal_port
            << ":" << std::endl;
  for (const auto& s : notes) std::cout << "  " << s << std::endl;
}

}  // namespace

int cmd_portmap(const options& opt, const portmap_args& a) {
  nat::mapping_options o;
  if (!a.methods.empty()) o.methods.clear();
  for (const auto& m : a.methods) {
    auto method = nat::parse_mapping_method(m);
    if (!method) {
      std::cerr << "crust-node: unknown method \"" << m << "\" (pcp, natpmp or upnp)\n";
      return 1;
    }
    o.methods.push_back(*method);
  }
  if (!a.gateway.empty()) {
    error_code ec;
    o.gateway = asio::ip::make_address(a.gateway, ec);
    if (ec) {
      std::cerr << "crust-node: --gateway \"" << a.gateway << "\" is not an IP address\n";
      return 1;
    }
  }
  o.lifetime = static_cast<std::uint32_t>(a.lifetime);
  asio::ip::address internal;
  if (!opt.address.empty()) {
    error_code ec;
    internal = asio::ip::make_address(opt.address, ec);
    if (ec) {
      std::cerr << "crust-node: --address \"" << opt.address << "\" is not an IP address\n";
      return 1;
    }
  }
  std::vector<nat::mapping_request> wanted;
  for (int p : a.tcp_ports)
    wanted.push_back({nat::pmp::protocol::tcp, internal, static_cast<std::uint16_t>(p), 0});
  for (int p : a.udp_ports)
    wanted.push_back({nat::pmp::protocol::udp, internal, static_cast<std::uint16_t>(p), 0});
  if (wanted.empty()) {
    std::cerr << "crust-node: name a port to map (--tcp PORT, --udp PORT)\n";
    return 1;
  }
  return run_main([&](asio::io_context& io) -> asio::awaitable<int> {
    auto mapper = nat::port_mapper::create(io.get_executor(), o);
    int failed = 0;
    if (a.hold <= 0) {
      // Map, say so, delete.
      for (const auto& r : wanted) {
        auto out = co_await mapper->map(r);
        if (!out.mapping) {
          ++failed;
          say_failed(opt, r, out.notes);
          continue;
        }
        say(opt, "mapped", *out.mapping);
        auto removed = co_await mapper->remove(*out.mapping);
        if (removed)
          say(opt, "removed", *out.mapping);
        else
          std::cerr << "crust-node: could not remove " << out.mapping->describe() << ": "
                    << removed.error().message() << "\n";
      }
      co_return failed ? 1 : 0;
    }
    // Keep them for --hold seconds (renewing), reporting every change.
    std::size_t answered = 0;
    task_group keepers(io.get_executor());
    for (const auto& r : wanted) {
      auto report = [&, r](const nat::mapping_change& c) {
        switch (c.kind) {
          case nat::mapping_change::what::failed:
            ++failed;
            ++answered;
            say_failed(opt, r, c.notes);
            return;
          case nat::mapping_change::what::mapped:
            ++answered;
            break;
          case nat::mapping_change::what::renewed:
          case nat::mapping_change::what::lost:
            break;
        }
        if (c.mapping)
          say(opt,
              c.kind == nat::mapping_change::what::mapped    ? "mapped"
              : c.kind == nat::mapping_change::what::renewed ? "renewed"
                                                             : "lost",
              *c.mapping);
      };
      keepers.spawn(mapper->maintain(r, std::move(report)), "portmap", mapper);
    }
    timer t(io.get_executor());
    t.expires_after(std::chrono::duration_cast<duration>(std::chrono::duration<double>(a.hold)));
    (void)co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    keepers.cancel_all();
    co_await keepers.wait_all();
    for (const auto& m : mapper->active()) say(opt, "removing", m);
    co_await mapper->release_all();
    co_return failed || answered < wanted.size() ? 1 : 0;
  });
}

}  // namespace crust_node
