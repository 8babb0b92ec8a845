#include "bootstrap/gossip.hpp"

#include "bootstrap/cache.hpp"

#include <algorithm>
#include <bit>

namespace crust::bootstrap {

namespace {
constexpr byte kind_push = 1, kind_find = 2, kind_found = 3;
constexpr byte flag_answer = 1;
constexpr byte mode_sample = 0, mode_near = 1;
constexpr std::int64_t rate_idle_seconds = 120;

// XOR distance from `target`, compared as a big-endian number.
secure::key32 distance(const secure::key32& a, const secure::key32& b) {
  secure::key32 d{};
  for (std::size_t i = 0; i < d.size(); ++i) d[i] = a[i] ^ b[i];
  return d;
}

// Where a record's bounds are counted: its dial-back address.
boost::asio::ip::address anchor(const contact_record& r) {
  if (auto ep = r.tcp_endpoint()) return ep->address();
  return r.candidates.front().address;
}

// Reads "u8 n | n x (u16 len | record)" at `at`: spans into `d`. nullopt if
// the framing is broken.
std::optional<std::vector<byte_span>> read_records(byte_span d, std::size_t at) {
  if (at >= d.size()) return std::nullopt;
  const std::size_t n = d[at++];
  std::vector<byte_span> out;
  for (std::size_t i = 0; i < n; ++i) {
    if (at + 2 > d.size()) return std::nullopt;
    const std::size_t len = get_u16(d.data() + at);
    at += 2;
    if (len > d.size() - at) return std::nullopt;
    out.push_back(d.subspan(at, len));
    at += len;
  }
  if (at != d.size()) return std::nullopt;
  return out;
}

// Moves `n` elements of `v` chosen at random to its front (a partial
// Fisher-Yates shuffle) and drops the rest.
template <class T>
void keep_random(std::vector<T>& v, std::size_t n, std::mt19937_64& rng) {
  n = std::min(n, v.size());
  for (std::size_t i = 0; i < n; ++i) {
    std::uniform_int_distribution<std::size_t> pick(i, v.size() - 1);
    std::swap(v[i], v[pick(rng)]);
  }
  v.resize(n);
}

void write_records(bytes& out, const std::vector<const bytes*>& records) {
  out.push_back(static_cast<byte>(records.size()));
  for (const bytes* r : records) {
    put_u16(out, static_cast<std::uint16_t>(r->size()));
    append(out, *r);
  }
}
}  // namespace

gossip::gossip(public_id self, std::string network_name, gossip_limits limits, std::uint64_t seed)
    : self_(self), network_(std::move(network_name)), limits_(limits), rng_(seed) {
  verify_ = [this](const contact_record& r, byte_span) { return r.verify(network_); };
  limits_.records_per_message = std::clamp<std::size_t>(limits_.records_per_message, 1, 255);
  limits_.max_find_count = std::clamp<std::size_t>(limits_.max_find_count, 1, 255);
}

unsigned gossip::bucket_of(const public_id& self, const public_id& other) noexcept {
  unsigned bits = 0;
  for (std::size_t i = 0; i < self.key.size(); ++i) {
    const auto x = static_cast<std::uint8_t>(self.key[i] ^ other.key[i]);
    if (x != 0) return bits + static_cast<unsigned>(std::countl_zero(x));
    bits += 8;
  }
  return bits;
}

void gossip::set_own(const contact_record& own) {
  own_ = gossip_entry{own, own.encode(), self_, own.issued, true};
}

bool gossip::allow(const public_id& from, std::int64_t now) {
  const double burst = limits_.messages_per_minute;
  auto [it, fresh] = rates_.try_emplace(from, rate_bucket{burst, now});
  auto& b = it->second;
  if (!fresh && now > b.last) {
    b.tokens = std::min(burst, b.tokens + static_cast<double>(now - b.last) * burst / 60.0);
    b.last = now;
  }
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

void gossip::remember(std::string digest, bool good) {
  if (limits_.seen_memory == 0) return;
  if (seen_order_.size() < limits_.seen_memory) {
    seen_order_.push_back(digest);
  } else {
    seen_.erase(seen_order_[seen_next_]);
    seen_order_[seen_next_] = digest;
    seen_next_ = (seen_next_ + 1) % limits_.seen_memory;
  }
  seen_.insert_or_assign(std::move(digest), good);
}

void gossip::count(const gossip_entry& e, int delta) {
  auto bump = [delta](auto& map, const auto& key) {
    auto& n = map[key];
    n = delta > 0 ? n + 1 : n - 1;
    if (n == 0) map.erase(key);
  };
  counts_.total = delta > 0 ? counts_.total + 1 : counts_.total - 1;
  bump(counts_.bucket, bucket_of(self_, e.record.key.id));
  bump(counts_.source, e.source);
  const auto group = address_group(anchor(e.record));
  if (!group.empty()) bump(counts_.group, group);
}

void gossip::erase(std::map<public_id, gossip_entry>::iterator it) {
  count(it->second, -1);
  entries_.erase(it);
}

bool gossip::fits(const contact_record& r, const public_id& from) {
  auto at = [](const auto& map, const auto& key) -> std::size_t {
    auto it = map.find(key);
    return it == map.end() ? 0 : it->second;
  };
  if (counts_.total >= limits_.max_records) {
    ++figures_.refused_full;
    return false;
  }
  if (at(counts_.bucket, bucket_of(self_, r.key.id)) >= limits_.bucket_size) {
    ++figures_.refused_bucket;
    return false;
  }
  if (at(counts_.source, from) >= limits_.per_source) {
    ++figures_.refused_source;
    return false;
  }
  const auto group = address_group(anchor(r));
  if (!group.empty() && at(counts_.group, group) >= limits_.per_group) {
    ++figures_.refused_group;
    return false;
  }
  return true;
}

std::optional<contact_record> gossip::judge(byte_span wire, const public_id& from, std::int64_t now,
                                            error_code* violation, bool* kept) {
  *kept = false;
  ++figures_.records_in;
  auto parsed = contact_record::parse(wire, network_, now, limits_.max_age);
  if (!parsed) {
    const auto code = parsed.error().code;
    if (code == errc::expired) {
      ++figures_.expired;  // clocks differ; not the sender's fault
    } else {
      ++(code == errc::wrong_network ? figures_.wrong_network : figures_.malformed);
      if (violation) *violation = code;
    }
    return std::nullopt;
  }
  auto& r = *parsed;
  if (r.key.id == self_) return std::nullopt;
  auto it = entries_.find(r.key.id);
  if (it != entries_.end()) {
    if (it->second.wire.size() == wire.size() &&
        std::equal(wire.begin(), wire.end(), it->second.wire.begin())) {
      ++figures_.repeats;
      return std::move(r);
    }
    if (r.issued <= it->second.record.issued) {
      ++figures_.ignored_older;
      return std::nullopt;
    }
  }
  const auto hash = secure::sha256(wire);
  std::string digest(hash.begin(), hash.end());
  bool good = false;
  if (auto s = seen_.find(digest); s != seen_.end()) {
    good = s->second;
    if (good) {
      ++figures_.repeats;
      return std::move(r);
    }
  } else {
    ++figures_.signatures_checked;
    good = verify_(r, wire);
    remember(std::move(digest), good);
  }
  if (!good) {
    ++figures_.forged;
    if (violation) *violation = errc::bad_signature;
    return std::nullopt;
  }
  if (!r.tcp_endpoint()) return std::move(r);  // nothing to dial back: used, never kept
  if (it != entries_.end()) {
    // A newer record of a kept id: its slot and source stay; moved
    // endpoints need a new dial-back before they are passed on.
    auto& e = it->second;
    const bool moved = e.record.tcp_endpoint() != r.tcp_endpoint();
    count(e, -1);
    e.record = r;
    e.wire.assign(wire.begin(), wire.end());
    count(e, +1);
    if (moved) {
      e.proven = false;
      e.failed_dials = 0;
    }
    ++figures_.replaced;
    *kept = true;
    return std::move(r);
  }
  if (!fits(r, from)) return std::move(r);
  gossip_entry e{r, bytes(wire.begin(), wire.end()), from, now};
  count(e, +1);
  entries_.emplace(r.key.id, std::move(e));
  ++figures_.kept;
  *kept = true;
  return std::move(r);
}

bool gossip::learn(byte_span wire, const public_id& from, std::int64_t now, error_code* violation) {
  bool kept = false;
  judge(wire, from, now, violation, &kept);
  return kept;
}

gossip::reaction gossip::on_message(const public_id& from, byte_span body, std::int64_t now) {
  reaction out;
  ++figures_.messages_in;
  if (!allow(from, now)) {
    ++figures_.rate_limited;
    out.violation = errc::quota_exceeded;
    return out;
  }
  auto malformed = [&] {
    ++figures_.malformed;
    out.violation = errc::malformed;
    return std::move(out);
  };
  if (body.empty()) return malformed();
  const byte kind = body[0];
  if (kind == kind_push || kind == kind_found) {
    // push: kind, flags, records; found: kind, query (4), records.
    const std::size_t records_at = kind == kind_push ? 2 : 5;
    if (body.size() < records_at + 1) return malformed();
    if (kind == kind_push && (body[1] & ~flag_answer)) return malformed();
    auto records = read_records(body, records_at);
    if (!records) return malformed();
    if (records->size() > limits_.records_per_message) {
      ++figures_.over_count;
      out.violation = errc::protocol_violation;
      return out;
    }
    for (auto wire : *records) {
      bool kept = false;
      auto r = judge(wire, from, now, &out.violation, &kept);
      if (r && kind == kind_found) out.found.push_back(std::move(*r));
    }
    if (kind == kind_found) out.answer_to = get_u32(body.data() + 1);
    if (kind == kind_push && (body[1] & flag_answer)) {
      out.replies.push_back(make_push(false));
    }
    return out;
  }
  if (kind != kind_find || body.size() < 7) return malformed();
  const std::uint32_t query = get_u32(body.data() + 1);
  const byte mode = body[5];
  std::size_t count = 0;
  if (mode == mode_sample && body.size() == 7) {
    count = body[6];
  } else if (mode == mode_near && body.size() == 6 + 32 + 1) {
    count = body[38];
  } else {
    return malformed();
  }
  if (count == 0 || count > limits_.max_find_count) {
    ++figures_.over_count;
    out.violation = errc::protocol_violation;
    return out;
  }
  std::vector<const bytes*> records;
  if (mode == mode_sample) {
    if (own_) records.push_back(&own_->wire);
    for (const auto* e : proven_sample(count - records.size())) records.push_back(&e->wire);
  } else {
    secure::key32 target{};
    std::copy_n(body.begin() + 6, target.size(), target.begin());
    for (const auto* e : nearest(target, count, false, true)) records.push_back(&e->wire);
  }
  bytes reply{kind_found};
  put_u32(reply, query);
  write_records(reply, records);
  ++figures_.messages_out;
  figures_.records_out += records.size();
  out.replies.push_back(std::move(reply));
  return out;
}

std::vector<const gossip_entry*> gossip::proven_sample(std::size_t count) {
  std::vector<const gossip_entry*> pool;
  for (const auto& [id, e] : entries_)
    if (e.proven) pool.push_back(&e);
  keep_random(pool, count, rng_);
  return pool;
}

bytes gossip::make_push(bool answer_wanted) {
  std::vector<const bytes*> records;
  if (own_) records.push_back(&own_->wire);
  for (const auto* e : proven_sample(limits_.records_per_message - records.size()))
    records.push_back(&e->wire);
  bytes out{kind_push, static_cast<byte>(answer_wanted ? flag_answer : 0)};
  write_records(out, records);
  ++figures_.messages_out;
  figures_.records_out += records.size();
  return out;
}

bytes gossip::make_find_near(std::uint32_t query, const secure::key32& target, std::size_t count) {
  bytes out{kind_find};
  put_u32(out, query);
  out.push_back(mode_near);
  append(out, target);
  out.push_back(static_cast<byte>(std::clamp<std::size_t>(count, 1, 255)));
  return out;
}

bytes gossip::make_find_sample(std::uint32_t query, std::size_t count) {
  bytes out{kind_find};
  put_u32(out, query);
  out.push_back(mode_sample);
  out.push_back(static_cast<byte>(std::clamp<std::size_t>(count, 1, 255)));
  return out;
}

void gossip::expire(std::int64_t now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.record.issued + limits_.max_age < now && !it->second.dialling)
      erase(it++);
    else
      ++it;
  }
  for (auto it = rates_.begin(); it != rates_.end();) {
    if (now - it->second.last > rate_idle_seconds)
      it = rates_.erase(it);
    else
      ++it;
  }
}

std::vector<std::pair<public_id, bytes>> gossip::round(std::span<const public_id> partners,
                                                       std::int64_t now) {
  expire(now);
  std::vector<public_id> chosen(partners.begin(), partners.end());
  keep_random(chosen, limits_.fanout, rng_);
  std::vector<std::pair<public_id, bytes>> out;
  out.reserve(chosen.size());
  for (const auto& p : chosen) out.emplace_back(p, make_push(true));
  return out;
}

std::vector<contact_record> gossip::dial_backs() {
  std::vector<gossip_entry*> pool;
  for (auto& [id, e] : entries_)
    if (!e.proven && !e.dialling) pool.push_back(&e);
  std::stable_sort(pool.begin(), pool.end(), [](const gossip_entry* a, const gossip_entry* b) {
    return a->learnt < b->learnt;
  });
  if (pool.size() > limits_.dial_backs_per_round) pool.resize(limits_.dial_backs_per_round);
  std::vector<contact_record> out;
  for (auto* e : pool) {
    e->dialling = true;
    out.push_back(e->record);
  }
  return out;
}

const gossip_entry* gossip::dial_back_done(const public_id& id, bool ok) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return nullptr;
  auto& e = it->second;
  if (!e.dialling) return nullptr;  // not ours to judge: dial_backs() did not hand it out
  e.dialling = false;
  if (ok) {
    ++figures_.dial_backs_ok;
    e.proven = true;
    e.failed_dials = 0;
    return &e;
  }
  ++figures_.dial_backs_failed;
  if (++e.failed_dials >= 2) erase(it);
  return nullptr;
}

void gossip::mark_proven(const public_id& id) {
  if (auto it = entries_.find(id); it != entries_.end()) it->second.proven = true;
}

std::vector<const gossip_entry*> gossip::nearest(const secure::key32& target, std::size_t count,
                                                 bool any, bool with_own) const {
  std::vector<std::pair<secure::key32, const gossip_entry*>> ranked;
  if (with_own && own_) ranked.emplace_back(distance(self_.key, target), &*own_);
  for (const auto& [id, e] : entries_)
    if (any || e.proven) ranked.emplace_back(distance(id.key, target), &e);
  count = std::min(count, ranked.size());
  std::partial_sort(ranked.begin(), ranked.begin() + static_cast<std::ptrdiff_t>(count),
                    ranked.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<const gossip_entry*> out;
  for (std::size_t i = 0; i < count; ++i) out.push_back(ranked[i].second);
  return out;
}

std::vector<contact_record> gossip::near(const secure::key32& target, std::size_t count, bool any,
                                         bool with_own) const {
  std::vector<contact_record> out;
  for (const auto* e : nearest(target, count, any, with_own)) out.push_back(e->record);
  return out;
}

std::vector<contact_record> gossip::sample(std::size_t count) {
  std::vector<contact_record> out;
  for (const auto* e : proven_sample(count)) out.push_back(e->record);
  return out;
}

const gossip_entry* gossip::find(const public_id& id) const {
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : &it->second;
}

void gossip::forget(const public_id& id) {
  if (auto it = entries_.find(id); it != entries_.end()) erase(it);
}

// --- lookup -----------------------------------------------------------------

std::size_t gossip_lookup::window() const {
  // The k nearest that have not failed, and the failed ones among them.
  std::size_t live = 0, i = 0;
  for (; i < known_.size() && live < k_; ++i)
    if (known_[i].st != candidate::state::failed) ++live;
  return i;
}

void gossip_lookup::add(const contact_record& r) {
  if (r.key.id == target_) {
    if (r.issued <= newer_than_) return;  // stale: neither the answer nor worth asking
    if (!result_ || r.issued > result_->issued) result_ = r;
  }
  auto same = [&](const candidate& c) { return c.record.key.id == r.key.id; };
  if (std::find_if(known_.begin(), known_.end(), same) != known_.end()) return;
  const auto d = distance(r.key.id.key, target_.key);
  auto pos = std::find_if(known_.begin(), known_.end(),
                          [&](const candidate& c) { return d < c.distance; });
  known_.insert(pos, candidate{r, d});
}

std::vector<contact_record> gossip_lookup::next() {
  std::vector<contact_record> out;
  if (result_) return out;
  std::size_t in_flight = 0;
  for (const auto& c : known_) in_flight += c.st == candidate::state::in_flight ? 1 : 0;
  const auto end = known_.begin() + static_cast<std::ptrdiff_t>(window());
  for (auto it = known_.begin(); it != end && in_flight < alpha_; ++it) {
    if (it->st != candidate::state::fresh) continue;
    it->st = candidate::state::in_flight;
    ++in_flight;
    ++asked_;
    out.push_back(it->record);
  }
  return out;
}

void gossip_lookup::answered(const public_id& who, const std::vector<contact_record>& found) {
  for (auto& c : known_)
    if (c.record.key.id == who) c.st = candidate::state::answered;
  for (const auto& r : found) add(r);
}

void gossip_lookup::failed(const public_id& who) {
  for (auto& c : known_)
    if (c.record.key.id == who) c.st = candidate::state::failed;
}

std::vector<contact_record> gossip_lookup::nearest(std::size_t count) const {
  std::vector<contact_record> out;
  for (const auto& c : known_) {
    if (out.size() == count) break;
    if (c.st != candidate::state::failed) out.push_back(c.record);
  }
  return out;
}

bool gossip_lookup::done() const {
  if (result_) return true;
  const auto end = known_.begin() + static_cast<std::ptrdiff_t>(window());
  return std::none_of(known_.begin(), end, [](const candidate& c) {
    return c.st == candidate::state::fresh || c.st == candidate::state::in_flight;
  });
}

}  // namespace crust::bootstrap
