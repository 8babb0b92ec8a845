#include "nat/relay.hpp"

#include "crust/secure/message.hpp"

#include <algorithm>

namespace crust::nat::relay {

namespace {

enum class op : byte {
  introduce = 1,
  introduction = 2,
  introduce_reply = 3,
  introduce_answer = 4,
  introduce_failed = 5,
  sync = 6,
  synced = 7,
  open = 8,
  incoming = 9,
  accept = 10,
  data = 11,
  window = 12,
  close = 13,
  introduce_refuse = 14,
};

constexpr std::uint32_t top_bit = 0x80000000u;

void put_id(bytes& b, const public_id& id) {
  append(b, id.key);
}
void put_circuit(bytes& b, const circuit_ref& c) {
  put_u32(b, (c.number & ~top_bit) | (c.opened_by_me ? top_bit : 0));
}
void put_text(bytes& b, std::string_view t) {
  t = t.substr(0, max_text);
  b.insert(b.end(), t.begin(), t.end());
}

// Reads the parts of a record body front to back; any shortfall is a
// protocol violation.
struct cursor {
  byte_span rest;
  bool ok = true;
  bool need(std::size_t n) {
    if (rest.size() < n) ok = false;
    return ok;
  }
  public_id id() {
    public_id out{};
    if (!need(32)) return out;
    std::copy_n(rest.begin(), 32, out.key.begin());
    rest = rest.subspan(32);
    return out;
  }
  std::uint32_t u32() {
    if (!need(4)) return 0;
    auto v = get_u32(rest.data());
    rest = rest.subspan(4);
    return v;
  }
  std::uint8_t u8() {
    if (!need(1)) return 0;
    auto v = rest[0];
    rest = rest.subspan(1);
    return v;
  }
  circuit_ref circuit() {
    const auto raw = u32();
    // The sender set the top bit if it opened the circuit: then we did not.
    return {raw & ~top_bit, (raw & top_bit) == 0};
  }
  bytes tail(std::size_t limit) {
    if (rest.size() > limit) ok = false;
    bytes out(rest.begin(), rest.end());
    rest = {};
    return out;
  }
  std::string text() {
    if (rest.size() > max_text) ok = false;
    std::string out(rest.begin(), rest.end());
    rest = {};
    return out;
  }
  bool done() const { return ok && rest.empty(); }
};

}  // namespace

std::string_view to_string(reason r) noexcept {
  switch (r) {
    case reason::normal:
      return "closed";
    case reason::not_connected:
      return "the relay is not connected to the target";
    case reason::refused:
      return "the target refused";
    case reason::not_relaying:
      return "the peer does not relay";
    case reason::quota:
      return "a relay quota was exceeded";
    case reason::peer_gone:
      return "the other end's connection to the relay ended";
    case reason::protocol_error:
      return "protocol error";
    case reason::timed_out:
      return "timed out";
  }
  return "unknown reason";
}

bytes encode(const record& r) {
  bytes b{static_cast<byte>(secure::record_type::relay)};
  auto op_of = [&](op o) { b.push_back(static_cast<byte>(o)); };
  std::visit(
      [&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, introduce>) {
          op_of(op::introduce);
          put_id(b, x.target);
          append(b, byte_span(x.info).first(std::min(x.info.size(), max_info)));
        } else if constexpr (std::is_same_v<T, introduction>) {
          op_of(op::introduction);
          put_id(b, x.origin);
          append(b, byte_span(x.info).first(std::min(x.info.size(), max_info)));
        } else if constexpr (std::is_same_v<T, introduce_reply>) {
          op_of(op::introduce_reply);
          put_id(b, x.origin);
          put_u32(b, x.held_ms);
          append(b, byte_span(x.info).first(std::min(x.info.size(), max_info)));
        } else if constexpr (std::is_same_v<T, introduce_answer>) {
          op_of(op::introduce_answer);
          put_id(b, x.target);
          put_u32(b, x.held_ms);
          append(b, byte_span(x.info).first(std::min(x.info.size(), max_info)));
        } else if constexpr (std::is_same_v<T, introduce_failed>) {
          op_of(op::introduce_failed);
          put_id(b, x.target);
          b.push_back(static_cast<byte>(x.why));
          put_text(b, x.text);
        } else if constexpr (std::is_same_v<T, introduce_refuse>) {
          op_of(op::introduce_refuse);
          put_id(b, x.origin);
          b.push_back(static_cast<byte>(x.why));
          put_text(b, x.text);
        } else if constexpr (std::is_same_v<T, sync>) {
          op_of(op::sync);
          put_id(b, x.target);
        } else if constexpr (std::is_same_v<T, synced>) {
          op_of(op::synced);
          put_id(b, x.origin);
        } else if constexpr (std::is_same_v<T, open>) {
          op_of(op::open);
          put_circuit(b, x.circuit);
          put_id(b, x.target);
        } else if constexpr (std::is_same_v<T, incoming>) {
          op_of(op::incoming);
          put_circuit(b, x.circuit);
          put_id(b, x.origin);
        } else if constexpr (std::is_same_v<T, accept>) {
          op_of(op::accept);
          put_circuit(b, x.circuit);
        } else if constexpr (std::is_same_v<T, data>) {
          op_of(op::data);
          put_circuit(b, x.circuit);
          append(b, byte_span(x.payload).first(std::min(x.payload.size(), max_circuit_data)));
        } else if constexpr (std::is_same_v<T, window>) {
          op_of(op::window);
          put_circuit(b, x.circuit);
          put_u32(b, x.more);
        } else if constexpr (std::is_same_v<T, close>) {
          op_of(op::close);
          put_circuit(b, x.circuit);
          b.push_back(static_cast<byte>(x.why));
          put_text(b, x.text);
        }
      },
      r);
  return b;
}

result<record> decode(byte_span body) {
  const auto violation = make_error_code(errc::protocol_violation);
  if (body.empty()) return violation;
  cursor c{body.subspan(1)};
  auto why = [&]() {
    const auto v = c.u8();
    return v <= static_cast<std::uint8_t>(reason::timed_out) ? static_cast<reason>(v)
                                                             : reason::protocol_error;
  };
  record out;
  switch (static_cast<op>(body[0])) {
    case op::introduce: {
      auto t = c.id();
      out = introduce{t, c.tail(max_info)};
      break;
    }
    case op::introduction: {
      auto o = c.id();
      out = introduction{o, c.tail(max_info)};
      break;
    }
    case op::introduce_reply: {
      auto o = c.id();
      auto held = c.u32();
      out = introduce_reply{o, held, c.tail(max_info)};
      break;
    }
    case op::introduce_answer: {
      auto t = c.id();
      auto held = c.u32();
      out = introduce_answer{t, held, c.tail(max_info)};
      break;
    }
    case op::introduce_failed: {
      auto t = c.id();
      auto w = why();
      out = introduce_failed{t, w, c.text()};
      break;
    }
    case op::introduce_refuse: {
      auto o = c.id();
      auto w = why();
      out = introduce_refuse{o, w, c.text()};
      break;
    }
    case op::sync:
      out = sync{c.id()};
      break;
    case op::synced:
      out = synced{c.id()};
      break;
    case op::open: {
      auto n = c.circuit();
      out = open{n, c.id()};
      break;
    }
    case op::incoming: {
      auto n = c.circuit();
      out = incoming{n, c.id()};
      break;
    }
    case op::accept:
      out = accept{c.circuit()};
      break;
    case op::data: {
      auto n = c.circuit();
      auto payload = c.tail(max_circuit_data);
      if (payload.empty()) return violation;
      out = data{n, std::move(payload)};
      break;
    }
    case op::window: {
      auto n = c.circuit();
      out = window{n, c.u32()};
      break;
    }
    case op::close: {
      auto n = c.circuit();
      auto w = why();
      out = close{n, w, c.text()};
      break;
    }
    default:
      return violation;
  }
  if (!c.done()) return violation;
  return out;
}

// --- the relay's switch -----------------------------------------------------

std::optional<std::pair<std::uint64_t, bool>> relay_switch::find(const public_id& from,
                                                                 const circuit_ref& c) const {
  auto it = by_half_.find(half{from, c});
  if (it == by_half_.end()) return std::nullopt;
  return it->second;
}

std::size_t relay_switch::count_for(const public_id& peer) const {
  return static_cast<std::size_t>(std::count_if(joined_.begin(), joined_.end(), [&](const auto& j) {
    return j.second.a.peer == peer || j.second.b.peer == peer;
  }));
}

bool relay_switch::allow_introduction(const public_id& from, time_point now) {
  auto& times = intro_times_[from];
  std::erase_if(times, [&](time_point t) { return now - t >= std::chrono::minutes(1); });
  if (times.size() >= limits_.introductions_per_minute) return false;
  times.push_back(now);
  return true;
}

void relay_switch::drop(std::uint64_t key) {
  auto it = joined_.find(key);
  if (it == joined_.end()) return;
  by_half_.erase(it->second.a);
  by_half_.erase(it->second.b);
  joined_.erase(it);
}

relay_switch::verdict relay_switch::on_record(const public_id& from, const record& r,
                                              const connected_fn& connected, time_point now) {
  verdict v;
  auto send = [&](const public_id& to, const record& rec) { v.out.push_back({to, encode(rec)}); };
  auto refuse_intro = [&](const public_id& target, reason why, std::string text) {
    ++stats_.refusals;
    send(from, introduce_failed{target, why, std::move(text)});
  };

  if (const auto* x = std::get_if<introduce>(&r)) {
    if (x->target == me_) return v;  // a direct exchange: the endpoint's
    v.handled = true;
    if (!relaying_) {
      refuse_intro(x->target, reason::not_relaying, "introductions are off here");
    } else if (!allow_introduction(from, now)) {
      refuse_intro(x->target, reason::quota, "too many introductions; try again in a minute");
    } else if (x->target == from || !connected(x->target)) {
      refuse_intro(x->target, reason::not_connected, "not connected to that peer");
    } else {
      ++stats_.introductions;
      send(x->target, introduction{from, x->info});
    }
    return v;
  }
  if (const auto* x = std::get_if<introduce_reply>(&r)) {
    v.handled = true;
    if (x->origin != me_ && connected(x->origin))
      send(x->origin, introduce_answer{from, x->held_ms, x->info});
    return v;
  }
  if (const auto* x = std::get_if<introduce_refuse>(&r)) {
    // A target refusing an introduction we passed on: back to its origin.
    v.handled = true;
    if (x->origin != me_ && connected(x->origin))
      send(x->origin, introduce_failed{from, x->why, x->text});
    return v;
  }
  if (const auto* x = std::get_if<sync>(&r)) {
    if (x->target == me_) return v;
    v.handled = true;
    if (connected(x->target)) send(x->target, synced{from});
    return v;
  }
  if (const auto* x = std::get_if<open>(&r)) {
    v.handled = true;
    // Circuits are numbered by their opener: A opened this one.
    if (x->circuit.opened_by_me || find(from, x->circuit)) {
      send(from, close{x->circuit, reason::protocol_error, "circuit number in use"});
      return v;
    }
    const char* refusal = nullptr;
    reason why = reason::quota;
    if (!relaying_) {
      refusal = "this peer does not relay";
      why = reason::not_relaying;
    } else if (x->target == me_ || x->target == from || !connected(x->target)) {
      refusal = "not connected to that peer";
      why = reason::not_connected;
    } else if (joined_.size() >= limits_.circuits) {
      refusal = "too many circuits";
    } else if (count_for(from) >= limits_.circuits_per_peer ||
               count_for(x->target) >= limits_.circuits_per_peer) {
      refusal = "too many circuits for that peer";
    }
    if (refusal) {
      ++stats_.refusals;
      send(from, close{x->circuit, why, refusal});
      return v;
    }
    const auto key = next_key_++;
    joined j;
    j.a = half{from, x->circuit};
    j.b = half{x->target, circuit_ref{next_number_++ & ~top_bit, true}};
    if (next_number_ >= top_bit) next_number_ = 1;
    by_half_[j.a] = {key, true};
    by_half_[j.b] = {key, false};
    send(x->target, incoming{j.b.ref, from});
    joined_.emplace(key, j);
    ++stats_.circuits_opened;
    return v;
  }

  // The rest name a circuit: R's if it joins it.
  circuit_ref ref;
  if (const auto* x = std::get_if<accept>(&r))
    ref = x->circuit;
  else if (const auto* y = std::get_if<data>(&r))
    ref = y->circuit;
  else if (const auto* z = std::get_if<window>(&r))
    ref = z->circuit;
  else if (const auto* w = std::get_if<close>(&r))
    ref = w->circuit;
  else
    return v;  // introduction, introduce_answer, introduce_failed, synced, incoming: an endpoint's
  auto where = find(from, ref);
  if (!where) return v;
  v.handled = true;
  const auto key = where->first;
  const bool from_a = where->second;
  auto& j = joined_.at(key);
  const half& other = from_a ? j.b : j.a;
  auto shut = [&](reason why, std::string text) {
    ++stats_.refusals;
    send(from, close{ref, why, text});
    send(other.peer, close{other.ref, why, std::move(text)});
    drop(key);
  };
  if (std::holds_alternative<accept>(r)) {
    if (from_a || j.accepted) return shut(reason::protocol_error, "unexpected accept"), v;
    j.accepted = true;
    send(other.peer, accept{other.ref});
  } else if (const auto* d = std::get_if<data>(&r)) {
    if (!j.accepted) return shut(reason::protocol_error, "data before accept"), v;
    auto& credit = from_a ? j.credit_ab : j.credit_ba;
    credit -= static_cast<std::int64_t>(d->payload.size());
    j.bytes += d->payload.size();
    if (credit < 0) return shut(reason::quota, "sent past the window"), v;
    if (j.bytes > limits_.circuit_bytes)
      return shut(reason::quota, "circuit byte quota used up"), v;
    stats_.bytes_relayed += d->payload.size();
    send(other.peer, data{other.ref, d->payload});
  } else if (const auto* w = std::get_if<window>(&r)) {
    if (!j.accepted) return shut(reason::protocol_error, "window before accept"), v;
    // The sender of a window record lets the other end send more.
    auto& credit = from_a ? j.credit_ba : j.credit_ab;
    credit = std::min<std::int64_t>(credit + w->more, std::int64_t{1} << 32);
    send(other.peer, window{other.ref, w->more});
  } else if (const auto* c = std::get_if<close>(&r)) {
    send(other.peer, close{other.ref, c->why, c->text});
    drop(key);
  }
  return v;
}

std::vector<outgoing> relay_switch::on_peer_gone(const public_id& peer) {
  std::vector<outgoing> out;
  std::vector<std::uint64_t> gone;
  for (const auto& [key, j] : joined_) {
    if (j.a.peer == peer)
      out.push_back(
          {j.b.peer, encode(close{j.b.ref, reason::peer_gone, "the other end left the relay"})});
    else if (j.b.peer == peer)
      out.push_back(
          {j.a.peer, encode(close{j.a.ref, reason::peer_gone, "the other end left the relay"})});
    else
      continue;
    gone.push_back(key);
  }
  for (auto k : gone) drop(k);
  intro_times_.erase(peer);
  return out;
}

}  // namespace crust::nat::relay
