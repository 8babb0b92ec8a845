// The one clock of the library, injectable for tests.
//
// crust::clock reads the steady clock plus an offset that only tests move
// (advance()). Timers are basic_waitable_timer<crust::clock>, and Asio asks
// the clock for `now` whenever it checks its timer queue, so a test can jump
// time forward and poll instead of sleeping. Decision logic takes `now` as a
// parameter and never reads the clock itself.
#pragma once

#include <atomic>
#include <chrono>

#include <boost/asio/basic_waitable_timer.hpp>

namespace crust {

struct clock {
  using base = std::chrono::steady_clock;
  using duration = base::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<clock, duration>;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    return time_point(base::now().time_since_epoch() +
                      duration(offset_.load(std::memory_order_relaxed)));
  }
  // Test hook: moves this process's clock forward. Never call it in
  // production code; time only moves forward.
  static void advance(duration d) noexcept {
    offset_.fetch_add(d.count(), std::memory_order_relaxed);
  }

 private:
  static inline std::atomic<rep> offset_{0};
};

using duration = clock::duration;
using time_point = clock::time_point;
using timer = boost::asio::basic_waitable_timer<clock>;

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::seconds;

}  // namespace crust
