#include "transports/rate_limit.hpp"

#include <algorithm>

namespace crust::transport {

bool rate_limiter::allow(const boost::asio::ip::address& source, time_point now) {
  auto refill = [now](double& tokens, time_point& last, double rate, double cap) {
    if (last != time_point{})
      tokens = std::min(cap, tokens + rate * std::chrono::duration<double>(now - last).count());
    else
      tokens = cap;
    last = now;
  };
  refill(global_tokens_, global_last_, global_rate_, global_rate_);
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_sources_) {
      auto oldest = std::min_element(buckets_.begin(), buckets_.end(), [](auto& a, auto& b) {
        return a.second.last < b.second.last;
      });
      buckets_.erase(oldest);
    }
    it = buckets_.emplace(source, bucket{}).first;
  }
  refill(it->second.tokens, it->second.last, rate_, burst_);
  if (global_tokens_ < 1 || it->second.tokens < 1) return false;
  global_tokens_ -= 1;
  it->second.tokens -= 1;
  return true;
}

}  // namespace crust::transport
