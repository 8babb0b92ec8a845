#include "crust/secure/message.hpp"

namespace crust {

const char* to_string(priority p) noexcept {
  switch (p) {
    case priority::high:
      return "high";
    case priority::normal:
      return "normal";
    case priority::low:
      return "low";
  }
  return "?";
}

const char* to_string(close_reason r) noexcept {
  switch (r) {
    case close_reason::normal:
      return "normal";
    case close_reason::shutdown:
      return "shutdown";
    case close_reason::duplicate:
      return "duplicate";
    case close_reason::protocol_error:
      return "protocol error";
    case close_reason::timeout:
      return "timeout";
    case close_reason::not_allowed:
      return "not allowed";
  }
  return "unknown";
}

const char* to_string(node_role r) noexcept {
  switch (r) {
    case node_role::node:
      return "node";
    case node_role::client:
      return "client";
  }
  return "?";
}

}  // namespace crust

namespace crust::secure {

namespace {
constexpr byte flag_first = 1, flag_last = 2, flag_signed = 4;
constexpr byte flag_bootstrap = 1;
constexpr std::string_view signed_domain = "crust-signed-message-v1";
}  // namespace

std::size_t first_fragment_header(bool signed_msg) noexcept {
  return fragment_header + 4 + (signed_msg ? 64 : 0);
}

result<std::optional<byte_span>> record_reader::next() {
  if (empty_body_) return make_error_code(errc::protocol_violation);
  if (rest_.empty()) return std::optional<byte_span>{};
  if (rest_.size() < record_prefix) return make_error_code(errc::protocol_violation);
  const std::size_t len = get_u16(rest_.data());
  if (len == 0 || rest_.size() - record_prefix < len)
    return make_error_code(errc::protocol_violation);
  byte_span rec = rest_.subspan(record_prefix, len);
  rest_ = rest_.subspan(record_prefix + len);
  return std::optional<byte_span>(rec);
}

bytes encode_close(close_reason reason, std::string_view text) {
  bytes b = {static_cast<byte>(record_type::close), static_cast<byte>(reason)};
  append(b, as_bytes(text.substr(0, max_close_text)));
  return b;
}

bytes encode_heartbeat() {
  return {static_cast<byte>(record_type::heartbeat)};
}

bytes encode_hello(node_role role, bool bootstrap, std::uint16_t listen_port,
                   std::uint16_t udp_port) {
  // Built whole: GCC 12 warns falsely (-Warray-bounds) on growing a
  // vector made from a three-byte initializer list.
  return {static_cast<byte>(record_type::hello),
          static_cast<byte>(role),
          static_cast<byte>(bootstrap ? flag_bootstrap : 0),
          static_cast<byte>(listen_port >> 8),
          static_cast<byte>(listen_port & 0xff),
          static_cast<byte>(udp_port >> 8),
          static_cast<byte>(udp_port & 0xff)};
}

bytes encode_admit(std::uint16_t udp_port) {
  return {static_cast<byte>(record_type::admit), static_cast<byte>(udp_port >> 8),
          static_cast<byte>(udp_port & 0xff)};
}

bytes signed_message_body(const key32& sender, const key32& receiver, byte_span payload) {
  bytes b(signed_domain.begin(), signed_domain.end());
  append(b, sender);
  append(b, receiver);
  append(b, payload);
  return b;
}

result<incoming> reassembler::feed(byte_span body) {
  const auto violation = make_error_code(errc::protocol_violation);
  if (body.empty()) return violation;
  switch (static_cast<record_type>(body[0])) {
    case record_type::heartbeat:
      if (body.size() != 1) return violation;
      return incoming{incoming_heartbeat{}};
    case record_type::close: {
      if (body.size() < 2 || body.size() > 2 + max_close_text) return violation;
      incoming_close c;
      c.reason = body[1] <= static_cast<byte>(close_reason::not_allowed)
                     ? static_cast<close_reason>(body[1])
                     : close_reason::protocol_error;
      c.text.assign(reinterpret_cast<const char*>(body.data() + 2), body.size() - 2);
      return incoming{std::move(c)};
    }
    case record_type::hello:
      if ((body.size() != 3 && body.size() != 5 && body.size() != 7) ||
          body[1] > static_cast<byte>(node_role::client) || (body[2] & ~flag_bootstrap) != 0)
        return violation;
      return incoming{
          incoming_hello{static_cast<node_role>(body[1]), body[2] == flag_bootstrap,
                         body.size() >= 5 ? get_u16(body.data() + 3) : std::uint16_t{0},
                         body.size() == 7 ? get_u16(body.data() + 5) : std::uint16_t{0}}};
    case record_type::admit:
      if (body.size() != 1 && body.size() != 3) return violation;
      return incoming{
          incoming_admit{body.size() == 3 ? get_u16(body.data() + 1) : std::uint16_t{0}}};
    case record_type::relay:
      if (body.size() < 2 || body.size() > max_relay_record) return violation;
      return incoming{incoming_relay{bytes(body.begin() + 1, body.end())}};
    case record_type::gossip:
      if (body.size() < 2 || body.size() > max_gossip_record) return violation;
      return incoming{incoming_gossip{bytes(body.begin() + 1, body.end())}};
    case record_type::data:
      break;
    default:
      return violation;
  }
  if (body.size() < fragment_header) return violation;
  const byte flags = body[1];
  const byte prio = body[2];
  if ((flags & ~(flag_first | flag_last | flag_signed)) != 0 || prio >= priority_count)
    return violation;
  const bool first = flags & flag_first;
  const bool last = flags & flag_last;
  const bool is_signed = flags & flag_signed;
  byte_span data = body.subspan(fragment_header);

  if (first) {
    if (in_message_) return violation;
    const std::size_t extra = 4 + (is_signed ? 64 : 0);
    if (data.size() < extra) return violation;
    expected_ = get_u32(data.data());
    received_ = 0;
    current_ = incoming_message{};
    current_.prio = static_cast<priority>(prio);
    if (is_signed) {
      signature64 sig{};
      std::copy_n(data.begin() + 4, 64, sig.begin());
      current_.signature = sig;
    }
    data = data.subspan(extra);
    in_message_ = true;
    // Never reserve from a declared length: grow only as bytes arrive.
    // Over our limit it is skipped, even when it fits one record (a limit
    // below a frame's size makes that possible).
    discarding_ = expected_ > max_;
  } else if (!in_message_ || static_cast<byte>(current_.prio) != prio ||
             current_.signature.has_value() != is_signed) {
    return violation;
  }

  received_ += data.size();
  if (received_ > expected_) return violation;
  if (!discarding_) append(current_.payload, data);
  if (!last) return incoming{};
  in_message_ = false;
  if (received_ != expected_) return violation;
  if (discarding_) {
    discarding_ = false;
    current_ = incoming_message{};
    return incoming{incoming_oversize{expected_}};
  }
  return incoming{std::move(current_)};
}

void send_queue::fifo::pop_front() {
  items_[head_] = outgoing_message{};  // the payload goes now, not at the next compaction
  if (++head_ == items_.size()) {
    // Empty: keep a small vector's room for the next burst, free a big one.
    if (items_.capacity() > 64)
      std::vector<outgoing_message>().swap(items_);
    else
      items_.clear();
    head_ = 0;
  } else if (head_ >= 64 && head_ * 2 >= items_.size()) {
    // Half of it is spent: move the rest down (amortised O(1) per message).
    items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
}

send_queue::dropped send_queue::push(outgoing_message msg) {
  dropped d;
  const std::size_t size = msg.payload.size();
  const auto prio = static_cast<std::size_t>(msg.prio);
  // Drop the oldest of the least important first, never anything as
  // important as the newcomer.
  for (std::size_t p = priority_count; p-- > prio + 1 && bytes_ + size > max_bytes_;) {
    auto& q = queues_[p];
    while (!q.empty() && bytes_ + size > max_bytes_) {
      bytes_ -= q.front().payload.size();
      d.bytes += q.front().payload.size();
      ++d.count;
      d.lowest_dropped = std::max(d.lowest_dropped, static_cast<priority>(p));
      q.pop_front();
      --count_;
    }
  }
  if (bytes_ + size > max_bytes_ && count_ > 0) {
    d.refused_new = true;
    d.bytes += size;
    ++d.count;
    d.lowest_dropped = std::max(d.lowest_dropped, msg.prio);
    return d;
  }
  // An empty queue always takes one message, however large (up to the
  // message size limit checked by the caller), so progress is never blocked.
  bytes_ += size;
  ++count_;
  queues_[prio].push_back(std::move(msg));
  return d;
}

std::optional<outgoing_message> send_queue::pop() {
  for (auto& q : queues_) {
    if (!q.empty()) {
      auto m = std::move(q.front());
      q.pop_front();
      bytes_ -= m.payload.size();
      --count_;
      return m;
    }
  }
  return std::nullopt;
}

}  // namespace crust::secure
