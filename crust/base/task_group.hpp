// Structured concurrency for the service: every background coroutine is
// spawned into a group that can cancel them all and wait until all are done.
#pragma once

#include "crust/base/log.hpp"
#include "crust/base/notifier.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <list>
#include <memory>

namespace crust {

class task_group {
 public:
  explicit task_group(const boost::asio::any_io_executor& ex) : ex_(ex), idle_(ex) {}

  // `owner` keeps the group's owner (and so the group) alive until the
  // task's completion has run, even if every other reference is gone.
  void spawn(boost::asio::awaitable<void> task, const char* what, std::shared_ptr<void> owner) {
    auto it = signals_.emplace(signals_.end());
    boost::asio::co_spawn(
        ex_, std::move(task),
        boost::asio::bind_cancellation_slot(
            it->slot(), [this, it, what, owner = std::move(owner)](std::exception_ptr ep) {
              if (ep) {
                try {
                  std::rethrow_exception(ep);
                } catch (const boost::system::system_error& e) {
                  // A cancelled task may end by Asio's throw at its next
                  // co_await (this_coro::throw_if_cancelled): that is an end.
                  if (e.code() == boost::asio::error::operation_aborted)
                    CRUST_LOG(debug, "task", what << " ended by cancellation");
                  else
                    CRUST_LOG(error, "task", what << " ended by a bug: " << e.what());
                } catch (const std::exception& e) {
                  CRUST_LOG(error, "task", what << " ended by a bug: " << e.what());
                }
              }
              signals_.erase(it);
              if (signals_.empty()) idle_.notify();
            }));
  }

  void cancel_all(boost::asio::cancellation_type type = boost::asio::cancellation_type::terminal) {
    for (auto& s : signals_) s.emit(type);
  }
  std::size_t size() const noexcept { return signals_.size(); }

  boost::asio::awaitable<void> wait_all() {
    while (!signals_.empty()) co_await idle_.wait();
  }

 private:
  boost::asio::any_io_executor ex_;
  std::list<boost::asio::cancellation_signal> signals_;
  notifier idle_;
};

}  // namespace crust
