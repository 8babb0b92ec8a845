// The one pending read and one pending write of a stream handle whose
// state lives apart from it (utp_stream, pipe_stream): how the handle's
// async_read_some/async_write_some hand an operation to the state, and how
// the state takes, cancels and completes it.
#pragma once

#include "crust/base/error.hpp"

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/system_executor.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

namespace crust::transport {

namespace asio = boost::asio;

using io_handler = asio::any_completion_handler<void(error_code, std::size_t)>;

struct pending_op {
  io_handler handler;
  std::vector<asio::mutable_buffer> rbufs;  // a read's
  std::vector<asio::const_buffer> wbufs;    // a write's
};

// Takes `op` into `slot`, unless an operation is already there or
// `refused` (the handle was closed): then it completes at once with
// operation_not_supported, and the result is false. Cancellation through
// the handler's slot (any type) calls `on_cancel`.
bool take_op(std::optional<pending_op>& slot, pending_op op, bool refused,
             const asio::any_io_executor& ex, std::function<void()> on_cancel);
// Completes the operation in `slot` with (ec, n) and empties it. Never
// inline (the initiating function may be on the stack): posted to `ex`;
// the handler still runs through its own associated executor.
void complete_op(std::optional<pending_op>& slot, const asio::any_io_executor& ex, error_code ec,
                 std::size_t n);

namespace detail {
template <class Handler>
void fail_io(Handler&& h) {
  auto ex = asio::get_associated_executor(h, asio::system_executor());
  asio::post(ex, [h = std::forward<Handler>(h)]() mutable {
    std::move(h)(make_error_code(asio::error::bad_descriptor), std::size_t{0});
  });
}
}  // namespace detail

// The handle's side: State has start_read(io_handler, mutable buffers)
// and start_write(io_handler, const buffers). A handle without a state
// fails with bad_descriptor.
template <class State, class MutableBufferSequence, class Token>
auto async_read_some_on(const std::shared_ptr<State>& st, const MutableBufferSequence& buffers,
                        Token&& token) {
  std::vector<asio::mutable_buffer> bufs(asio::buffer_sequence_begin(buffers),
                                         asio::buffer_sequence_end(buffers));
  return asio::async_initiate<Token, void(error_code, std::size_t)>(
      [st](auto handler, std::vector<asio::mutable_buffer> b) {
        if (!st) return detail::fail_io(std::move(handler));
        st->start_read(io_handler(std::move(handler)), std::move(b));
      },
      token, std::move(bufs));
}

template <class State, class ConstBufferSequence, class Token>
auto async_write_some_on(const std::shared_ptr<State>& st, const ConstBufferSequence& buffers,
                         Token&& token) {
  std::vector<asio::const_buffer> bufs(asio::buffer_sequence_begin(buffers),
                                       asio::buffer_sequence_end(buffers));
  return asio::async_initiate<Token, void(error_code, std::size_t)>(
      [st](auto handler, std::vector<asio::const_buffer> b) {
        if (!st) return detail::fail_io(std::move(handler));
        st->start_write(io_handler(std::move(handler)), std::move(b));
      },
      token, std::move(bufs));
}

}  // namespace crust::transport
