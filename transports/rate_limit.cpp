#include "transports/rate_limit.hpp"

#include "transports/endpoint.hpp"

#include <algorithm>

namespace crust::transport {

namespace {
void refill(double& tokens, time_point& last, time_point now, double rate, double cap) {
  if (last != time_point{})
    tokens = std::min(cap, tokens + rate * std::chrono::duration<double>(now - last).count());
  else
    tokens = cap;
  last = now;
}
}  // namespace

bool rate_limiter::exhausted(const boost::asio::ip::address& source, time_point now) {
  auto it = buckets_.find(source);
  if (it == buckets_.end()) return false;
  refill(it->second.tokens, it->second.last, now, rate_, burst_);
  return it->second.tokens < 1;
}

bool rate_limiter::allow(const boost::asio::ip::address& source, time_point now) {
  refill(global_tokens_, global_last_, now, global_rate_, global_rate_);
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
  refill(it->second.tokens, it->second.last, now, rate_, burst_);
  if (global_tokens_ < 1 || it->second.tokens < 1) return false;
  global_tokens_ -= 1;
  it->second.tokens -= 1;
  return true;
}

boost::asio::ip::address source_of(const boost::asio::ip::address& a) {
  auto c = canonical(a);
  if (!c.is_v6()) return c;
  auto b = c.to_v6().to_bytes();
  std::fill(b.begin() + 8, b.end(), 0);
  return boost::asio::ip::address_v6(b);
}

}  // namespace crust::transport
