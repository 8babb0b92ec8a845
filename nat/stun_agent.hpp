// STUN on the node's one UDP socket: the server that answers Binding
// requests (so every node, bootstrap nodes first, is a rendezvous server)
// and the client that asks other nodes, or any RFC 8489 server, where this
// socket appears to be. The socket's STUN datagrams (transports/udp.hpp
// tells them apart by the magic cookie) all come here.
#pragma once

#include "nat/stun.hpp"
#include "nat/stun_server.hpp"
#include "nat/stun_transaction.hpp"
#include "transports/rate_limit.hpp"
#include "transports/udp.hpp"

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace crust::nat {

struct binding_result {
  stun::udp_endpoint mapped;  // this socket as the server saw it
  stun::udp_endpoint server;  // where the answer came from
  std::optional<stun::udp_endpoint> response_origin, other_address;  // RFC 5780, if sent
  std::string software;                                              // the server's SOFTWARE
  unsigned requests = 0;                                             // requests sent
  // From request to answer; only when one request was sent (with more,
  // which one was answered is unknown: Karn's rule).
  std::optional<duration> rtt;
};

// RFC 5780's CHANGE-REQUEST flags: answer from the other address / port.
struct change_request {
  bool address = false, port = false;
};

class stun_agent : public std::enable_shared_from_this<stun_agent> {
 public:
  struct options {
    bool serve = true;            // answer Binding requests
    stun::server_options server;  // SOFTWARE; RESPONSE-ORIGIN is filled in from the socket
    double per_source_per_second = 20, burst = 40, global_per_second = 2000;
    // Pad requests to this size, so that a server that never answers with
    // more bytes than it was sent (ours) can answer in full; 0: no padding.
    // The padding is SOFTWARE's text, which every server may ignore
    // (RFC 3489-era servers such as stund reject RFC 5780's PADDING).
    std::size_t request_size = stun::full_answer_size;
    std::size_t max_pending = 1024;  // transactions in flight at once
    // Whom to answer (the service refuses blacklisted addresses); empty: all.
    std::function<bool(const boost::asio::ip::address&)> admit;
  };

  // Takes `mux`'s STUN datagrams. The agent lives as long as the mux holds
  // its handler or someone holds the pointer.
  static std::shared_ptr<stun_agent> attach(const std::shared_ptr<transport::udp_mux>& mux,
                                            options o);
  static std::shared_ptr<stun_agent> attach(const std::shared_ptr<transport::udp_mux>& mux) {
    return attach(mux, options{});
  }

  // One Binding transaction with `server` (RFC 8489 timing by default).
  // Errors: timed_out (no answer in the schedule), server_error (an error
  // response; its code and reason are logged), not_connected (the agent
  // was closed), no_buffer_space (too many transactions in flight),
  // operation_aborted (the caller cancelled).
  //
  // `change`: RFC 5780's CHANGE-REQUEST, asking the server to answer from
  // its other address and/or port (for filtering tests; a server that
  // cannot answers 420, which is server_error).
  boost::asio::awaitable<result<binding_result>> binding(stun::udp_endpoint server,
                                                         stun::retransmission r = {},
                                                         change_request change = {});

  // Datagrams `f` returns true for are its alone (hole-punching checks
  // and their answers, which the punch sessions authenticate and answer
  // themselves); it sees every STUN datagram first. Empty: none.
  using interceptor = std::function<bool(byte_span d, const stun::udp_endpoint& from)>;
  void intercept(interceptor f) { intercept_ = std::move(f); }
  // Answer Binding requests or not, from now on.
  void serve(bool on) noexcept { options_.serve = on; }
  bool serving() const noexcept { return options_.serve && !closed_; }
  // Stops answering and fails the transactions in flight.
  void close();

  struct figures {
    std::uint64_t requests_answered = 0, requests_limited = 0, ignored = 0;
    std::uint64_t requests_sent = 0, responses = 0, responses_unmatched = 0;
  };
  const figures& stats() const noexcept { return stats_; }

 private:
  struct pending;
  stun_agent(const std::shared_ptr<transport::udp_mux>& mux, options o);
  void on_datagram(byte_span d, const stun::udp_endpoint& from);
  bytes request(const stun::transaction_id& id, change_request change) const;

  std::weak_ptr<transport::udp_mux> mux_;
  options options_;
  transport::rate_limiter limiter_;
  std::map<stun::transaction_id, std::shared_ptr<pending>> pending_;
  figures stats_;
  interceptor intercept_;
  bool closed_ = false;
};

}  // namespace crust::nat
