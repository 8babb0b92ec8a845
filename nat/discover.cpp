#include "nat/discover.hpp"

#include "crust/base/log.hpp"
#include "crust/base/notifier.hpp"
#include "transports/endpoint.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include <algorithm>

namespace crust::nat {

namespace asio = boost::asio;

namespace {

udp_endpoint plain(const udp_endpoint& e) {
  return {transport::canonical(e.address()), e.port()};
}

// The socket's local endpoint as an observer would see it without a NAT:
// a wildcard bind reads as the route's source address toward `observer`.
udp_endpoint local_toward(const transport::udp_mux& mux, const udp_endpoint& observer) {
  const auto bound = mux.local_endpoint();
  if (!bound.address().is_unspecified()) return plain(bound);
  auto src = transport::source_address_toward(observer);
  return {src ? transport::canonical(*src) : bound.address(), bound.port()};
}

// A socket of its own beside the node's (on the same local address) that
// only asks; closed with its agent when it goes out of scope.
struct asker {
  std::shared_ptr<transport::udp_mux> mux;
  std::shared_ptr<stun_agent> agent;
  ~asker() {
    agent->close();
    mux->close();
  }
};

std::unique_ptr<asker> open_asker(transport::udp_mux& beside) {
  auto m = transport::udp_mux::open(beside.get_executor(), {beside.local_endpoint().address(), 0});
  if (!m) return nullptr;
  stun_agent::options ao;
  ao.serve = false;
  auto a = stun_agent::attach(*m, ao);
  asio::co_spawn(beside.get_executor(), (*m)->run(), asio::detached);
  return std::unique_ptr<asker>(new asker{*m, a});
}

}  // namespace

asio::awaitable<nat_report> discover(std::shared_ptr<transport::udp_mux> mux,
                                     std::shared_ptr<stun_agent> agent, discover_options o) {
  std::vector<observation> seen;
  std::vector<filtering_probe> filtering;
  std::optional<bool> hairpin;
  std::vector<udp_endpoint> notes_unanswered;

  // 1. The node's socket asks every observer (and RFC 5780 alternates).
  std::vector<udp_endpoint> queue;
  for (const auto& e : o.observers) queue.push_back(plain(e));
  std::optional<udp_endpoint> first_answered;
  std::optional<std::pair<udp_endpoint, udp_endpoint>> rfc5780;  // (primary, other)
  for (std::size_t i = 0; i < queue.size(); ++i) {
    const auto target = queue[i];
    auto r = co_await agent->binding(target, o.timing);
    const bool cancelled = co_await cancel_requested();
    if (cancelled) break;
    if (!r) {
      notes_unanswered.push_back(target);
      continue;
    }
    seen.push_back({0, local_toward(*mux, target), target, r->mapped});
    if (!first_answered) first_answered = target;
    if (r->other_address && !rfc5780) {
      const auto other = plain(*r->other_address);
      rfc5780 = {target, other};
      for (const auto& alt : {udp_endpoint(other.address(), target.port()), other})
        if (std::find(queue.begin(), queue.end(), alt) == queue.end()) queue.push_back(alt);
    }
  }

  // 2. Fresh sockets on the same address, one new mapping each.
  if (first_answered) {
    for (unsigned k = 1; k <= o.extra_sockets; ++k) {
      auto extra = open_asker(*mux);
      if (!extra) break;
      auto r = co_await extra->agent->binding(*first_answered, o.timing);
      const auto local = local_toward(*extra->mux, *first_answered);
      extra.reset();
      const bool cancelled = co_await cancel_requested();
      if (cancelled) break;
      if (r) seen.push_back({k, local, *first_answered, r->mapped});
    }
  }

  // 3. Hairpinning: our own server answers a request sent to our own
  //    external endpoint, if the NAT loops it back.
  const auto external =
      std::find_if(seen.begin(), seen.end(), [](const observation& x) { return x.socket == 0; });
  if (o.hairpin && external != seen.end() && agent->serving()) {
    auto r = co_await agent->binding(external->mapped, o.hairpin_timing);
    const bool cancelled = co_await cancel_requested();
    if (!cancelled) hairpin = r.has_value();
  }

  // 4. Filtering, where an RFC 5780 observer can answer from elsewhere:
  //    from a fresh socket that has only talked to the observer's primary
  //    endpoint, since the node's socket already opened the NAT toward
  //    the alternates in step 1.
  if (o.filtering && rfc5780) {
    if (auto fresh = open_asker(*mux)) {
      auto& a = fresh->agent;
      auto opened = co_await a->binding(rfc5780->first, o.timing);
      for (const auto& [addr, port] : {std::pair{true, true}, std::pair{false, true}}) {
        if (!opened) break;
        auto r = co_await a->binding(rfc5780->first, o.timing, {addr, port});
        const bool cancelled = co_await cancel_requested();
        if (cancelled) break;
        // A 420 means the server cannot: no evidence either way.
        if (!r && r.error() == make_error_code(errc::server_error)) continue;
        filtering.push_back({addr, port, r.has_value()});
      }
    }
  }

  auto report = classify(std::move(seen), filtering, hairpin);
  for (const auto& u : notes_unanswered)
    report.notes.push_back("no answer from " + transport::to_string({u.address(), u.port()}));
  co_return report;
}

}  // namespace crust::nat
