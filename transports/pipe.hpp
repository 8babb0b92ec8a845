// pipe_stream: a byte stream whose bytes someone else carries, as a relay
// circuit's are carried in records of two other connections. It meets
// Asio's AsyncReadStream and AsyncWriteStream, so the secure channel runs
// over it unchanged (the transport stream variant holds it as kind relay).
//
// Flow control is a window, as in HTTP/2: each end starts allowed to send
// `window` bytes; the reader grants more (through the carrier) as the
// application consumes what arrived, half a window at a time. So the
// bytes in flight, in the carrier and in the relay between, never exceed
// one window per direction. A carrier that delivers beyond the window it
// was granted is refused (deliver returns false) and the stream ends.
//
// The state is apart from the handle (as utp_stream's is): the carrier
// holds the state and feeds it; closing the handle tells the carrier.
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/base/error.hpp"
#include "transports/pending_io.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace crust::transport {

namespace asio = boost::asio;

class pipe_state : public std::enable_shared_from_this<pipe_state> {
 public:
  // What carries the bytes. send and grant are called synchronously, from
  // the handle's operations and from deliver(); they must not call back
  // into this state. closed is posted to the executor.
  struct carrier {
    std::function<void(bytes)> send;           // bytes for the other end
    std::function<void(std::uint32_t)> grant;  // the other end may send this many more
    std::function<void()> closed;              // the handle let go: end the carriage
  };

  pipe_state(asio::any_io_executor ex, std::string description, std::uint32_t window,
             std::size_t max_chunk, carrier c);

  // --- the carrier's side ---
  // Bytes from the other end. False (and the stream ends with
  // protocol_violation) if they exceed what we granted.
  bool deliver(byte_span data);
  // The other end may take `more` bytes from us.
  void add_credit(std::uint32_t more);
  // The carriage ended: reads get what is buffered, then `why` (eof for
  // an orderly close); writes get `why` at once.
  void end(error_code why);
  bool ended() const noexcept { return static_cast<bool>(ended_); }

  // --- the handle's side ---
  void start_read(io_handler h, std::vector<asio::mutable_buffer> bufs);
  void start_write(io_handler h, std::vector<asio::const_buffer> bufs);
  void release();  // pending operations end with operation_aborted; the carrier is told
  bool released() const noexcept { return released_; }
  const std::string& description() const noexcept { return description_; }
  const asio::any_io_executor& executor() const noexcept { return ex_; }

 private:
  void progress();
  void cancel(bool read);

  asio::any_io_executor ex_;
  std::string description_;
  std::uint32_t window_;
  std::size_t max_chunk_;
  carrier carrier_;
  std::deque<bytes> inbox_;
  std::size_t inbox_front_used_ = 0;
  std::size_t inbox_bytes_ = 0;
  std::uint64_t granted_unused_;  // what the other end may still send us
  std::uint64_t credit_;          // what we may still send
  std::uint32_t consumed_ = 0;    // read since the last grant
  error_code ended_;
  bool released_ = false;
  std::optional<pending_op> read_, write_;
};

class pipe_stream {
 public:
  using executor_type = asio::any_io_executor;

  pipe_stream() = default;
  explicit pipe_stream(std::shared_ptr<pipe_state> st) : st_(std::move(st)) {}
  pipe_stream(pipe_stream&&) noexcept = default;
  pipe_stream& operator=(pipe_stream&& o) noexcept {
    if (this != &o) {
      close();
      st_ = std::move(o.st_);
    }
    return *this;
  }
  ~pipe_stream() { close(); }

  executor_type get_executor() const { return st_->executor(); }
  bool is_open() const noexcept { return st_ && !st_->released(); }
  const std::string& description() const { return st_->description(); }
  void close() noexcept {
    if (st_) st_->release();
  }

  // At least one byte of what arrived; eof after an orderly end. One read
  // at a time; cancellation (any type) ends it with operation_aborted.
  template <class MutableBufferSequence, class Token>
  auto async_read_some(const MutableBufferSequence& buffers, Token&& token) {
    return async_read_some_on(st_, buffers, std::forward<Token>(token));
  }

  // Takes what the window allows (at least one byte, waiting for credit
  // if need be), at most one carrier chunk.
  template <class ConstBufferSequence, class Token>
  auto async_write_some(const ConstBufferSequence& buffers, Token&& token) {
    return async_write_some_on(st_, buffers, std::forward<Token>(token));
  }

 private:
  std::shared_ptr<pipe_state> st_;
};

}  // namespace crust::transport
