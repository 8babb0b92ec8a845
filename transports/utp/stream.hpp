// utp_stream: the handle an application (or the secure channel) reads and
// writes a µTP connection through. It meets Asio's AsyncReadStream and
// AsyncWriteStream, so asio::async_read/async_write and the transport
// stream variant work on it unchanged.
//
// The handle is apart from the state (DESIGN.md §4, STYLE.md 9): the
// connection lives in the per-socket manager, so closing or dropping the
// handle still sends what was written, then a FIN, and the manager keeps
// the connection until the peer has acknowledged it (or a linger limit).
#pragma once

#include "crust/base/error.hpp"
#include "transports/pending_io.hpp"
#include "transports/utp/connection.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/udp.hpp>

#include <memory>
#include <optional>
#include <vector>

namespace crust::utp {

namespace asio = boost::asio;
class manager;

// One connection's state as the manager holds it, and the one pending read
// and one pending write of its handle. Not for applications: use utp_stream.
class stream_state : public std::enable_shared_from_this<stream_state> {
 public:
  stream_state(connection c, asio::ip::udp::endpoint remote, std::weak_ptr<manager> mgr,
               asio::any_io_executor ex)
      : conn(std::move(c)), remote(std::move(remote)), mgr_(std::move(mgr)), ex_(std::move(ex)) {}

  connection conn;
  asio::ip::udp::endpoint remote;
  bool handle_closed = false;
  bool half_open = false;    // an acceptor not yet verified: not in the accept queue yet
  time_point closed_at{};    // when the handle let go
  time_point finished_at{};  // when the manager first saw the connection finished

  const asio::any_io_executor& executor() const { return ex_; }
  void start_read(transport::io_handler h, std::vector<asio::mutable_buffer> bufs);
  void start_write(transport::io_handler h, std::vector<asio::const_buffer> bufs);
  // The manager calls this after every change to `conn`: completes what
  // can complete now.
  void progress();
  // The handle lets go: pending operations end with operation_aborted, and
  // a FIN follows what was written.
  void release();
  void shutdown_send();
  // What a read or write gets once the connection has ended.
  error_code end_error() const;

 private:
  void cancel(bool read);
  void touch();

  std::weak_ptr<manager> mgr_;
  asio::any_io_executor ex_;
  std::optional<transport::pending_op> read_, write_;
};

class utp_stream {
 public:
  using executor_type = asio::any_io_executor;

  utp_stream() = default;
  explicit utp_stream(std::shared_ptr<stream_state> st) : st_(std::move(st)) {}
  utp_stream(utp_stream&&) noexcept = default;
  utp_stream& operator=(utp_stream&& o) noexcept {
    if (this != &o) {
      close();
      st_ = std::move(o.st_);
    }
    return *this;
  }
  // Lets go of the connection: see close().
  ~utp_stream() { close(); }

  executor_type get_executor() const { return st_->executor(); }
  bool is_open() const noexcept { return st_ && !st_->handle_closed; }
  asio::ip::udp::endpoint remote_endpoint() const { return st_->remote; }
  connection::figures stats() const { return st_->conn.stats(); }
  conn_state state() const { return st_->conn.state(); }

  // Sends FIN after what was written; reading goes on until the peer's FIN.
  void shutdown_send() noexcept {
    if (st_) st_->shutdown_send();
  }
  // Pending operations end with operation_aborted; what was written is
  // still delivered and a FIN follows (the manager finishes that).
  void close() noexcept {
    if (st_) st_->release();
  }

  // Reads what has arrived (at least one byte); eof after the peer's FIN;
  // connection_reset or timed_out when the connection ended otherwise.
  // One read at a time; cancellation (any type) ends it with operation_aborted.
  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return transport::async_read_some_on(st_, buffers, std::forward<Token>(token));
  }

  // Takes what the send buffer has room for (at least one byte, waiting for
  // room if need be). One write at a time; cancellation as for reads.
  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return transport::async_write_some_on(st_, buffers, std::forward<Token>(token));
  }

 private:
  std::shared_ptr<stream_state> st_;
};

}  // namespace crust::utp
