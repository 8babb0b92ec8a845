#include "bootstrap/gossip.hpp"

#include "support/test.hpp"

#include <set>

using namespace crust;
using namespace crust::bootstrap;
namespace ip = boost::asio::ip;

namespace {
constexpr std::string_view net = "gossip-test";
constexpr std::int64_t t0 = 1'800'000'000;

nat::candidate tcp(const char* addr, std::uint16_t port) {
  return {nat::candidate_transport::tcp, nat::candidate_kind::host, ip::make_address(addr), port};
}
nat::candidate udp(const char* addr, std::uint16_t port) {
  return {nat::candidate_transport::udp, nat::candidate_kind::reflexive, ip::make_address(addr),
          port};
}
struct node {
  identity id = identity::generate();
  contact_record record(const char* addr, std::uint16_t port = 5000, std::int64_t at = t0) const {
    return contact_record::make(id, net, {tcp(addr, port)}, at);
  }
};
// A push message holding these records.
bytes push_of(const std::vector<bytes>& records, bool answer = false) {
  bytes out{1, static_cast<byte>(answer ? 1 : 0), static_cast<byte>(records.size())};
  for (const auto& r : records) {
    put_u16(out, static_cast<std::uint16_t>(r.size()));
    append(out, r);
  }
  return out;
}
// The records a push or found message holds, parsed (no checks but layout).
std::vector<contact_record> records_in(const bytes& msg) {
  std::size_t at = msg[0] == 1 ? 2 : 5;
  const std::size_t n = msg[at++];
  std::vector<contact_record> out;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t len = get_u16(msg.data() + at);
    at += 2;
    out.push_back(*contact_record::parse(byte_span(msg).subspan(at, len), net, t0, 1 << 30));
    at += len;
  }
  return out;
}
}  // namespace

TEST_CASE("contact record: signed, read back, bound to its network and its bytes") {
  node a;
  auto r = contact_record::make(
      a.id, net, {tcp("203.0.113.5", 4000), udp("203.0.113.5", 4001), tcp("203.0.113.5", 4000)},
      t0);
  CHECK(r.candidates.size() == 2);  // the duplicate went
  const bytes wire = r.encode();
  auto back = contact_record::parse(wire, net, t0 + 10, 3600);
  REQUIRE(back.has_value());
  CHECK(*back == r);
  CHECK(back->verify(net));
  CHECK(back->tcp_endpoint() == transport::tcp_endpoint(ip::make_address("203.0.113.5"), 4000));

  auto other = contact_record::parse(wire, "another-net", t0, 3600);
  REQUIRE_FALSE(other.has_value());
  CHECK(other.error().code == errc::wrong_network);

  // Any byte changed in the signed part: the signature no longer holds.
  for (std::size_t at : {13u, 45u, 80u, 90u}) {
    bytes bad = wire;
    bad[at] ^= 1;
    auto p = contact_record::parse(bad, net, t0, 1 << 30);
    if (p) CHECK_FALSE(p->verify(net));
  }
  // Cut short, trailing bytes, from the future, too old.
  CHECK(contact_record::parse(byte_span(wire).first(wire.size() - 1), net, t0, 3600).error().code ==
        errc::malformed);
  bytes longer = wire;
  longer.push_back(0);
  CHECK(contact_record::parse(longer, net, t0, 3600).error().code == errc::malformed);
  CHECK(contact_record::parse(wire, net, t0 - 301, 3600).error().code == errc::expired);
  CHECK(contact_record::parse(wire, net, t0 + 3601, 3600).error().code == errc::expired);
}

TEST_CASE("contact record: at most eight candidates, the first ones") {
  node a;
  std::vector<nat::candidate> many;
  for (std::uint16_t p = 1; p <= 12; ++p) many.push_back(tcp("198.51.100.1", p));
  auto r = contact_record::make(a.id, net, many, t0);
  REQUIRE(r.candidates.size() == max_record_candidates);
  CHECK(r.candidates.back().port == 8);
  CHECK(r.encode().size() <= max_record_size);
}

TEST_CASE("gossip: a learnt record is kept, but passed on only once dialled back") {
  node me, a, b;
  gossip g(me.id.id(), std::string(net), {}, 1);
  g.set_own(me.record("192.0.2.1"));
  CHECK(g.learn(b.record("198.51.100.2").encode(), a.id.id(), t0));
  const auto* e = g.find(b.id.id());
  REQUIRE(e != nullptr);
  CHECK_FALSE(e->proven);
  CHECK(e->source == a.id.id());
  // Unproven: the push holds our record only, and near() sees nothing.
  auto push = records_in(g.make_push(false));
  REQUIRE(push.size() == 1);
  CHECK(push[0].key.id == me.id.id());
  CHECK(g.near(b.id.id().key, 5).empty());
  CHECK(g.near(b.id.id().key, 5, true).size() == 1);

  auto dial = g.dial_backs();
  REQUIRE(dial.size() == 1);
  CHECK(dial[0].key.id == b.id.id());
  CHECK(g.dial_backs().empty());  // being dialled
  CHECK(g.dial_back_done(b.id.id(), true) != nullptr);
  push = records_in(g.make_push(false));
  REQUIRE(push.size() == 2);
  CHECK(push[1].key.id == b.id.id());
  CHECK(g.figures().dial_backs_ok == 1);
}

TEST_CASE("gossip: newer records replace older ones; older and repeated bytes change nothing") {
  node me, a, b;
  gossip g(me.id.id(), std::string(net), {}, 1);
  CHECK(g.learn(b.record("198.51.100.2", 5000, t0).encode(), a.id.id(), t0));
  g.dial_back_done(b.id.id(), true);  // not dialling: ignored
  g.mark_proven(b.id.id());
  CHECK(g.find(b.id.id())->proven);
  // The same bytes again: a repeat, no second signature check.
  const auto checks = g.figures().signatures_checked;
  CHECK_FALSE(g.learn(b.record("198.51.100.2", 5000, t0).encode(), a.id.id(), t0));
  CHECK(g.figures().signatures_checked == checks);
  CHECK(g.figures().repeats == 1);
  // Newer, same endpoint: replaced, still proven.
  CHECK(g.learn(b.record("198.51.100.2", 5000, t0 + 5).encode(), a.id.id(), t0 + 5));
  CHECK(g.find(b.id.id())->record.issued == t0 + 5);
  CHECK(g.find(b.id.id())->proven);
  // Newer, moved: replaced, to be dialled back again.
  CHECK(g.learn(b.record("198.51.100.2", 6000, t0 + 9).encode(), a.id.id(), t0 + 9));
  CHECK_FALSE(g.find(b.id.id())->proven);
  CHECK(g.find(b.id.id())->record.tcp_endpoint()->port() == 6000);
  // Older: ignored.
  CHECK_FALSE(g.learn(b.record("198.51.100.2", 7000, t0 + 1).encode(), a.id.id(), t0 + 9));
  CHECK(g.figures().ignored_older == 1);
  CHECK(g.figures().replaced == 2);
  CHECK(g.entries().size() == 1);
}

TEST_CASE("gossip: a forged record is a violation, kept nowhere, and not checked twice") {
  node me, a, b;
  gossip g(me.id.id(), std::string(net), {}, 1);
  bytes forged = b.record("198.51.100.2").encode();
  forged[forged.size() - 1] ^= 0x40;  // in the signature
  auto react = g.on_message(a.id.id(), push_of({forged}), t0);
  CHECK(react.violation == errc::bad_signature);
  CHECK(g.entries().empty());
  CHECK(g.figures().forged == 1);
  CHECK(g.figures().signatures_checked == 1);
  react = g.on_message(a.id.id(), push_of({forged}), t0);
  CHECK(react.violation == errc::bad_signature);
  CHECK(g.figures().forged == 2);
  CHECK(g.figures().signatures_checked == 1);
  // Someone else's key, our signature: the same.
  auto r = b.record("198.51.100.2");
  r.key.noise_static[0] ^= 1;
  CHECK(g.on_message(a.id.id(), push_of({r.encode()}), t0).violation == errc::bad_signature);
}

TEST_CASE("gossip: bounds per source, per /16, per bucket and in all refuse newcomers") {
  node me, a, c;
  SUBCASE("per source") {
    gossip_limits l;
    l.per_source = 3;
    gossip g(me.id.id(), std::string(net), l, 1);
    for (int i = 0; i < 5; ++i) {
      node x;
      const std::string addr = "198.51." + std::to_string(i) + ".7";
      g.learn(x.record(addr.c_str()).encode(), a.id.id(), t0);
    }
    CHECK(g.entries().size() == 3);
    CHECK(g.figures().refused_source == 2);
    // Another source still has room.
    node y;
    CHECK(g.learn(y.record("198.18.0.1").encode(), c.id.id(), t0));
  }
  SUBCASE("per /16, private addresses exempt") {
    gossip_limits l;
    l.per_group = 2;
    gossip g(me.id.id(), std::string(net), l, 1);
    for (int i = 0; i < 4; ++i) {
      node x, y;
      const std::string pub = "198.51.100." + std::to_string(i + 1);
      const std::string lan = "192.168.1." + std::to_string(i + 1);
      g.learn(x.record(pub.c_str()).encode(), node{}.id.id(), t0);
      g.learn(y.record(lan.c_str()).encode(), node{}.id.id(), t0);
    }
    CHECK(g.entries().size() == 2 + 4);
    CHECK(g.figures().refused_group == 2);
  }
  SUBCASE("per bucket") {
    gossip_limits l;
    l.bucket_size = 2;
    gossip g(me.id.id(), std::string(net), l, 1);
    std::map<unsigned, int> offered;
    for (int i = 0; i < 40; ++i) {
      node x;
      const std::string addr = std::to_string(20 + i) + ".1.1.1";
      ++offered[gossip::bucket_of(me.id.id(), x.id.id())];
      g.learn(x.record(addr.c_str()).encode(), node{}.id.id(), t0);
    }
    std::map<unsigned, int> kept;
    for (const auto& [id, e] : g.entries()) ++kept[gossip::bucket_of(me.id.id(), id)];
    for (const auto& [b, n] : offered) CHECK(kept[b] == std::min(n, 2));
  }
  SUBCASE("in all") {
    gossip_limits l;
    l.max_records = 4;
    gossip g(me.id.id(), std::string(net), l, 1);
    for (int i = 0; i < 6; ++i) {
      node x;
      const std::string addr = std::to_string(20 + i) + ".1.1.1";
      g.learn(x.record(addr.c_str()).encode(), node{}.id.id(), t0);
    }
    CHECK(g.entries().size() == 4);
    CHECK(g.figures().refused_full == 2);
  }
}

TEST_CASE("gossip: messages per peer per minute; more are dropped and said to be") {
  node me, a, b;
  gossip_limits l;
  l.messages_per_minute = 5;
  gossip g(me.id.id(), std::string(net), l, 1);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(g.on_message(a.id.id(), push_of({}), t0).violation);
  CHECK(g.on_message(a.id.id(), push_of({}), t0).violation == errc::quota_exceeded);
  CHECK_FALSE(g.on_message(b.id.id(), push_of({}), t0).violation);  // another peer
  CHECK(g.on_message(a.id.id(), push_of({}), t0 + 11).violation == errc::quota_exceeded);
  CHECK_FALSE(g.on_message(a.id.id(), push_of({}), t0 + 13).violation);  // 5/min: one per 12 s
  CHECK(g.figures().rate_limited == 2);
}

TEST_CASE("gossip: malformed messages and too many records are violations that keep nothing") {
  node me, a, b;
  gossip_limits l;
  l.records_per_message = 2;
  gossip g(me.id.id(), std::string(net), l, 1);
  const bytes rec = b.record("198.51.100.2").encode();
  std::vector<bytes> bad = {
      {},                     // empty
      {9},                    // unknown kind
      {1, 0},                 // no count
      {1, 2, 0},              // unknown flag
      {2, 0, 0, 0, 1, 0},     // find cut short
      {2, 0, 0, 0, 1, 7, 3},  // unknown find mode
  };
  bytes cut = push_of({rec});
  cut.pop_back();
  bad.push_back(cut);
  bytes trailing = push_of({rec});
  trailing.push_back(0);
  bad.push_back(trailing);
  for (const auto& m : bad) CHECK(g.on_message(a.id.id(), m, t0).violation == errc::malformed);
  CHECK(g.on_message(a.id.id(), push_of({rec, rec, rec}), t0).violation ==
        errc::protocol_violation);
  CHECK(g.on_message(a.id.id(), gossip::make_find_sample(1, 17), t0).violation ==
        errc::protocol_violation);
  CHECK(g.entries().empty());
  // A record of another network inside a push: a violation too.
  node c;
  auto foreign = contact_record::make(c.id, "elsewhere", {tcp("198.51.100.3", 1)}, t0).encode();
  CHECK(g.on_message(b.id.id(), push_of({foreign}), t0).violation == errc::wrong_network);
}

TEST_CASE("gossip: a push wanting an answer gets our push; finds get the nearest proven records") {
  node me, a;
  gossip g(me.id.id(), std::string(net), {}, 1);
  g.set_own(me.record("192.0.2.1"));
  std::vector<node> others(20);
  for (std::size_t i = 0; i < others.size(); ++i) {
    const std::string addr = std::to_string(20 + i) + ".2.2.2";
    REQUIRE(g.learn(others[i].record(addr.c_str()).encode(), node{}.id.id(), t0));
    if (i < 15) g.mark_proven(others[i].id.id());
  }
  auto react = g.on_message(a.id.id(), push_of({}, true), t0);
  REQUIRE(react.replies.size() == 1);
  CHECK(records_in(react.replies[0]).size() == 16);  // ours and 15 proven
  CHECK(g.on_message(a.id.id(), push_of({}, false), t0).replies.empty());

  // Near a target: ours and the proven ones, nearest first.
  const public_id target = others[17].id.id();  // unproven: not in answers
  react = g.on_message(a.id.id(), gossip::make_find_near(77, target.key, 4), t0);
  REQUIRE(react.replies.size() == 1);
  const bytes& found = react.replies[0];
  CHECK(found[0] == 3);
  CHECK(get_u32(found.data() + 1) == 77);
  auto got = records_in(found);
  REQUIRE(got.size() == 4);
  std::vector<public_id> expected;
  for (std::size_t i = 0; i < 15; ++i) expected.push_back(others[i].id.id());
  expected.push_back(me.id.id());
  auto dist = [&](const public_id& x) {
    secure::key32 d{};
    for (std::size_t i = 0; i < d.size(); ++i) d[i] = x.key[i] ^ target.key[i];
    return d;
  };
  std::sort(expected.begin(), expected.end(),
            [&](const auto& x, const auto& y) { return dist(x) < dist(y); });
  for (std::size_t i = 0; i < 4; ++i) CHECK(got[i].key.id == expected[i]);

  // A found answer feeds the asker, verified.
  gossip asker(a.id.id(), std::string(net), {}, 2);
  react = asker.on_message(me.id.id(), found, t0);
  CHECK_FALSE(react.violation);
  CHECK(react.answer_to == 77u);
  CHECK(react.found.size() == 4);
}

TEST_CASE("gossip: a record that fails two dial-backs is forgotten; old records expire") {
  node me, a, b, c;
  gossip_limits l;
  l.max_age = 600;
  gossip g(me.id.id(), std::string(net), l, 1);
  g.learn(b.record("198.51.100.2").encode(), a.id.id(), t0);
  g.learn(c.record("198.51.100.3").encode(), a.id.id(), t0);
  for (int i = 0; i < 2; ++i) {
    auto d = g.dial_backs();
    REQUIRE(d.size() == 2);
    g.dial_back_done(b.id.id(), false);
    g.dial_back_done(c.id.id(), i == 1);
  }
  CHECK(g.find(b.id.id()) == nullptr);
  CHECK(g.find(c.id.id())->proven);
  g.round({}, t0 + 600);
  CHECK(g.find(c.id.id()) != nullptr);
  g.round({}, t0 + 601);
  CHECK(g.entries().empty());
}

TEST_CASE("gossip: a round pushes to at most fanout partners, each a push wanting an answer") {
  node me;
  gossip g(me.id.id(), std::string(net), {}, 1);
  g.set_own(me.record("192.0.2.1"));
  std::vector<public_id> partners;
  for (int i = 0; i < 10; ++i) partners.push_back(node{}.id.id());
  auto out = g.round(partners, t0);
  REQUIRE(out.size() == 3);
  std::set<public_id> distinct;
  for (const auto& [to, body] : out) {
    distinct.insert(to);
    CHECK(std::find(partners.begin(), partners.end(), to) != partners.end());
    CHECK(body[0] == 1);
    CHECK(body[1] == 1);
  }
  CHECK(distinct.size() == 3);
  CHECK(g.round(std::span(partners).first(2), t0).size() == 2);
}

TEST_CASE("gossip lookup: walks nearer until it holds the target's record") {
  // A line of nodes, each knowing only the next: the lookup must walk it.
  std::vector<node> n(6);
  std::vector<contact_record> recs;
  for (std::size_t i = 0; i < n.size(); ++i)
    recs.push_back(n[i].record(("198.51.100." + std::to_string(i + 1)).c_str()));
  gossip_lookup look(n[5].id.id(), 1, 8);
  look.add(recs[1]);
  std::size_t rounds = 0;
  while (!look.done() && rounds < 10) {
    for (const auto& ask : look.next()) {
      std::size_t i = 0;
      while (recs[i].key.id != ask.key.id) ++i;
      if (i == 3) {
        look.failed(ask.key.id);  // one of them is down: the walk stops there
        continue;
      }
      look.answered(ask.key.id, {recs[std::min(i + 1, n.size() - 1)]});
    }
    ++rounds;
  }
  CHECK(look.done());
  CHECK_FALSE(look.result().has_value());
  CHECK(look.asked() == 3);

  gossip_lookup again(n[5].id.id(), 1, 8);
  again.add(recs[1]);
  while (!again.done()) {
    for (const auto& ask : again.next()) {
      std::size_t i = 0;
      while (recs[i].key.id != ask.key.id) ++i;
      again.answered(ask.key.id, {recs[i + 1]});
    }
  }
  REQUIRE(again.result().has_value());
  CHECK(again.result()->key.id == n[5].id.id());
  CHECK(again.asked() == 4);
}

TEST_CASE("gossip lookup: asked for a newer record, the held one is neither answer nor asked") {
  // A peer that moved to port 6000: we hold its old record (port 5000).
  node target, a, b;
  const auto old_rec = target.record("198.51.100.9", 5000, t0);
  const auto new_rec = target.record("198.51.100.9", 6000, t0 + 90);
  gossip_lookup look(target.id.id(), 3, 8, old_rec.issued);
  look.add(old_rec);
  CHECK_FALSE(look.result().has_value());
  CHECK(look.done());  // nothing else known: nothing to ask
  look.add(a.record("198.51.100.1"));
  look.add(b.record("198.51.100.2"));
  auto ask = look.next();
  REQUIRE(ask.size() == 2);                 // a and b, never the stale target
  look.answered(ask[0].key.id, {old_rec});  // a knows only the old one
  CHECK_FALSE(look.result().has_value());
  look.answered(ask[1].key.id, {new_rec});
  REQUIRE(look.result().has_value());
  CHECK(look.result()->candidates.front().port == 6000);
  CHECK(look.nearest(1).front().issued == new_rec.issued);
}
