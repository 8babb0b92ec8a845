// A wake-up signal for coroutines on one executor: a timer that never
// expires, cancelled to wake whoever waits. Its expiry is set once, so a
// waiter never cancels another waiter by arming it.
#pragma once

#include "crust/base/clock.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace crust {

// True when the calling coroutine has been asked to cancel. Bind the result
// to a name before testing it: GCC 12 miscompiles `if (co_await f()) co_return;`
// inside a loop (the awaited frame is left on the stack and resumed later).
inline boost::asio::awaitable<bool> cancel_requested() {
  boost::asio::cancellation_state cs = co_await boost::asio::this_coro::cancellation_state;
  co_return cs.cancelled() != boost::asio::cancellation_type::none;
}

class notifier {
 public:
  explicit notifier(const boost::asio::any_io_executor& ex) : t_(ex, time_point::max()) {}
  void notify() { t_.cancel(); }
  // Returns after notify(), or when the caller is cancelled (then the
  // caller's cancellation state says so).
  boost::asio::awaitable<void> wait() {
    auto [ec] = co_await t_.async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
    (void)ec;
  }

 private:
  timer t_;
};

}  // namespace crust
