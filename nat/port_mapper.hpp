// Port mapping on the gateway: PCP (RFC 6887), NAT-PMP (RFC 6886) and
// UPnP-IGD (through miniupnpc), tried in that order for each request,
// kept alive by renewal at half the granted lifetime, and removed again
// on release.
//
// PCP and NAT-PMP are spoken here (nat/pmp.hpp) on a UDP socket of their
// own, connected to the gateway's port 5351, so an ICMP "port
// unreachable" ends an attempt at once. Requests are retransmitted after
// 250 ms, doubling, `pmp_tries` times in all (RFC 6887 §8.1.1 says 3 s
// first, which is too slow for a connect; RFC 6886's 250 ms is used for
// both). If PCP gets no answer at all, NAT-PMP (the same port) is not
// tried; if the gateway answers PCP with NAT-PMP's "unsupported version",
// NAT-PMP is tried at once.
//
// miniupnpc's calls block (SSDP, then HTTP to the gateway). They run on a
// thread pool: the caller's, or one of `threads` threads the mapper makes
// at its first UPnP call and exposes (pool()); a mapper that never speaks
// UPnP starts no thread. The UPnP state (the IGD found) is touched only on
// a strand of that pool. The coroutine that asked resumes on its own
// executor. Such a call cannot be interrupted: a cancelled map() returns
// when the blocking call it is in has ended (SSDP waits upnp_discover_ms;
// miniupnpc bounds its HTTP waits itself).
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"
#include "nat/pmp.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/address.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace boost::asio {
class thread_pool;
}

namespace crust::nat {

enum class mapping_method : std::uint8_t { pcp, natpmp, upnp };
std::string_view to_string(mapping_method m) noexcept;
// "pcp", "natpmp", "upnp" (also "nat-pmp", "igd"); nullopt otherwise.
std::optional<mapping_method> parse_mapping_method(std::string_view s) noexcept;

struct port_mapping {
  mapping_method method = mapping_method::pcp;
  pmp::protocol protocol = pmp::protocol::udp;
  boost::asio::ip::address internal_address;
  std::uint16_t internal_port = 0;
  boost::asio::ip::address external_address;  // unspecified if the gateway did not say
  std::uint16_t external_port = 0;
  std::uint32_t lifetime = 0;  // granted, seconds (0: permanent, UPnP only)
  time_point granted{};
  boost::asio::ip::address gateway;
  pmp::nonce id{};  // PCP's mapping nonce, reused to renew

  // "udp 198.19.1.2:4000 -> 198.18.0.11:4000 (pcp via 198.19.1.1, 3600 s)"
  std::string describe() const;
};

struct mapping_request {
  pmp::protocol protocol = pmp::protocol::udp;
  // The local socket: an unspecified address means "the address the
  // route to the gateway leaves from".
  boost::asio::ip::address internal_address;
  std::uint16_t internal_port = 0;
  std::uint16_t suggested_external_port = 0;  // 0: the internal port
};

struct mapping_options {
  // The PCP/NAT-PMP server. Absent: the default IPv4 route's gateway
  // (/proc/net/route).
  std::optional<boost::asio::ip::address> gateway;
  std::uint16_t gateway_port = pmp::server_port;  // tests use another
  std::vector<mapping_method> methods{mapping_method::pcp, mapping_method::natpmp,
                                      mapping_method::upnp};
  std::uint32_t lifetime = 3600;  // asked for, seconds
  duration pmp_first_wait = milliseconds(250);
  int pmp_tries = 3;            // 250 + 500 + 1000 ms
  int upnp_discover_ms = 1000;  // how long SSDP listens for answers
  // Skip SSDP and use this root description ("http://IP:PORT/rootDesc.xml").
  std::string upnp_root_url;
  std::size_t threads = 1;  // of the pool the mapper makes when given none
};

// One map() call: the mapping, or none, and a note for each method that
// did not give one ("pcp: no answer from 192.168.1.1:5351 in 1.75 s").
struct mapping_outcome {
  std::optional<port_mapping> mapping;
  std::vector<std::string> notes;
};

// What maintain() reports.
struct mapping_change {
  enum class what : std::uint8_t {
    mapped,   // first granted (or granted again after a loss)
    renewed,  // lease extended; the external endpoint may have changed
    failed,   // the first attempt gave nothing; `notes` say why
    lost,     // renewal failed; maintain() tries again from scratch
  };
  what kind = what::mapped;
  mapping_request request;
  std::optional<port_mapping> mapping;
  std::vector<std::string> notes;
};

// The IPv4 default route's gateway, from /proc/net/route; nullopt if there
// is none (or the file cannot be read).
std::optional<boost::asio::ip::address> default_gateway();

class port_mapper : public std::enable_shared_from_this<port_mapper> {
 public:
  // `pool`, if given, must outlive the mapper.
  static std::shared_ptr<port_mapper> create(const boost::asio::any_io_executor& ex,
                                             mapping_options o,
                                             boost::asio::thread_pool* pool = nullptr);
  ~port_mapper();
  port_mapper(const port_mapper&) = delete;
  port_mapper& operator=(const port_mapper&) = delete;

  // Tries each method in order; the first to grant wins. Never fails: the
  // outcome's notes say why there is no mapping. Honours cancellation.
  boost::asio::awaitable<mapping_outcome> map(mapping_request r);
  // Extends `m` with the method that made it (same external port, same
  // PCP nonce). Errors: timed_out, connection_refused (nothing listens
  // on the gateway's port), server_error (the gateway refused; the log
  // says why), and socket errors.
  boost::asio::awaitable<result<port_mapping>> renew(const port_mapping& m);
  // Deletes `m` on the gateway. Same errors.
  boost::asio::awaitable<result<void>> remove(const port_mapping& m);

  // Maps `r`, then renews at half of each granted lifetime; on a failed
  // renewal reports `lost` and starts again (after 30 s, then doubling up
  // to 10 min, also after a failed first attempt). The current mapping
  // is in active() while held. Runs until cancelled; a cancelled
  // maintain() leaves its mapping on the gateway for release_all().
  boost::asio::awaitable<void> maintain(mapping_request r,
                                        std::function<void(const mapping_change&)> report);
  std::vector<port_mapping> active() const;
  // Deletes every active mapping, all at once, waiting at most `bound`.
  boost::asio::awaitable<void> release_all(duration bound = seconds(2));
  // Deletes and forgets the active mappings of one local port (whose
  // maintain() has been cancelled: a port the node no longer listens on).
  boost::asio::awaitable<void> release(pmp::protocol protocol, std::uint16_t internal_port,
                                       duration bound = seconds(2));

  // Where miniupnpc's blocking calls run: the caller's pool, or one of
  // `options().threads` threads made at the first UPnP call (or here).
  boost::asio::thread_pool& pool();
  const mapping_options& options() const noexcept;

 private:
  struct state;
  explicit port_mapper(std::unique_ptr<state> s);
  boost::asio::awaitable<void> release_list(std::vector<port_mapping> all, duration bound);
  std::unique_ptr<state> s_;
};

}  // namespace crust::nat
