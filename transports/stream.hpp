// The one data-path stream type: a closed variant over the transports, so
// that asio::async_read/async_write and the secure channel layer on it
// unchanged: TCP, µTP, a relay circuit (a pipe whose bytes another
// connection carries), and the in-process pair (a Unix socket pair) for
// tests.
#pragma once

#include "crust/base/error.hpp"
#include "transports/pipe.hpp"
#include "transports/utp/stream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>

#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace crust::transport {

namespace asio = boost::asio;

enum class kind { none, tcp, utp, memory, relay };
const char* to_string(kind k) noexcept;

class stream {
 public:
  using executor_type = asio::any_io_executor;
  using tcp_socket = asio::ip::tcp::socket;
  using local_socket = asio::local::stream_protocol::socket;

  stream() = default;  // an empty stream: every operation fails with bad_descriptor
  explicit stream(tcp_socket s) : s_(std::move(s)) {}
  explicit stream(local_socket s) : s_(std::move(s)) {}
  explicit stream(utp::utp_stream s) : s_(std::move(s)) {}
  explicit stream(pipe_stream s) : s_(std::move(s)) {}
  stream(stream&&) noexcept = default;
  stream& operator=(stream&&) noexcept = default;

  // A connected in-process pair for tests, on `ex`.
  static std::pair<stream, stream> make_pair(const executor_type& ex);

  kind transport() const noexcept;
  // The µTP handle inside, for its figures; nullptr for other kinds.
  const utp::utp_stream* as_utp() const noexcept { return std::get_if<utp::utp_stream>(&s_); }
  bool is_open() const noexcept;
  executor_type get_executor();
  // "ip:port" of the remote end, or a short description for other kinds.
  std::string remote_description() const;
  // The remote IP address (TCP and µTP); nullopt for other kinds or when
  // the socket is closed.
  std::optional<asio::ip::address> remote_address() const;
  // A TCP stream's endpoints; nullopt for other kinds or a closed socket.
  std::optional<asio::ip::tcp::endpoint> tcp_remote_endpoint() const;
  std::optional<asio::ip::tcp::endpoint> tcp_local_endpoint() const;
  // The transport's smoothed round-trip time: the kernel's for TCP
  // (TCP_INFO), µTP's own estimate; nullopt for other kinds, or before a
  // first sample.
  std::optional<duration> rtt() const;

  // Bytes already read from the stream that the next reads return first
  // (a server that looked at a connection's first bytes puts them back).
  void unread(bytes prefix) {
    prefix_ = std::move(prefix);
    prefix_used_ = 0;
  }

  // Sends FIN after queued data (TCP half-close); errors are ignored.
  void shutdown_send() noexcept;
  // Closes at once; pending operations complete with operation_aborted.
  void close() noexcept;

  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const MutableBufferSequence& b) {
          if (prefix_used_ < prefix_.size()) {
            const auto n = asio::buffer_copy(
                b, asio::buffer(prefix_.data() + prefix_used_, prefix_.size() - prefix_used_));
            prefix_used_ += n;
            if (prefix_used_ == prefix_.size()) {
              prefix_.clear();
              prefix_used_ = 0;
            }
            auto ex = asio::get_associated_executor(handler, get_executor());
            asio::post(ex,
                       [h = std::move(handler), n]() mutable { std::move(h)(error_code{}, n); });
            return;
          }
          std::visit(
              [&](auto& s) {
                if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::monostate>)
                  fail_empty(std::move(handler));
                else
                  s.async_read_some(b, std::move(handler));
              },
              s_);
        },
        token, buffers);
  }

  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return asio::async_initiate<Token, void(error_code, std::size_t)>(
        [this](auto handler, const ConstBufferSequence& b) {
          std::visit(
              [&](auto& s) {
                if constexpr (std::is_same_v<std::decay_t<decltype(s)>, std::monostate>)
                  fail_empty(std::move(handler));
                else
                  s.async_write_some(b, std::move(handler));
              },
              s_);
        },
        token, buffers);
  }

 private:
  template <class Handler>
  static void fail_empty(Handler&& h) {
    auto ex = asio::get_associated_executor(h, asio::system_executor());
    asio::post(ex, [h = std::forward<Handler>(h)]() mutable {
      std::move(h)(make_error_code(asio::error::bad_descriptor), std::size_t{0});
    });
  }

  std::variant<std::monostate, tcp_socket, local_socket, utp::utp_stream, pipe_stream> s_;
  bytes prefix_;  // see unread()
  std::size_t prefix_used_ = 0;
};

}  // namespace crust::transport
