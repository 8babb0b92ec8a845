// A STUN client transaction's retransmission schedule over UDP (RFC 8489
// §6.2.1), as a decision with no I/O: the caller sends when told and asks
// again at deadline().
//
// Requests go at 0, RTO, 3 RTO, 7 RTO, ... (the gap doubles) until `requests`
// (Rc) have gone; the transaction fails `last_wait` (Rm) times the initial
// RTO after the last one. The RFC's defaults (RTO 500 ms, Rc 7, Rm 16) give
// sends at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s and a timeout at 39.5 s.
#pragma once

#include "crust/base/clock.hpp"

#include <chrono>

namespace crust::nat::stun {

struct retransmission {
  duration rto = std::chrono::milliseconds(500);
  unsigned requests = 7;    // Rc
  unsigned last_wait = 16;  // Rm, in initial RTOs
};

class transaction_timer {
 public:
  enum class step { wait, send, give_up };

  // The first request goes at `start` (the caller sends it at once).
  transaction_timer(const retransmission& r, time_point start)
      : r_(r), next_(start + r.rto), gap_(r.rto) {
    if (r_.requests <= 1) next_ = start + r_.rto * r_.last_wait;
  }

  // When fire() must next be called.
  time_point deadline() const noexcept { return next_; }
  unsigned sent() const noexcept { return sent_; }

  // Before deadline(): wait. At or after it: send the request again, or
  // give up. The schedule keeps to its planned times, whenever fire() runs.
  step fire(time_point now) noexcept {
    if (now < next_) return step::wait;
    if (sent_ >= r_.requests) return step::give_up;
    ++sent_;
    gap_ *= 2;
    next_ += sent_ >= r_.requests ? r_.rto * r_.last_wait : gap_;
    return step::send;
  }

 private:
  retransmission r_;
  time_point next_;
  duration gap_;
  unsigned sent_ = 1;
};

}  // namespace crust::nat::stun
