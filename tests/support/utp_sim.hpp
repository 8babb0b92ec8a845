// Two µTP connection state machines joined by a simulated link on a manual
// clock: per-direction propagation delay, a bottleneck rate with its queue,
// and a hook that may drop, duplicate or delay each datagram. Exact and
// fast: a 10 MiB transfer across a lossy link runs in milliseconds.
#pragma once

#include "transports/utp/connection.hpp"

#include <functional>
#include <map>
#include <optional>
#include <vector>

namespace crust::test {

struct utp_link {
  duration delay = milliseconds(10);  // one way
  double rate = 0;                    // bytes per second at the bottleneck; 0 = unlimited
};

class utp_sim {
 public:
  using link_config = utp_link;
  enum side { a_side = 0, b_side = 1 };
  // What the hook decides for one datagram: how many copies arrive (0 =
  // dropped) and extra delay for them.
  struct fate {
    int copies = 1;
    duration extra{};
  };
  // `index` counts datagrams sent from `from`, from 0.
  using hook_fn = std::function<fate(side from, std::size_t index, const utp::packet& p)>;

  explicit utp_sim(utp::settings s = {}, link_config link = {}, std::uint16_t isn_a = 1000,
                   std::uint16_t isn_b = 5000)
      : settings_(s), link_(link) {
    a_.emplace(utp::connection::dial(77, isn_a, now_, s));
    isn_b_ = isn_b;
  }

  hook_fn hook;
  std::vector<std::uint8_t> logged_types[2];  // every datagram's type, per sender

  utp::connection& a() { return *a_; }
  utp::connection& b() { return *b_; }
  bool b_exists() const { return b_.has_value(); }
  time_point now() const { return now_; }
  duration elapsed() const { return now_ - start_; }
  std::size_t sent(side s) const { return sent_[s]; }
  duration max_queue_delay[2]{};
  // Queueing delay at the bottleneck seen by each packet a sent, for LEDBAT checks.
  std::vector<std::pair<time_point, duration>> queue_samples;

  // Runs until `done()` or `limit` of simulated time passes; returns done().
  bool run_until(const std::function<bool()>& done, duration limit = seconds(600)) {
    const auto end = now_ + limit;
    for (;;) {
      pump();
      if (done()) return true;
      auto next = std::min(a_->next_deadline(), b_ ? b_->next_deadline() : time_point::max());
      if (!in_flight_.empty()) next = std::min(next, in_flight_.begin()->first);
      if (next == time_point::max() || next > end) return done();
      if (next > now_) now_ = next;
      deliver_due();
      a_->on_timer(now_);
      if (b_) b_->on_timer(now_);
    }
  }

  // Flushes both ends and lets their applications move bytes.
  void pump() {
    for (int round = 0; round < 4; ++round) {
      if (on_pump) on_pump();
      flush(a_side);
      if (b_) flush(b_side);
    }
  }
  std::function<void()> on_pump;  // the applications: write and read here

  // The path's MTU, as the largest datagram it carries (0: no limit).
  // Larger ones pass as IP fragments while `fragments` holds, except MTU
  // probes, which are sent unfragmentable and are dropped; without it,
  // every larger datagram is dropped (a black hole).
  std::size_t path_mtu = 0;
  bool fragments = true;
  std::size_t dropped_for_size = 0;
  std::size_t largest_data[2]{};  // the largest DATA datagram each side sent

 private:
  void flush(side from) {
    auto& c = from == a_side ? *a_ : *b_;
    c.flush(now_, [&](byte_span d) { transmit(from, d); });
  }

  void transmit(side from, byte_span d) {
    auto p = utp::decode(d);
    const std::size_t index = sent_[from]++;
    logged_types[from].push_back(p ? static_cast<std::uint8_t>(p->h.type) : 255);
    if (p && p->h.type == utp::packet_type::data)
      largest_data[from] = std::max(largest_data[from], d.size());
    if (path_mtu > 0 && d.size() > path_mtu && (!fragments || (p && p->mtu_probe))) {
      ++dropped_for_size;
      return;
    }
    fate f;
    if (hook && p) f = hook(from, index, *p);
    if (f.copies == 0) return;
    auto at = now_ + link_.delay + f.extra;
    if (link_.rate > 0) {
      auto& free_at = busy_until_[from];
      const auto start = std::max(free_at, now_);
      const auto queue = start - now_;
      if (queue > max_queue_delay[from]) max_queue_delay[from] = queue;
      if (from == a_side) queue_samples.emplace_back(now_, queue);
      free_at = start + std::chrono::duration_cast<duration>(std::chrono::duration<double>(
                            static_cast<double>(d.size()) / link_.rate));
      at = free_at + link_.delay + f.extra;
    }
    for (int i = 0; i < f.copies; ++i)
      in_flight_.emplace(at + i * microseconds_(1), std::make_pair(from == a_side ? b_side : a_side,
                                                                   bytes(d.begin(), d.end())));
  }

  static duration microseconds_(int n) { return std::chrono::microseconds(n); }

  void deliver_due() {
    while (!in_flight_.empty() && in_flight_.begin()->first <= now_) {
      auto [to, data] = std::move(in_flight_.begin()->second);
      in_flight_.erase(in_flight_.begin());
      auto p = utp::decode(data);
      if (!p) continue;
      if (to == b_side && !b_) {
        if (p->h.type != utp::packet_type::syn) continue;
        b_.emplace(utp::connection::accept(*p, isn_b_, now_, settings_));
        continue;
      }
      (to == a_side ? *a_ : *b_).on_packet(*p, now_);
    }
  }

  utp::settings settings_;
  link_config link_;
  time_point start_{}, now_{};
  std::optional<utp::connection> a_, b_;
  std::uint16_t isn_b_ = 0;
  std::multimap<time_point, std::pair<side, bytes>> in_flight_;
  time_point busy_until_[2]{};
  std::size_t sent_[2]{};
};

// A deterministic byte pattern, so received data can be checked in place.
inline byte pattern_byte(std::size_t i, std::uint8_t salt = 0) {
  return static_cast<byte>((i * 131 + (i >> 8) * 7 + salt) & 0xff);
}

// One direction of an application transfer: writes `total` bytes of the
// pattern into `from`, reads them out of `to`, and checks every byte.
struct transfer {
  std::size_t total = 0;
  std::uint8_t salt = 0;
  std::size_t written = 0, read = 0;
  bool corrupt = false;

  void step(utp::connection& from, utp::connection& to) {
    byte buf[4096];
    while (written < total) {
      const std::size_t n = std::min(sizeof buf, total - written);
      for (std::size_t i = 0; i < n; ++i) buf[i] = pattern_byte(written + i, salt);
      const auto took = from.write(byte_span(buf, n));
      written += took;
      if (took < n) break;
    }
    for (;;) {
      const auto n = to.read(mutable_byte_span(buf, sizeof buf));
      if (n == 0) break;
      for (std::size_t i = 0; i < n; ++i)
        if (buf[i] != pattern_byte(read + i, salt)) corrupt = true;
      read += n;
    }
  }
  bool done() const { return read == total; }
};

}  // namespace crust::test
