#include "transports/stream.hpp"

#include <boost/asio/local/connect_pair.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace crust::transport {

const char* to_string(kind k) noexcept {
  switch (k) {
    case kind::none:
      return "none";
    case kind::tcp:
      return "tcp";
    case kind::utp:
      return "utp";
    case kind::memory:
      return "memory";
    case kind::relay:
      return "relay";
  }
  return "?";
}

std::pair<stream, stream> stream::make_pair(const executor_type& ex) {
  local_socket a(ex), b(ex);
  asio::local::connect_pair(a, b);
  return {stream(std::move(a)), stream(std::move(b))};
}

kind stream::transport() const noexcept {
  switch (s_.index()) {
    case 1:
      return kind::tcp;
    case 2:
      return kind::memory;
    case 3:
      return kind::utp;
    case 4:
      return kind::relay;
    default:
      return kind::none;
  }
}

bool stream::is_open() const noexcept {
  return std::visit(
      [](const auto& s) {
        if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::monostate>)
          return false;
        else
          return s.is_open();
      },
      s_);
}

stream::executor_type stream::get_executor() {
  return std::visit(
      [](auto& s) -> executor_type {
        if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::monostate>)
          return asio::system_executor();
        else
          return s.get_executor();
      },
      s_);
}

std::string stream::remote_description() const {
  if (const auto* t = std::get_if<tcp_socket>(&s_)) {
    error_code ec;
    auto ep = t->remote_endpoint(ec);
    if (ec) return "tcp:?";
    auto addr =
        ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
    return addr + ":" + std::to_string(ep.port());
  }
  if (const auto* u = std::get_if<utp::utp_stream>(&s_)) {
    if (!u->is_open()) return "closed";
    const auto ep = u->remote_endpoint();
    auto addr =
        ep.address().is_v6() ? "[" + ep.address().to_string() + "]" : ep.address().to_string();
    return addr + ":" + std::to_string(ep.port());
  }
  if (const auto* p = std::get_if<pipe_stream>(&s_))
    return p->is_open() ? p->description() : "closed";
  return s_.index() == 2 ? "in-process" : "closed";
}

std::optional<asio::ip::tcp::endpoint> stream::tcp_remote_endpoint() const {
  if (const auto* t = std::get_if<tcp_socket>(&s_)) {
    error_code ec;
    auto ep = t->remote_endpoint(ec);
    if (!ec) return ep;
  }
  return std::nullopt;
}

std::optional<duration> stream::rtt() const {
  if (auto* t = std::get_if<tcp_socket>(&s_)) {
    tcp_info ti{};
    socklen_t len = sizeof ti;
    // Const in effect: asking the kernel changes nothing.
    auto& sock = const_cast<tcp_socket&>(*t);
    if (!sock.is_open() ||
        ::getsockopt(sock.native_handle(), IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
      return std::nullopt;
    if (ti.tcpi_rtt == 0) return std::nullopt;
    return std::chrono::microseconds(ti.tcpi_rtt);
  }
  if (const auto* u = std::get_if<utp::utp_stream>(&s_)) {
    const auto r = u->stats().rtt;
    if (r > duration::zero()) return r;
  }
  return std::nullopt;
}

std::optional<asio::ip::tcp::endpoint> stream::tcp_local_endpoint() const {
  if (const auto* t = std::get_if<tcp_socket>(&s_)) {
    error_code ec;
    auto ep = t->local_endpoint(ec);
    if (!ec) return ep;
  }
  return std::nullopt;
}

std::optional<asio::ip::address> stream::remote_address() const {
  if (const auto* t = std::get_if<tcp_socket>(&s_)) {
    error_code ec;
    auto ep = t->remote_endpoint(ec);
    if (!ec) return ep.address();
  }
  if (const auto* u = std::get_if<utp::utp_stream>(&s_))
    if (u->is_open()) return u->remote_endpoint().address();
  return std::nullopt;
}

void stream::shutdown_send() noexcept {
  error_code ec;
  if (auto* t = std::get_if<tcp_socket>(&s_)) t->shutdown(tcp_socket::shutdown_send, ec);
  if (auto* l = std::get_if<local_socket>(&s_)) l->shutdown(local_socket::shutdown_send, ec);
  if (auto* u = std::get_if<utp::utp_stream>(&s_)) u->shutdown_send();
}

void stream::close() noexcept {
  error_code ec;
  if (auto* t = std::get_if<tcp_socket>(&s_)) t->close(ec);
  if (auto* l = std::get_if<local_socket>(&s_)) l->close(ec);
  if (auto* u = std::get_if<utp::utp_stream>(&s_)) u->close();
  if (auto* p = std::get_if<pipe_stream>(&s_)) p->close();
}

}  // namespace crust::transport
