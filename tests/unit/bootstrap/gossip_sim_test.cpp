// Contact gossip in a simulated network: a thousand nodes in one process,
// each with its own gossip engine and bootstrap cache, on a manual clock.
// Messages are the engines' own bytes, delivered at once; a dial-back
// succeeds when a node of that id listens at the record's endpoint. The
// addresses are labels (nothing is sent), spread over many /16s as public
// nodes would be. What it measures is printed: rounds to converge, records
// and messages sent per node, signatures checked.
#include "bootstrap/cache.hpp"
#include "bootstrap/gossip.hpp"

#include "support/test.hpp"

#include <cstdio>
#include <unordered_map>

using namespace crust;
using namespace crust::bootstrap;
namespace ip = boost::asio::ip;

namespace {
constexpr std::string_view net = "gossip-sim";
constexpr std::int64_t t0 = 1'800'000'000;
constexpr std::int64_t round_seconds = 30;
constexpr std::size_t max_partners = 8;  // connections a node keeps from its own dials
constexpr std::size_t max_inbound = 24;  // and from others' (bootstrap, dial-backs)

// Keys from the simulation's generator: every run is the same network, so
// its figures are exact and a failure replays.
identity identity_from(std::mt19937_64& rng) {
  secure::key32 seed{}, priv{};
  for (auto* k : {&seed, &priv})
    for (auto& b : *k) b = static_cast<byte>(rng());
  return identity::from_secrets(seed, priv);
}

struct sim_node {
  explicit sim_node(identity i) : id(std::move(i)) {}
  identity id;
  transport::tcp_endpoint ep;
  std::unique_ptr<gossip> g;
  cache c;
  std::vector<std::size_t> out, in;  // partners: dialled by us, dialled by them
  bool sybil = false;
  std::vector<public_id> partner_ids(const std::vector<sim_node>& all) const {
    std::vector<public_id> ids;
    for (auto i : out) ids.push_back(all[i].id.id());
    for (auto i : in) ids.push_back(all[i].id.id());
    return ids;
  }
};

struct world {
  std::vector<sim_node> nodes;
  std::map<public_id, std::size_t> by_id;
  std::int64_t now = t0;
  std::mt19937_64 rng{7};
  // Signature checks are deterministic: the same bytes verify the same for
  // every node, so the simulation does each once (each engine still asks).
  std::unordered_map<std::string, bool> verdicts;
  // Ids the Sybil answers for (it can: it holds their keys), and where.
  std::map<public_id, transport::tcp_endpoint> sybil_fakes;
  std::size_t sybil = SIZE_MAX;

  gossip::verifier shared_verifier() {
    return [this](const contact_record& r, byte_span wire) {
      const auto h = secure::sha256(wire);
      std::string key(h.begin(), h.end());
      auto it = verdicts.find(key);
      if (it == verdicts.end()) it = verdicts.emplace(key, r.verify(net)).first;
      return it->second;
    };
  }

  std::size_t add_node(transport::tcp_endpoint ep) {
    sim_node n(identity_from(rng));
    n.ep = ep;
    n.g = std::make_unique<gossip>(n.id.id(), std::string(net), gossip_limits{}, rng());
    n.g->set_verifier(shared_verifier());
    n.g->set_own(contact_record::make(
        n.id, net,
        {{nat::candidate_transport::tcp, nat::candidate_kind::host, ep.address(), ep.port()}},
        now));
    by_id[n.id.id()] = nodes.size();
    nodes.push_back(std::move(n));
    return nodes.size() - 1;
  }

  // One message from a to b, and b's replies back to a.
  void deliver(std::size_t a, std::size_t b, const bytes& body) {
    auto react = nodes[b].g->on_message(nodes[a].id.id(), body, now);
    for (const auto& r : react.replies) nodes[a].g->on_message(nodes[b].id.id(), r, now);
  }

  // a dials b (b listens at b.ep): both are partners, and they push to each
  // other at once. Only honest nodes are dialled this way.
  bool connect(std::size_t a, std::size_t b, bool keep) {
    if (a == b) return false;
    auto& A = nodes[a];
    auto& B = nodes[b];
    const bool already = std::find(A.out.begin(), A.out.end(), b) != A.out.end() ||
                         std::find(A.in.begin(), A.in.end(), b) != A.in.end();
    if (keep && !already && A.out.size() < max_partners && B.in.size() < max_inbound) {
      A.out.push_back(b);
      B.in.push_back(a);
    }
    deliver(a, b, A.g->make_push(true));
    A.g->mark_proven(B.id.id());  // we reached its id at its endpoint
    return true;
  }

  bool dial_back_ok(const contact_record& r) const {
    if (auto it = by_id.find(r.key.id); it != by_id.end())
      return r.tcp_endpoint() == nodes[it->second].ep;
    if (auto it = sybil_fakes.find(r.key.id); it != sybil_fakes.end())
      return r.tcp_endpoint() == it->second;  // worst case: the Sybil answers for all
    return false;
  }

  void dial_backs(std::size_t a) {
    auto& A = nodes[a];
    for (const auto& r : A.g->dial_backs()) {
      const bool ok = dial_back_ok(r);
      const gossip_entry* e = A.g->dial_back_done(r.key.id, ok);
      if (!e) continue;
      // Proven: the cache takes it under its own bounds, with its informant.
      const auto source =
          e->source == r.key.id ? std::string(direct_source) : e->source.to_string();
      A.c.record_success(r.key, *r.tcp_endpoint(), now, source);
      if (auto it = by_id.find(r.key.id); it != by_id.end()) connect(a, it->second, true);
    }
  }

  void round() {
    now += round_seconds;
    std::vector<std::size_t> order(nodes.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), rng);
    for (auto a : order) {
      if (nodes[a].sybil) continue;
      for (const auto& [to, body] : nodes[a].g->round(nodes[a].partner_ids(nodes), now))
        deliver(a, by_id.at(to), body);
    }
    for (auto a : order)
      if (!nodes[a].sybil) dial_backs(a);
  }

  // What a find near `target` sent to node x returns (its engine's answer
  // with no message: the measurement must not teach anyone anything).
  std::vector<contact_record> answer(std::size_t x, const public_id& target) const {
    return nodes[x].g->near(target.key, 8, false, true);
  }

  // Can `a` find `t`'s record by asking the network (read-only)? Returns
  // the number of nodes asked, or nullopt.
  std::optional<std::size_t> can_find(std::size_t a, std::size_t t) const {
    const public_id target = nodes[t].id.id();
    if (const auto* e = nodes[a].g->find(target); e && e->record.tcp_endpoint() == nodes[t].ep)
      return 0;
    gossip_lookup look(target, 3, 8);
    for (const auto& r : nodes[a].g->near(target.key, 8, true)) look.add(r);
    while (!look.done()) {
      for (const auto& ask : look.next()) {
        auto it = by_id.find(ask.key.id);
        if (it == by_id.end() || nodes[it->second].sybil)
          look.failed(ask.key.id);
        else
          look.answered(ask.key.id, answer(it->second, target));
      }
    }
    if (!look.result() || look.result()->tcp_endpoint() != nodes[t].ep) return std::nullopt;
    return look.asked();
  }

  // The same lookup with real find messages, whose answers the asker's
  // engine verifies (and learns from); then "connects": dials the endpoint
  // the target's record names.
  bool find_and_connect(std::size_t a, std::size_t t, std::uint32_t query) {
    const public_id target = nodes[t].id.id();
    gossip_lookup look(target, 3, 8);
    for (const auto& r : nodes[a].g->near(target.key, 8, true)) look.add(r);
    if (const auto* e = nodes[a].g->find(target)) look.add(e->record);
    while (!look.done()) {
      for (const auto& ask : look.next()) {
        auto it = by_id.find(ask.key.id);
        if (it == by_id.end() || nodes[it->second].sybil) {
          look.failed(ask.key.id);
          continue;
        }
        auto asked = nodes[it->second].g->on_message(
            nodes[a].id.id(), gossip::make_find_near(query, target.key, 8), now);
        if (asked.replies.empty()) {
          look.failed(ask.key.id);
          continue;
        }
        auto got = nodes[a].g->on_message(ask.key.id, asked.replies[0], now);
        look.answered(ask.key.id, got.found);
      }
    }
    if (!look.result()) return false;
    auto it = by_id.find(look.result()->key.id);
    return it != by_id.end() && look.result()->tcp_endpoint() == nodes[it->second].ep;
  }
};

// Public-looking addresses, one /16 per 5 nodes: labels only.
transport::tcp_endpoint public_ep(std::size_t i) {
  const auto a = static_cast<unsigned>(11 + (i / 5) % 200), b = static_cast<unsigned>(i / 1000),
             c = static_cast<unsigned>(i % 5);
  return {ip::make_address_v4(ip::address_v4::bytes_type{static_cast<unsigned char>(a),
                                                         static_cast<unsigned char>(b),
                                                         static_cast<unsigned char>(c), 1}),
          static_cast<std::uint16_t>(20000 + i % 30000)};
}

// How many of the first `honest` nodes can look up a random other.
std::size_t lookups_found(world& w, std::size_t honest) {
  std::size_t found = 0;
  std::uniform_int_distribution<std::size_t> pick(0, honest - 1);
  for (std::size_t a = 0; a < honest; ++a) {
    std::size_t t = pick(w.rng);
    while (t == a) t = pick(w.rng);
    found += w.can_find(a, t) ? 1 : 0;
  }
  return found;
}

// Rounds until every honest node can look up a random other, three rounds
// running (3 x `honest` lookups); returns the first of those rounds.
std::optional<std::size_t> converge(world& w, std::size_t honest, std::size_t max_rounds) {
  std::size_t streak = 0;
  for (std::size_t r = 1; r <= max_rounds; ++r) {
    w.round();
    streak = lookups_found(w, honest) == honest ? streak + 1 : 0;
    if (streak == 3) return r - 2;
  }
  return std::nullopt;
}
}  // namespace

TEST_CASE("gossip simulation: 1000 nodes, each bootstrapped from one contact, find any other") {
  world w;
  constexpr std::size_t n = 1000;
  for (std::size_t i = 0; i < n; ++i) {
    const auto me = w.add_node(public_ep(i));
    if (i == 0) continue;
    // One contact: a node that joined before.
    const auto contact = std::uniform_int_distribution<std::size_t>(0, i - 1)(w.rng);
    w.connect(me, contact, true);
  }
  const auto converged = converge(w, n, 40);
  REQUIRE(converged.has_value());
  const std::size_t rounds = *converged;
  std::uint64_t records = 0, messages = 0, checks = 0, kept = 0, proven = 0;
  for (const auto& x : w.nodes) {
    records += x.g->figures().records_out;
    messages += x.g->figures().messages_out;
    checks += x.g->figures().signatures_checked;
    kept += x.g->entries().size();
    for (const auto& [id, e] : x.g->entries()) proven += e.proven ? 1 : 0;
  }
  auto per_node = [&](std::uint64_t v) { return static_cast<double>(v) / n; };
  std::printf(
      "gossip simulation: %zu nodes converged in %zu rounds (%zu s simulated: from then on every "
      "lookup succeeds, 3 rounds running); per node over the %zu rounds run: %.0f records and "
      "%.0f messages sent, %.0f signatures checked, %.1f records kept (%.1f proven)\n",
      n, rounds, rounds * static_cast<std::size_t>(round_seconds), rounds + 2, per_node(records),
      per_node(messages), per_node(checks), per_node(kept), per_node(proven));

  // Now with real find messages: every node finds a random other and
  // reaches it at the endpoint its signed record names.
  std::size_t connected = 0;
  std::uniform_int_distribution<std::size_t> pick(0, n - 1);
  for (std::size_t a = 0; a < n; ++a) {
    std::size_t t = pick(w.rng);
    while (t == a) t = pick(w.rng);
    w.now += 2;  // a find every other second: under every rate limit
    connected += w.find_and_connect(a, t, static_cast<std::uint32_t>(a)) ? 1 : 0;
  }
  std::printf("gossip simulation: %zu of %zu nodes found and reached a random other by lookup\n",
              connected, n);
  CHECK(connected == n);
  // Bounded everywhere: no store over its bounds.
  for (const auto& x : w.nodes) CHECK(x.g->entries().size() <= x.g->limits().max_records);
}

TEST_CASE("gossip simulation: a Sybil flooding records stays within its bounds in every cache") {
  world w;
  constexpr std::size_t honest = 300;
  for (std::size_t i = 0; i < honest; ++i) {
    const auto me = w.add_node(public_ep(i));
    if (i > 0) w.connect(me, std::uniform_int_distribution<std::size_t>(0, i - 1)(w.rng), true);
  }
  // The Sybil: one node in 45.33.0.0/16 holding 3000 keys, each with a
  // record there, dialable (it answers for every one of them: the worst case).
  const auto s = w.add_node({ip::make_address("45.33.0.1"), 9000});
  w.nodes[s].sybil = true;
  w.sybil = s;
  std::vector<bytes> fakes;
  for (int i = 0; i < 3000; ++i) {
    const identity fake = identity_from(w.rng);
    const transport::tcp_endpoint ep{
        ip::make_address_v4(ip::address_v4::bytes_type{45, 33, static_cast<unsigned char>(i / 250),
                                                       static_cast<unsigned char>(2 + i % 250)}),
        static_cast<std::uint16_t>(10000 + i)};
    w.sybil_fakes[fake.id()] = ep;
    fakes.push_back(contact_record::make(fake, net,
                                         {{nat::candidate_transport::tcp, nat::candidate_kind::host,
                                           ep.address(), ep.port()}},
                                         w.now)
                        .encode());
  }
  // It connects to 60 honest nodes and floods each, every round, with 40
  // pushes of 16 fresh fakes (far over the 30 messages a minute allowed).
  std::vector<std::size_t> victims;
  for (std::size_t i = 0; i < 60; ++i) victims.push_back(i * 5);
  for (auto v : victims) {
    w.connect(s, v, false);
    w.nodes[v].in.push_back(s);
  }
  std::size_t next_fake = 0;
  std::uint64_t violations = 0;
  std::size_t rounds = 0;
  for (int r = 0; r < 30; ++r) {
    w.round();
    for (auto v : victims)
      for (int m = 0; m < 40; ++m) {
        bytes push{1, 0, 16};
        for (int k = 0; k < 16; ++k) {
          const auto& f = fakes[next_fake++ % fakes.size()];
          put_u16(push, static_cast<std::uint16_t>(f.size()));
          append(push, f);
        }
        violations += w.nodes[v].g->on_message(w.nodes[s].id.id(), push, w.now).violation ? 1 : 0;
      }
    ++rounds;
  }
  const cache_limits cl;
  const gossip_limits gl;
  std::size_t worst_cache_source = 0, worst_cache_group = 0, worst_store_source = 0,
              worst_store_group = 0, with_fakes = 0;
  const auto sybil_id = w.nodes[s].id.id();
  for (std::size_t i = 0; i < honest; ++i) {
    const auto& x = w.nodes[i];
    std::size_t cs = 0, cg = 0, ss = 0, sg = 0;
    for (const auto& e : x.c.entries()) {
      cs += e.source == sybil_id.to_string() ? 1 : 0;
      cg += address_group(e.endpoint.address()) == "v4:45.33" ? 1 : 0;
    }
    for (const auto& [id, e] : x.g->entries()) {
      ss += e.source == sybil_id ? 1 : 0;
      sg += address_group(e.record.tcp_endpoint()->address()) == "v4:45.33" ? 1 : 0;
    }
    worst_cache_source = std::max(worst_cache_source, cs);
    worst_cache_group = std::max(worst_cache_group, cg);
    worst_store_source = std::max(worst_store_source, ss);
    worst_store_group = std::max(worst_store_group, sg);
    with_fakes += sg > 0 ? 1 : 0;
  }
  std::printf(
      "gossip simulation, Sybil: %zu rounds, %zu pushes of 16 records to each of %zu nodes "
      "(%llu refused as over the rate); worst honest cache: %zu entries from the Sybil (bound "
      "%zu), %zu in its /16 (bound %zu); worst gossip store: %zu from it (bound %zu), %zu in "
      "its /16 (bound %zu); %zu of %zu honest nodes hold any of its records\n",
      rounds, rounds * 40, victims.size(), static_cast<unsigned long long>(violations),
      worst_cache_source, cl.per_source, worst_cache_group, cl.per_group, worst_store_source,
      gl.per_source, worst_store_group, gl.per_group, with_fakes, honest);
  CHECK(worst_cache_source <= cl.per_source);
  CHECK(worst_cache_group <= cl.per_group);
  CHECK(worst_store_source <= gl.per_source);
  CHECK(worst_store_group <= gl.per_group);
  CHECK(violations > 0);
  CHECK(with_fakes > 0);  // the flood did arrive: the bounds, not luck, held it

  // And the honest network still works: lookups around the Sybil succeed.
  const std::size_t found = lookups_found(w, honest);
  std::printf("gossip simulation, Sybil: %zu of %zu honest lookups succeed\n", found, honest);
  CHECK(found == honest);
}
