#include "nat/port_mapper.hpp"

#include "crust/base/log.hpp"
#include "crust/base/notifier.hpp"
#include "crust/secure/crypto.hpp"
#include "transports/endpoint.hpp"
#include "transports/udp.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <miniupnpc/miniupnpc.h>
#include <miniupnpc/upnpcommands.h>
#include <miniupnpc/upnperrors.h>

#include <algorithm>
#include <fstream>
#include <list>
#include <sstream>

namespace crust::nat {

namespace asio = boost::asio;
namespace ip = asio::ip;
using namespace std::chrono_literals;

namespace {

std::string endpoint_text(const ip::address& a, std::uint16_t port) {
  std::ostringstream os;
  if (a.is_v6()) {
    os << '[' << a << "]:" << port;
  } else {
    os << a << ':' << port;
  }
  return os.str();
}

std::string seconds_text(duration d) {
  std::ostringstream os;
  os << static_cast<double>(std::chrono::duration_cast<milliseconds>(d).count()) / 1000.0 << " s";
  return os.str();
}

// What miniupnpc found, and its answers; touched only on the pool's strand.
struct upnp_state {
  bool tried = false;
  bool found = false;
  std::string failure;  // why there is no IGD, once tried
  UPNPUrls urls{};
  IGDdatas data{};
  std::string lan_address;
  std::string gateway;  // the IGD's host, from its control URL
  upnp_state() = default;
  upnp_state(const upnp_state&) = delete;
  upnp_state& operator=(const upnp_state&) = delete;
  ~upnp_state() {
    if (found) FreeUPNPUrls(&urls);
  }
};

// The host part of "http://198.19.1.1:5000/ctl/IPConn".
std::string url_host(const char* url) {
  if (!url) return {};
  std::string_view s(url);
  if (auto p = s.find("://"); p != std::string_view::npos) s.remove_prefix(p + 3);
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    return std::string(s.substr(1, close == std::string_view::npos ? 0 : close - 1));
  }
  return std::string(s.substr(0, s.find_first_of(":/")));
}

// Finds the IGD once. Blocking; on the strand.
void upnp_discover(upnp_state& u, const mapping_options& o) {
  if (u.tried) return;
  u.tried = true;
  char lan[64] = {};
  int r = 0;
  if (!o.upnp_root_url.empty()) {
    r = UPNP_GetIGDFromUrl(o.upnp_root_url.c_str(), &u.urls, &u.data, lan, sizeof lan);
    if (r != 1) {
      u.failure = "no IGD description at " + o.upnp_root_url;
      return;
    }
  } else {
    int err = 0;
    // One search, for IGD:1 (IGD:2 devices answer it too): upnpDiscover()
    // would wait upnp_discover_ms for each of four types in turn.
    UPNPDev* devs =
        upnpDiscoverDevice("urn:schemas-upnp-org:device:InternetGatewayDevice:1",
                           o.upnp_discover_ms, nullptr, nullptr, UPNP_LOCAL_PORT_ANY, 0, 2, &err);
    if (!devs) {
      u.failure = "no UPnP device answered SSDP in " + std::to_string(o.upnp_discover_ms) + " ms";
      return;
    }
    r = UPNP_GetValidIGD(devs, &u.urls, &u.data, lan, sizeof lan);
    freeUPNPDevlist(devs);
    // 2: an IGD that says it is not connected. miniupnpd says so when its
    // WAN address is a reserved one (as in the lab): it still maps.
    if (r != 1 && r != 2) {
      if (r != 0) FreeUPNPUrls(&u.urls);
      u.failure = r == 0 ? "UPnP devices answered, none of them an IGD"
                         : "a UPnP device answered that is not an IGD";
      return;
    }
  }
  u.found = true;
  u.lan_address = lan;
  u.gateway = url_host(u.urls.controlURL);
}

std::string upnp_error(int code) {
  const char* s = strupnperror(code);
  return std::to_string(code) + " (" + (s ? s : "unknown") + ")";
}

// The outcome of one blocking UPnP call, carried back to the caller.
struct upnp_answer {
  std::optional<port_mapping> mapping;
  std::string failure;
};

upnp_answer upnp_add(upnp_state& u, const mapping_options& o, const mapping_request& r,
                     std::uint16_t external, std::uint32_t lifetime) {
  upnp_discover(u, o);
  if (!u.found) return {std::nullopt, u.failure};
  const char* proto = r.protocol == pmp::protocol::tcp ? "TCP" : "UDP";
  const std::string client =
      r.internal_address.is_unspecified() ? u.lan_address : r.internal_address.to_string();
  const std::string in_port = std::to_string(r.internal_port);
  std::string ext_port = std::to_string(external ? external : r.internal_port);
  std::string lease = std::to_string(lifetime);
  const char* ctl = u.urls.controlURL;
  const char* svc = u.data.first.servicetype;
  int e = UPNP_AddPortMapping(ctl, svc, ext_port.c_str(), in_port.c_str(), client.c_str(), "crust",
                              proto, nullptr, lease.c_str());
  if (e == 725) {  // OnlyPermanentLeasesSupported
    lease = "0";
    e = UPNP_AddPortMapping(ctl, svc, ext_port.c_str(), in_port.c_str(), client.c_str(), "crust",
                            proto, nullptr, lease.c_str());
  }
  if (e == 718) {  // ConflictInMappingEntry: someone else has that port; let the IGD pick
    char reserved[8] = {};
    e = UPNP_AddAnyPortMapping(ctl, svc, ext_port.c_str(), in_port.c_str(), client.c_str(), "crust",
                               proto, nullptr, lease.c_str(), reserved);
    if (e == 0) ext_port = reserved;
  }
  if (e != 0) return {std::nullopt, "AddPortMapping refused: " + upnp_error(e)};
  port_mapping m;
  m.method = mapping_method::upnp;
  m.protocol = r.protocol;
  boost::system::error_code ec;
  m.internal_address = ip::make_address(client, ec);
  m.internal_port = r.internal_port;
  m.external_port = static_cast<std::uint16_t>(std::stoul(ext_port));
  m.lifetime = static_cast<std::uint32_t>(std::stoul(lease));
  char ext[40] = {};
  if (UPNP_GetExternalIPAddress(ctl, svc, ext) == 0) m.external_address = ip::make_address(ext, ec);
  m.gateway = ip::make_address(u.gateway, ec);
  return {m, {}};
}

std::string upnp_delete(upnp_state& u, const port_mapping& m) {
  if (!u.found) return "no IGD";
  const std::string ext_port = std::to_string(m.external_port);
  const int e =
      UPNP_DeletePortMapping(u.urls.controlURL, u.data.first.servicetype, ext_port.c_str(),
                             m.protocol == pmp::protocol::tcp ? "TCP" : "UDP", nullptr);
  return e == 0 ? std::string() : "DeletePortMapping refused: " + upnp_error(e);
}

}  // namespace

struct port_mapper::state {
  asio::any_io_executor ex;
  mapping_options o;
  std::unique_ptr<asio::thread_pool> own_pool;
  asio::thread_pool* pool = nullptr;
  std::optional<asio::strand<asio::thread_pool::executor_type>> strand;
  std::shared_ptr<upnp_state> upnp = std::make_shared<upnp_state>();
  std::list<port_mapping> active;

  state(const asio::any_io_executor& e, mapping_options opts, asio::thread_pool* p)
      : ex(e), o(std::move(opts)), pool(p) {}

  ~state() {
    if (own_pool) own_pool->join();
  }

  std::optional<ip::address> gateway() const {
    if (o.gateway) return o.gateway;
    return default_gateway();
  }

  // Runs `f` on the strand and resumes the caller on its own executor
  // with what it returned.
  template <class R, class F>
  asio::awaitable<R> on_pool(F f) {
    auto& st = upnp_strand();
    auto initiation = [&st](auto handler, F fn) {
      asio::post(st, [fn = std::move(fn), h = std::move(handler)]() mutable {
        R value = fn();
        auto back = asio::get_associated_executor(h);
        asio::post(back, [h = std::move(h), value = std::move(value)]() mutable {
          std::move(h)(std::move(value));
        });
      });
    };
    auto value = co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(R)>(
        std::move(initiation), asio::use_awaitable, std::move(f));
    co_return value;
  }

  // The pool and its strand, made at the first UPnP call: a mapper that
  // only speaks PCP and NAT-PMP starts no threads.
  asio::thread_pool& the_pool() {
    if (!pool) {
      own_pool = std::make_unique<asio::thread_pool>(std::max<std::size_t>(o.threads, 1));
      pool = own_pool.get();
    }
    return *pool;
  }
  asio::strand<asio::thread_pool::executor_type>& upnp_strand() {
    if (!strand) strand.emplace(asio::make_strand(the_pool().get_executor()));
    return *strand;
  }

  // One PCP or NAT-PMP exchange: sends `request` to the gateway, with
  // retransmissions, until an answer that `fits` arrives.
  asio::awaitable<result<pmp::answer>> exchange(const ip::address& gw, const ip::address& local,
                                                bytes request,
                                                std::function<bool(const pmp::answer&)> fits,
                                                ip::address* client = nullptr) {
    using namespace asio::experimental::awaitable_operators;
    const ip::udp::endpoint to(gw, o.gateway_port);
    ip::udp::socket sock(ex);
    boost::system::error_code ec;
    sock.open(to.protocol(), ec);
    if (!ec && !local.is_unspecified()) sock.bind({local, 0}, ec);
    if (!ec) sock.connect(to, ec);
    if (ec) co_return ec;
    if (client) *client = transport::canonical(sock.local_endpoint().address());
    if (client && request.size() >= 24 && request[0] == 2) {
      // PCP wants the client's own address in the request.
      auto v6 =
          client->is_v4() ? ip::make_address_v6(ip::v4_mapped, client->to_v4()) : client->to_v6();
      auto b = v6.to_bytes();
      std::copy(b.begin(), b.end(), request.begin() + 8);
    }
    std::array<byte, pmp::max_message + 4> buf{};
    duration wait = o.pmp_first_wait;
    for (int attempt = 0; attempt < std::max(o.pmp_tries, 1); ++attempt) {
      co_await sock.async_send(asio::buffer(request), asio::as_tuple(asio::use_awaitable));
      timer t(ex, clock::now() + wait);
      const time_point until = clock::now() + wait;
      while (clock::now() < until) {
        t.expires_at(until);
        auto got =
            co_await (sock.async_receive(asio::buffer(buf), asio::as_tuple(asio::use_awaitable)) ||
                      t.async_wait(asio::as_tuple(asio::use_awaitable)));
        const bool cancelled = co_await cancel_requested();
        if (cancelled) co_return make_error_code(errc::cancelled);
        if (got.index() == 1) break;  // this try's wait is over
        auto [rec, n] = std::get<0>(got);
        if (rec == asio::error::connection_refused)
          co_return make_error_code(asio::error::connection_refused);
        if (rec) co_return rec;
        auto a = pmp::parse(byte_span(buf.data(), n));
        if (a && fits(*a)) co_return *a;
      }
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return make_error_code(errc::cancelled);
      wait *= 2;
    }
    co_return make_error_code(errc::timed_out);
  }

  duration pmp_total() const {
    duration total{}, w = o.pmp_first_wait;
    for (int i = 0; i < std::max(o.pmp_tries, 1); ++i, w *= 2) total += w;
    return total;
  }

  port_mapping from_answer(const pmp::answer& a, mapping_method m, const mapping_request& r,
                           const ip::address& gw, const ip::address& client) const {
    port_mapping pm;
    pm.method = m;
    pm.protocol = r.protocol;
    pm.internal_address = client;
    pm.internal_port = r.internal_port;
    pm.external_port = a.external_port;
    pm.external_address = a.external;
    pm.lifetime = a.lifetime;
    pm.granted = clock::now();
    pm.gateway = gw;
    pm.id = a.id;
    return pm;
  }

  // PCP MAP (lifetime 0 deletes). `id` is the nonce to use.
  asio::awaitable<result<port_mapping>> pcp(const ip::address& gw, const mapping_request& r,
                                            std::uint16_t external, std::uint32_t lifetime,
                                            const pmp::nonce& id, pmp::answer* refusal) {
    pmp::map_request q;
    q.proto = r.protocol;
    q.internal_port = r.internal_port;
    q.suggested_external_port = external;
    q.lifetime = lifetime;
    q.id = id;
    ip::address client;
    auto a = co_await exchange(
        gw, r.internal_address, pmp::encode_pcp_map(q),
        [q](const pmp::answer& x) {
          return pmp::answers(x, q, true) || pmp::is_natpmp_version_refusal(x);
        },
        &client);
    if (!a) co_return a.error();
    if (a->result != 0) {
      if (refusal) *refusal = *a;
      co_return make_error_code(errc::server_error);
    }
    co_return from_answer(*a, mapping_method::pcp, r, gw, client);
  }

  asio::awaitable<result<port_mapping>> natpmp(const ip::address& gw, const mapping_request& r,
                                               std::uint16_t external, std::uint32_t lifetime,
                                               pmp::answer* refusal) {
    pmp::map_request q;
    q.proto = r.protocol;
    q.internal_port = r.internal_port;
    q.suggested_external_port = external;
    q.lifetime = lifetime;
    ip::address client;
    auto a = co_await exchange(
        gw, r.internal_address, pmp::encode_natpmp_map(q),
        [q](const pmp::answer& x) { return pmp::answers(x, q, false); }, &client);
    if (!a) co_return a.error();
    if (a->result != 0) {
      if (refusal) *refusal = *a;
      co_return make_error_code(errc::server_error);
    }
    auto m = from_answer(*a, mapping_method::natpmp, r, gw, client);
    if (lifetime != 0) {
      // NAT-PMP's map answer has no address: ask for it (best effort).
      auto addr = co_await exchange(
          gw, r.internal_address, pmp::encode_natpmp_address_request(),
          [](const pmp::answer& x) { return x.kind == pmp::answer_kind::natpmp_address; });
      if (addr && addr->result == 0) m.external_address = addr->external;
    }
    co_return m;
  }

  asio::awaitable<upnp_answer> upnp_map(const mapping_request& r, std::uint16_t external,
                                        std::uint32_t lifetime) {
    // The function is a named variable: GCC 12 destroys a lambda
    // temporary inside a co_await expression twice (its captures too).
    auto call = [u = upnp, opts = o, r, external, lifetime] {
      return upnp_add(*u, opts, r, external, lifetime);
    };
    auto answer = co_await on_pool<upnp_answer>(std::move(call));
    co_return answer;
  }
};

std::string_view to_string(mapping_method m) noexcept {
  switch (m) {
    case mapping_method::pcp:
      return "pcp";
    case mapping_method::natpmp:
      return "natpmp";
    case mapping_method::upnp:
      return "upnp";
  }
  return "?";
}

std::optional<mapping_method> parse_mapping_method(std::string_view s) noexcept {
  if (s == "pcp") return mapping_method::pcp;
  if (s == "natpmp" || s == "nat-pmp") return mapping_method::natpmp;
  if (s == "upnp" || s == "igd") return mapping_method::upnp;
  return std::nullopt;
}

std::string port_mapping::describe() const {
  std::ostringstream os;
  os << pmp::to_string(protocol) << ' ' << endpoint_text(internal_address, internal_port) << " -> "
     << (external_address.is_unspecified() ? std::string("?:") + std::to_string(external_port)
                                           : endpoint_text(external_address, external_port))
     << " (" << to_string(method) << " via " << gateway << ", ";
  if (lifetime == 0) {
    os << "permanent)";
  } else {
    os << lifetime << " s)";
  }
  return os.str();
}

std::optional<ip::address> default_gateway() {
  std::ifstream f("/proc/net/route");
  std::string line;
  std::getline(f, line);  // the header
  while (std::getline(f, line)) {
    std::istringstream is(line);
    std::string iface, dest, gw;
    unsigned flags = 0;
    if (!(is >> iface >> dest >> gw >> std::hex >> flags)) continue;
    constexpr unsigned rtf_up = 0x1, rtf_gateway = 0x2;
    if (dest != "00000000" || (flags & (rtf_up | rtf_gateway)) != (rtf_up | rtf_gateway)) continue;
    const auto v = static_cast<std::uint32_t>(std::stoul(gw, nullptr, 16));
    // The file holds the address in the host's byte order (little-endian here).
    const std::uint32_t host =
        ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | (v >> 24);
    return ip::address_v4(host);
  }
  return std::nullopt;
}

std::shared_ptr<port_mapper> port_mapper::create(const asio::any_io_executor& ex, mapping_options o,
                                                 asio::thread_pool* pool) {
  return std::shared_ptr<port_mapper>(
      new port_mapper(std::make_unique<state>(ex, std::move(o), pool)));
}

port_mapper::port_mapper(std::unique_ptr<state> s) : s_(std::move(s)) {}
port_mapper::~port_mapper() = default;

asio::thread_pool& port_mapper::pool() {
  return s_->the_pool();
}
const mapping_options& port_mapper::options() const noexcept {
  return s_->o;
}

std::vector<port_mapping> port_mapper::active() const {
  return {s_->active.begin(), s_->active.end()};
}

asio::awaitable<mapping_outcome> port_mapper::map(mapping_request r) {
  auto self = shared_from_this();
  mapping_outcome out;
  const std::uint16_t suggested =
      r.suggested_external_port ? r.suggested_external_port : r.internal_port;
  auto gw = s_->gateway();
  // Set when PCP got no answer at all: NAT-PMP uses the same port.
  bool port_silent = false;
  bool natpmp_now = false;  // the gateway said it speaks NAT-PMP only
  for (auto m : s_->o.methods) {
    const bool cancelled = co_await cancel_requested();
    if (cancelled) break;
    if (m == mapping_method::upnp) {
      auto u = co_await s_->upnp_map(r, suggested, s_->o.lifetime);
      if (u.mapping) {
        u.mapping->granted = clock::now();
        out.mapping = u.mapping;
        co_return out;
      }
      out.notes.push_back("upnp: " + u.failure);
      continue;
    }
    if (!gw) {
      out.notes.push_back(std::string(to_string(m)) + ": no default route, so no gateway to ask");
      continue;
    }
    const auto where = endpoint_text(*gw, s_->o.gateway_port);
    if (m == mapping_method::natpmp && port_silent && !natpmp_now) {
      out.notes.push_back("natpmp: not tried, " + where + " did not answer PCP");
      continue;
    }
    pmp::answer refusal;
    result<port_mapping> got = make_error_code(errc::timed_out);
    if (m == mapping_method::pcp) {
      pmp::nonce id;
      secure::random_fill(id);
      got = co_await s_->pcp(*gw, r, suggested, s_->o.lifetime, id, &refusal);
    } else {
      got = co_await s_->natpmp(*gw, r, suggested, s_->o.lifetime, &refusal);
    }
    if (got) {
      out.mapping = *got;
      co_return out;
    }
    const auto ec = got.error();
    std::string note = std::string(to_string(m)) + ": ";
    if (ec == errc::server_error) {
      if (m == mapping_method::pcp && pmp::is_natpmp_version_refusal(refusal)) {
        natpmp_now = true;
        note += where + " speaks NAT-PMP only";
      } else {
        note += where + " refused: " +
                std::string(m == mapping_method::pcp ? pmp::pcp_result_name(refusal.result)
                                                     : pmp::natpmp_result_name(refusal.result)) +
                " (" + std::to_string(refusal.result) + ")";
      }
    } else if (ec == errc::timed_out) {
      note += "no answer from " + where + " in " + seconds_text(s_->pmp_total());
      if (m == mapping_method::pcp) port_silent = true;
    } else if (ec == asio::error::connection_refused) {
      note += "nothing listens on " + where + " (port unreachable)";
      if (m == mapping_method::pcp) port_silent = true;
    } else {
      note += where + ": " + ec.message();
    }
    out.notes.push_back(std::move(note));
  }
  co_return out;
}

asio::awaitable<result<port_mapping>> port_mapper::renew(const port_mapping& m) {
  auto self = shared_from_this();
  mapping_request r{m.protocol, m.internal_address, m.internal_port, m.external_port};
  switch (m.method) {
    case mapping_method::pcp: {
      auto got = co_await s_->pcp(m.gateway, r, m.external_port, s_->o.lifetime, m.id, nullptr);
      co_return got;
    }
    case mapping_method::natpmp: {
      auto got = co_await s_->natpmp(m.gateway, r, m.external_port, s_->o.lifetime, nullptr);
      co_return got;
    }
    case mapping_method::upnp: {
      auto u = co_await s_->upnp_map(r, m.external_port, s_->o.lifetime);
      if (!u.mapping) {
        CRUST_LOG(info, "portmap", "upnp renewal of " << m.describe() << ": " << u.failure);
        co_return make_error_code(errc::server_error);
      }
      u.mapping->granted = clock::now();
      co_return *u.mapping;
    }
  }
  co_return make_error_code(errc::server_error);
}

asio::awaitable<result<void>> port_mapper::remove(const port_mapping& m) {
  auto self = shared_from_this();
  mapping_request r{m.protocol, m.internal_address, m.internal_port, m.external_port};
  result<port_mapping> got = make_error_code(errc::server_error);
  switch (m.method) {
    case mapping_method::pcp:
      got = co_await s_->pcp(m.gateway, r, m.external_port, 0, m.id, nullptr);
      break;
    case mapping_method::natpmp:
      got = co_await s_->natpmp(m.gateway, r, 0, 0, nullptr);
      break;
    case mapping_method::upnp: {
      auto u = s_->upnp;
      auto call = [u, m] { return upnp_delete(*u, m); };  // named: see upnp_map
      auto failure = co_await s_->on_pool<std::string>(std::move(call));
      if (!failure.empty()) {
        CRUST_LOG(info, "portmap", "removing " << m.describe() << ": " << failure);
        co_return make_error_code(errc::server_error);
      }
      co_return result<void>{};
    }
  }
  if (!got) co_return got.error();
  co_return result<void>{};
}

asio::awaitable<void> port_mapper::maintain(mapping_request r,
                                            std::function<void(const mapping_change&)> report) {
  auto self = shared_from_this();
  duration backoff = 30s;
  bool first = true;
  timer t(s_->ex);
  for (;;) {
    auto got = co_await map(r);
    {
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return;
    }
    if (!got.mapping) {
      if (first) report({mapping_change::what::failed, r, std::nullopt, got.notes});
      first = false;
      t.expires_after(backoff);
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return;
      backoff = std::min<duration>(backoff * 2, 10min);
      continue;
    }
    first = false;
    backoff = 30s;
    auto it = s_->active.insert(s_->active.end(), *got.mapping);
    report({mapping_change::what::mapped, r, *it, {}});
    for (;;) {
      // Renew at half the lease (a permanent UPnP one is checked hourly).
      const duration half = it->lifetime == 0 ? duration(1h) : duration(seconds(it->lifetime)) / 2;
      t.expires_at(it->granted + half);
      co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return;  // the mapping stays for release_all()
      auto renewed = co_await renew(*it);
      const bool cancelled2 = co_await cancel_requested();
      if (cancelled2) co_return;
      if (!renewed) {
        port_mapping old = *it;
        s_->active.erase(it);
        report(
            {mapping_change::what::lost, r, old, {"renewal failed: " + renewed.error().message()}});
        break;
      }
      *it = *renewed;
      report({mapping_change::what::renewed, r, *it, {}});
    }
  }
}

asio::awaitable<void> port_mapper::release_all(duration bound) {
  std::vector<port_mapping> all(s_->active.begin(), s_->active.end());
  s_->active.clear();
  co_await release_list(std::move(all), bound);
}

asio::awaitable<void> port_mapper::release(pmp::protocol protocol, std::uint16_t internal_port,
                                           duration bound) {
  std::vector<port_mapping> these;
  for (auto it = s_->active.begin(); it != s_->active.end();) {
    if (it->protocol == protocol && it->internal_port == internal_port) {
      these.push_back(*it);
      it = s_->active.erase(it);
    } else {
      ++it;
    }
  }
  co_await release_list(std::move(these), bound);
}

asio::awaitable<void> port_mapper::release_list(std::vector<port_mapping> all, duration bound) {
  using namespace asio::experimental::awaitable_operators;
  auto self = shared_from_this();
  if (all.empty()) co_return;
  // One coroutine per mapping, all bounded together.
  auto left = std::make_shared<std::size_t>(all.size());
  auto done = std::make_shared<notifier>(s_->ex);
  for (auto& m : all) {
    asio::co_spawn(
        s_->ex,
        [self, m, left, done]() -> asio::awaitable<void> {
          auto r = co_await self->remove(m);
          if (!r)
            CRUST_LOG(info, "portmap",
                      "could not remove " << m.describe() << ": " << r.error().message());
          else
            CRUST_LOG(info, "portmap", "removed " << m.describe());
          if (--*left == 0) done->notify();
        },
        asio::detached);
  }
  timer t(s_->ex, clock::now() + bound);
  co_await (done->wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
}

}  // namespace crust::nat
