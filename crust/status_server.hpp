/// \file
/// An HTTP status server for a running node (Boost.Beast, in one
/// translation unit): GET /status (JSON), /metrics (Prometheus text) and /
/// (a page that shows the peers live), HEAD too. Bound to loopback unless
/// told otherwise: the page names every peer and where it is.
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"
#include "crust/service.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <memory>

namespace crust {

struct status_options {
  boost::asio::ip::tcp::endpoint at{boost::asio::ip::address_v4::loopback(), 0};
  bool allow_remote = false;            ///< allow an address other than loopback
  std::size_t max_clients = 32;         ///< connections at once; the next is closed at accept
  duration idle_timeout = seconds(15);  ///< a client silent this long (mid-request too) is closed
  std::size_t max_request = 8192;       ///< bytes of request line and headers; larger: 431
};

class status_server {
 public:
  /// Listens on o.at and serves `node` (it holds the watcher, not the
  /// service: a node that is gone gets 503). Errors: not_allowed (a
  /// non-loopback address without o.allow_remote), the bind error.
  static result<status_server> start(boost::asio::any_io_executor ex, service::watcher node,
                                     status_options o = {});
  status_server(status_server&&) noexcept;
  status_server& operator=(status_server&&) noexcept;
  status_server(const status_server&) = delete;
  status_server& operator=(const status_server&) = delete;
  /// Closes at once if stop() was not awaited.
  ~status_server();

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  /// Closes the listener and every client; returns when their coroutines
  /// have ended. Safe to call twice. Never fails; the listener and the
  /// clients are closed at once, so cancelling only cuts the wait short.
  boost::asio::awaitable<void> stop();

  struct state;

 private:
  explicit status_server(std::shared_ptr<state> st);
  std::shared_ptr<state> st_;
};

}  // namespace crust
