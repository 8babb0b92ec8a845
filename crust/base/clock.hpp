// The one clock of the library. Decision logic takes `now` as a parameter
// (so tests drive it with any time they like); coroutines wait on `timer`.
#pragma once

#include <chrono>

#include <boost/asio/basic_waitable_timer.hpp>

namespace crust {

using clock = std::chrono::steady_clock;
using duration = clock::duration;
using time_point = clock::time_point;
using timer = boost::asio::basic_waitable_timer<clock>;

using std::chrono::milliseconds;
using std::chrono::seconds;

}  // namespace crust
