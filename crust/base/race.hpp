// Racing and deadlines for operations that return result<T>.
//
// Asio's `||` treats an operation that *returns* an error as a winner, so
// attempts are raced by `first_success`: attempt i starts after i*stagger,
// or as soon as an earlier attempt fails (RFC 8305's rule); the first attempt
// to return a value wins, the others are cancelled and awaited (their values,
// if they also succeed, are destroyed, which closes them), and every loser's
// error is kept. At most `max_in_flight` attempts run at once: a later one
// whose start time has come waits for a running one to end. Plain `||` is
// only used for "operation against a timer", in `within`.
#pragma once

#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"
#include "crust/base/notifier.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace crust {

namespace asio = boost::asio;

// Runs `op` against a deadline: op's value, or nullopt when the deadline
// passed first (op is then cancelled and has finished by the time this
// returns). Cancelling the caller cancels op. T must be
// default-constructible (Asio 1.26).
template <class T>
asio::awaitable<std::optional<T>> within(asio::awaitable<T> op, duration limit) {
  using namespace asio::experimental::awaitable_operators;
  timer deadline(co_await asio::this_coro::executor);
  deadline.expires_after(limit);
  auto outcome =
      co_await (std::move(op) || deadline.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (outcome.index() == 0) co_return std::move(std::get<0>(outcome));
  co_return std::nullopt;
}

// Runs `op` against a deadline. Returns op's result, or errc::timed_out (op
// is then cancelled and has finished by the time this returns). Cancelling
// the caller cancels op. T must be default-constructible (Asio 1.26).
template <class T>
asio::awaitable<result<T>> with_timeout(asio::awaitable<result<T>> op, duration limit) {
  auto outcome = co_await within(std::move(op), limit);
  if (outcome) co_return std::move(*outcome);
  co_return make_error_code(errc::timed_out);
}

template <class T>
using attempt = std::function<asio::awaitable<result<T>>()>;

template <class T>
struct race_outcome {
  result<T> value = make_error_code(errc::all_attempts_failed);
  std::size_t winner = static_cast<std::size_t>(-1);
  // One entry per attempt: the winner's is success, an attempt never started
  // or cut short by the winner reads errc::cancelled.
  std::vector<error_code> errors;
};

namespace detail {

template <class T>
struct race_state {
  race_state(const asio::any_io_executor& ex, std::size_t n, std::size_t max_in_flight)
      : done(ex), slot(ex), max_in_flight(max_in_flight) {
    for (std::size_t i = 0; i < n; ++i) starts.push_back(std::make_unique<timer>(ex));
    for (std::size_t i = 0; i < n; ++i)
      signals.push_back(std::make_unique<asio::cancellation_signal>());
    due.assign(n, false);
    outcome.errors.assign(n, make_error_code(errc::cancelled));
  }
  timer done;
  notifier slot;  // an attempt ended: one waiting for room may start
  std::size_t max_in_flight;
  std::size_t in_flight = 0;
  std::vector<bool> due;  // start time reached (it may still wait for room)
  std::vector<std::unique_ptr<timer>> starts;
  std::vector<std::unique_ptr<asio::cancellation_signal>> signals;
  std::size_t remaining = 0;
  bool decided = false;
  std::exception_ptr bug;
  race_outcome<T> outcome;

  void cancel_others(std::size_t keep) {
    for (std::size_t i = 0; i < signals.size(); ++i)
      if (i != keep) signals[i]->emit(asio::cancellation_type::terminal);
  }
  void start_next_waiting() {
    for (std::size_t i = 0; i < starts.size(); ++i) {
      if (!due[i]) {
        starts[i]->cancel();
        return;
      }
    }
  }
};

template <class T>
asio::awaitable<result<T>> run_attempt(std::shared_ptr<race_state<T>> st, std::size_t i,
                                       attempt<T> fn) {
  auto [ec] = co_await st->starts[i]->async_wait(asio::as_tuple(asio::use_awaitable));
  (void)ec;  // expiry and an early start both mean "go", unless decided
  st->due[i] = true;
  while (!st->decided && st->in_flight >= st->max_in_flight) co_await st->slot.wait();
  if (st->decided) co_return make_error_code(errc::cancelled);
  ++st->in_flight;
  struct release {
    race_state<T>* s;
    ~release() {
      --s->in_flight;
      s->slot.notify();
    }
  } guard{st.get()};
  co_return co_await fn();
}

}  // namespace detail

// Races `attempts` as described at the top of this file. Returns the winner
// (value + index) or errc::all_attempts_failed with every attempt's error.
// Cancelling the caller cancels every attempt; all attempts have finished
// when this returns.
template <class T>
asio::awaitable<race_outcome<T>> first_success(
    std::vector<attempt<T>> attempts, duration stagger,
    std::size_t max_in_flight = static_cast<std::size_t>(-1)) {
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<detail::race_state<T>>(ex, attempts.size(), max_in_flight);
  if (attempts.empty()) co_return std::move(st->outcome);
  st->done.expires_at(time_point::max());
  st->remaining = attempts.size();
  for (std::size_t i = 0; i < attempts.size(); ++i) {
    st->starts[i]->expires_after(stagger * static_cast<int>(i));
    auto handler = [st, i](std::exception_ptr ep, result<T> r) {
      if (ep) {
        try {
          std::rethrow_exception(ep);
        } catch (const boost::system::system_error& e) {
          // An attempt cancelled while it awaited: a loser, not a bug.
          r = e.code() == asio::error::operation_aborted ? make_error_code(errc::cancelled)
                                                         : e.code();
        } catch (...) {
          if (!st->bug) st->bug = ep;
          r = make_error_code(errc::cancelled);
        }
      }
      if (r && !st->decided) {
        st->decided = true;
        st->outcome.winner = i;
        st->outcome.errors[i] = {};
        st->outcome.value = std::move(r);
        st->cancel_others(i);
        for (auto& s : st->starts) s->cancel();
      } else if (!r) {
        st->outcome.errors[i] = r.error();
        if (!st->decided) st->start_next_waiting();
      }
      if (--st->remaining == 0) st->done.cancel();
    };
    asio::co_spawn(ex, detail::run_attempt<T>(st, i, std::move(attempts[i])),
                   asio::bind_cancellation_slot(st->signals[i]->slot(), std::move(handler)));
  }
  // Wait for every attempt. If our caller cancels us, pass it on and keep
  // waiting: no attempt outlives this call.
  co_await asio::this_coro::throw_if_cancelled(false);
  while (st->remaining > 0) {
    auto [ec] = co_await st->done.async_wait(asio::as_tuple(asio::use_awaitable));
    (void)ec;
    asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
    if (st->remaining > 0 && cs.cancelled() != asio::cancellation_type::none) {
      st->decided = true;
      st->cancel_others(static_cast<std::size_t>(-1));
      for (auto& s : st->starts) s->cancel();
      co_await asio::this_coro::reset_cancellation_state();
    }
  }
  if (st->bug) std::rethrow_exception(st->bug);
  co_return std::move(st->outcome);
}

}  // namespace crust
