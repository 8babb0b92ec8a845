// UDP hole punching between two punch sessions through modelled NATs
// (tests/support/nat_model.hpp) on a manual clock: which pairs of NATs
// let a direct path through, what prediction buys against a sequential
// NAT, and that nothing unauthenticated is answered or believed.
#include "nat/punch.hpp"

#include "support/nat_model.hpp"
#include "support/test.hpp"

#include <deque>

using namespace crust;
using namespace crust::nat;
namespace ip = boost::asio::ip;
using model = test::nat_model;

namespace {

constexpr std::int64_t t_unix = 1'800'000'000;
const time_point t0{};
const udp_endpoint stun_server{ip::make_address("198.18.0.100"), 3478};
constexpr auto latency = std::chrono::milliseconds(10);

struct side {
  std::optional<model> nat;  // none: a public host
  udp_endpoint local;
  std::vector<udp_endpoint> extra;  // the extra sockets a spraying session asked for
  std::optional<private_connection_info> info;
  std::optional<punch_session> s;
  ip::address external() const { return nat ? nat->external() : local.address(); }
};

nat_hint hint_of(const std::optional<model::config>& c) {
  if (!c) return {mapping_behaviour::no_nat, allocation_behaviour::preserving, 0, {}, {}};
  nat_hint h;
  h.mapping =
      c->map == model::mapping::endpoint_independent ? mapping_behaviour::endpoint_independent
      : c->map == model::mapping::address_dependent  ? mapping_behaviour::address_dependent
                                                    : mapping_behaviour::address_and_port_dependent;
  h.allocation = c->alloc == model::allocation::preserving   ? allocation_behaviour::preserving
                 : c->alloc == model::allocation::sequential ? allocation_behaviour::sequential
                                                             : allocation_behaviour::random;
  h.port_step = c->alloc == model::allocation::sequential ? c->step : 0;
  h.filtering = c->filter == model::filtering::endpoint_independent
                    ? filtering_behaviour::endpoint_independent
                : c->filter == model::filtering::address_dependent
                    ? filtering_behaviour::address_dependent
                    : filtering_behaviour::address_and_port_dependent;
  return h;
}

// A node behind `nat` (or public) with its connection info: a host
// candidate and, behind a NAT, the reflexive one a STUN server saw.
side make_side(const identity& id, std::optional<model::config> nat, const char* inside,
               const char* outside) {
  side s;
  if (nat) {
    nat->external = ip::make_address(outside);
    s.nat.emplace(*nat);
  }
  s.local = {ip::make_address(nat ? inside : outside), 40000};
  std::vector<candidate> cs = {
      {candidate_transport::udp, candidate_kind::host, s.local.address(), s.local.port()}};
  if (s.nat) {
    const auto mapped = s.nat->outbound(s.local, stun_server, t0);
    cs.push_back(
        {candidate_transport::udp, candidate_kind::reflexive, mapped.address(), mapped.port()});
  }
  s.info.emplace(private_connection_info::prepare(id, "crust", cs, hint_of(nat), t_unix));
  return s;
}

struct outcome {
  punch_state a = punch_state::running, b = punch_state::running;
  duration a_time{}, b_time{};
};

const identity& id_a() {
  static const identity i = identity::from_secrets(secure::key32{1}, secure::key32{2});
  return i;
}
const identity& id_b() {
  static const identity i = identity::from_secrets(secure::key32{3}, secure::key32{4});
  return i;
}

// Runs both sessions until both are done, in 1 ms steps, routing every
// datagram through the NATs with `latency` each way.
outcome punch(side& a, side& b, punch_config cfg = {}) {
  auto sa = punch_session::start(*a.info, b.info->pub(), a.local, t0, cfg);
  auto sb = punch_session::start(*b.info, a.info->pub(), b.local, t0, cfg);
  REQUIRE(sa);
  REQUIRE(sb);
  a.s.emplace(std::move(*sa));
  b.s.emplace(std::move(*sb));
  for (side* s : {&a, &b}) {
    s->extra.clear();
    for (unsigned i = 1; i <= s->s->extra_sockets(); ++i)
      s->extra.emplace_back(s->local.address(), static_cast<std::uint16_t>(s->local.port() + i));
  }
  auto socket_of = [](side& s, unsigned i) { return i == 0 ? s.local : s.extra.at(i - 1); };
  struct packet {
    time_point at;
    udp_endpoint from, to;  // `from`: the source after the sender's NAT
    bytes data;
  };
  std::deque<packet> wire;
  auto send = [&](side& from, unsigned socket, const udp_endpoint& to, bytes d, time_point now) {
    const auto sock = socket_of(from, socket);
    const auto src = from.nat ? from.nat->outbound(sock, to, now) : sock;
    wire.push_back({now + latency, src, to, std::move(d)});
  };
  outcome o;
  for (auto now = t0; now < t0 + cfg.deadline + std::chrono::seconds(1);
       now += std::chrono::milliseconds(1)) {
    for (side* s : {&a, &b})
      for (auto& d : s->s->poll(now)) send(*s, d.socket, d.to, std::move(d.data), now);
    while (!wire.empty() && wire.front().at <= now) {
      auto p = std::move(wire.front());
      wire.pop_front();
      for (side* s : {&a, &b}) {
        if (p.to.address() != s->external()) continue;
        auto inside = s->nat ? s->nat->inbound(p.from, p.to, now) : std::optional{p.to};
        if (!inside) continue;  // filtered, or no such mapping
        unsigned socket = 0;
        if (*inside != s->local) {
          auto e = std::find(s->extra.begin(), s->extra.end(), *inside);
          if (e == s->extra.end()) continue;  // a socket nobody holds
          socket = static_cast<unsigned>(e - s->extra.begin()) + 1;
        }
        if (auto answer = s->s->on_datagram(p.data, p.from, now, socket)) {
          CHECK(answer->size() <= p.data.size());  // never amplifies
          send(*s, socket, p.from, std::move(*answer), now);
        }
      }
    }
    if (o.a == punch_state::running && a.s->state() != punch_state::running) {
      o.a = a.s->state();
      o.a_time = now - t0;
    }
    if (o.b == punch_state::running && b.s->state() != punch_state::running) {
      o.b = b.s->state();
      o.b_time = now - t0;
    }
    if (o.a != punch_state::running && o.b != punch_state::running) break;
  }
  return o;
}

model::config cone() {
  return {};
}  // endpoint-independent, port-restricted, preserving
model::config full_cone() {
  model::config c;
  c.filter = model::filtering::endpoint_independent;
  return c;
}
model::config symmetric(model::allocation alloc = model::allocation::random, int step = 1) {
  model::config c;
  c.map = model::mapping::address_and_port_dependent;
  c.alloc = alloc;
  c.step = step;
  c.seed = 7;
  return c;
}

}  // namespace

TEST_CASE("punch: two port-restricted cones meet on their reflexive endpoints") {
  auto a = make_side(id_a(), cone(), "10.1.0.2", "198.18.1.1");
  auto b = make_side(id_b(), cone(), "10.2.0.2", "198.18.2.1");
  auto o = punch(a, b);
  CHECK(o.a == punch_state::succeeded);
  CHECK(o.b == punch_state::succeeded);
  REQUIRE(a.s->path());
  REQUIRE(b.s->path());
  CHECK(a.s->path()->address() == ip::make_address("198.18.2.1"));
  CHECK(b.s->path()->address() == ip::make_address("198.18.1.1"));
  // The two ends agree on the pair: each is where the other saw it.
  CHECK(a.s->path() == b.s->seen_as());
  CHECK(b.s->path() == a.s->seen_as());
  CHECK(a.s->controlling() != b.s->controlling());
  // Within a few round trips of 20 ms, not at a retransmission.
  CHECK(o.a_time < std::chrono::milliseconds(100));
  CHECK(o.b_time < std::chrono::milliseconds(100));
}

TEST_CASE("punch: which pairs of NATs get a direct path") {
  struct row {
    const char* name;
    std::optional<model::config> a, b;
    bool direct;
  };
  const std::vector<row> rows = {
      {"public x symmetric", std::nullopt, symmetric(), true},
      {"full cone x symmetric", full_cone(), symmetric(), true},
      {"cone x full cone", cone(), full_cone(), true},
      {"port-restricted cone x symmetric (random ports), by probing", cone(), symmetric(), true},
      {"symmetric x symmetric (random ports)", symmetric(), symmetric(), false},
      {"sequential symmetric (step 1) x cone", symmetric(model::allocation::sequential, 1), cone(),
       true},
      {"sequential symmetric (step 2) x cone", symmetric(model::allocation::sequential, 2), cone(),
       true},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    auto a = make_side(id_a(), r.a, "10.1.0.2", "198.18.1.1");
    auto b = make_side(id_b(), r.b, "10.2.0.2", "198.18.2.1");
    punch_config cfg;
    cfg.deadline = std::chrono::seconds(2);
    auto o = punch(a, b, cfg);
    const auto expected = r.direct ? punch_state::succeeded : punch_state::failed;
    CHECK(o.a == expected);
    CHECK(o.b == expected);
  }
}

TEST_CASE("punch: a cone and a random-port symmetric NAT meet by multi-socket probing") {
  punch_config cfg;
  cfg.deadline = std::chrono::seconds(5);
  for (int round = 0; round < 3; ++round) {
    CAPTURE(round);
    auto a = make_side(id_a(), cone(), "10.1.0.2", "198.18.1.1");
    auto b = make_side(id_b(), symmetric(), "10.2.0.2", "198.18.2.1");
    auto o = punch(a, b, cfg);
    REQUIRE(o.a == punch_state::succeeded);
    REQUIRE(o.b == punch_state::succeeded);
    CHECK(a.s->spray() == spray_role::ports);
    CHECK(b.s->spray() == spray_role::sockets);
    CHECK(b.s->extra_sockets() == cfg.spray_sockets);
    // The symmetric side's path is one of its sockets (an extra one, or,
    // about once in 250 rounds, its main socket, whose mapping a probe can
    // hit as well); the cone's is its own socket, toward one of those
    // sockets' mappings. Two of them
    // may meet a probe in the same round, and each side settles on its own
    // first answer, so the cone's may be another socket than the symmetric
    // side's (about 4 % of rounds). That is harmless: the symmetric side
    // dials µTP from its path socket (punch_then_utp), and that reaches the
    // cone's one mapping, which it knows.
    CHECK(b.s->path_socket() <= cfg.spray_sockets);
    CHECK(a.s->path_socket() == 0);
    REQUIRE(a.s->path());
    REQUIRE(b.s->seen_as());
    CHECK(a.s->path()->address() == b.s->seen_as()->address());  // b's NAT, one of its mappings
    CHECK(b.s->path() == a.s->seen_as());
    // Bounded: the cone never probes more than spray_probes ports.
    CHECK(a.s->probes_sent() <= cfg.spray_probes);
    CHECK(a.s->probes_sent() > 0);
    MESSAGE("probes until a hit: "
            << a.s->probes_sent() << ", time "
            << std::chrono::duration_cast<std::chrono::milliseconds>(o.a_time).count() << " ms");
  }
  // Without probing it cannot work.
  cfg.spray_sockets = 0;
  auto a = make_side(id_a(), cone(), "10.1.0.2", "198.18.1.1");
  auto b = make_side(id_b(), symmetric(), "10.2.0.2", "198.18.2.1");
  auto o = punch(a, b, cfg);
  CHECK(o.a == punch_state::failed);
  CHECK(o.b == punch_state::failed);
  CHECK(a.s->spray() == spray_role::none);
}

TEST_CASE("punch: a late poll catches up on its probes, spray_burst at a time") {
  auto a = make_side(id_a(), cone(), "10.1.0.2", "198.18.1.1");
  auto b = make_side(id_b(), symmetric(), "10.2.0.2", "198.18.2.1");
  punch_config cfg;
  auto sa = punch_session::start(*a.info, b.info->pub(), a.local, t0, cfg);
  auto sb = punch_session::start(*b.info, a.info->pub(), b.local, t0, cfg);
  REQUIRE(sa);
  REQUIRE(sb);
  REQUIRE(sa->spray() == spray_role::ports);
  REQUIRE(sb->spray() == spray_role::sockets);
  auto from_extra = [](const std::vector<punch_session::datagram>& v) {
    return std::count_if(v.begin(), v.end(), [](const auto& d) { return d.socket > 0; });
  };
  using std::chrono::milliseconds;
  (void)sa->poll(t0);
  CHECK(from_extra(sb->poll(t0)) == 1);
  CHECK(sa->probes_sent() == 1);
  // 5 ms late: the 5 owed go at once.
  (void)sa->poll(t0 + milliseconds(5));
  CHECK(from_extra(sb->poll(t0 + milliseconds(5))) == 5);
  CHECK(sa->probes_sent() == 6);
  // A second late: one burst, not the thousand owed.
  (void)sa->poll(t0 + milliseconds(1005));
  CHECK(from_extra(sb->poll(t0 + milliseconds(1005))) == cfg.spray_burst);
  CHECK(sa->probes_sent() == 6 + cfg.spray_burst);
  // Then one per pace again.
  (void)sa->poll(t0 + milliseconds(1006));
  CHECK(sa->probes_sent() == 7 + cfg.spray_burst);
  // Every probe in the end, and never more.
  for (auto now = t0 + milliseconds(1007); sa->probes_sent() < cfg.spray_probes;
       now += milliseconds(3))
    (void)sa->poll(now);
  CHECK(sa->probes_sent() == cfg.spray_probes);
}

TEST_CASE("punch: probing is only for a hard NAT against an easy one") {
  struct row {
    const char* name;
    std::optional<model::config> a, b;
    spray_role a_role, b_role;
  };
  const std::vector<row> rows = {
      {"cone x cone", cone(), cone(), spray_role::none, spray_role::none},
      {"full cone x symmetric", full_cone(), symmetric(), spray_role::none, spray_role::none},
      {"public x symmetric", std::nullopt, symmetric(), spray_role::none, spray_role::none},
      {"symmetric x symmetric", symmetric(), symmetric(), spray_role::none, spray_role::none},
      {"sequential symmetric x cone", symmetric(model::allocation::sequential, 1), cone(),
       spray_role::none, spray_role::none},
      {"symmetric x cone", symmetric(), cone(), spray_role::sockets, spray_role::ports},
  };
  for (const auto& r : rows) {
    CAPTURE(r.name);
    auto a = make_side(id_a(), r.a, "10.1.0.2", "198.18.1.1");
    auto b = make_side(id_b(), r.b, "10.2.0.2", "198.18.2.1");
    auto sa = punch_session::start(*a.info, b.info->pub(), a.local, t0);
    auto sb = punch_session::start(*b.info, a.info->pub(), b.local, t0);
    REQUIRE(sa);
    REQUIRE(sb);
    CHECK(sa->spray() == r.a_role);
    CHECK(sb->spray() == r.b_role);
  }
}

TEST_CASE("punch: a port mapping on the easy side means no probing, on both sides alike") {
  // The cone side's info holds a mapped candidate (reflexive too, or only
  // mapped as when the two are the same endpoint): each side must reach
  // the same verdict from the same two infos, or neither dials.
  for (const bool with_reflexive : {true, false}) {
    CAPTURE(with_reflexive);
    auto a = make_side(id_a(), symmetric(), "10.1.0.2", "198.18.1.1");
    auto b = make_side(id_b(), cone(), "10.2.0.2", "198.18.2.1");
    std::vector<candidate> cs;
    for (const auto& c : b.info->pub().candidates)
      if (c.kind != candidate_kind::reflexive || with_reflexive) cs.push_back(c);
    cs.push_back(
        {candidate_transport::udp, candidate_kind::mapped, ip::make_address("198.18.2.1"), 40000});
    b.info.emplace(private_connection_info::prepare(id_b(), "crust", cs, hint_of(cone()), t_unix));
    auto sa = punch_session::start(*a.info, b.info->pub(), a.local, t0);
    auto sb = punch_session::start(*b.info, a.info->pub(), b.local, t0);
    REQUIRE(sa);
    REQUIRE(sb);
    CHECK(sa->spray() == spray_role::none);
    CHECK(sb->spray() == spray_role::none);
  }
}

TEST_CASE("punch: against a sequential NAT, prediction is what finds the path") {
  punch_config cfg;
  cfg.deadline = std::chrono::seconds(2);
  auto a = make_side(id_a(), symmetric(model::allocation::sequential, 3), "10.1.0.2", "198.18.1.1");
  auto b = make_side(id_b(), cone(), "10.2.0.2", "198.18.2.1");
  auto o = punch(a, b, cfg);
  CHECK(o.b == punch_state::succeeded);
  const auto& targets = b.s->targets();
  const auto predicted = std::count_if(targets.begin(), targets.end(), [](const auto& t) {
    return t.from == punch_session::target::origin::predicted;
  });
  CHECK(predicted == cfg.predicted_ports);
  auto path = std::find_if(targets.begin(), targets.end(),
                           [&](const auto& t) { return t.endpoint == b.s->path(); });
  REQUIRE(path != targets.end());
  CHECK(path->from == punch_session::target::origin::predicted);

  cfg.predicted_ports = 0;
  auto a2 =
      make_side(id_a(), symmetric(model::allocation::sequential, 3), "10.1.0.2", "198.18.1.1");
  auto b2 = make_side(id_b(), cone(), "10.2.0.2", "198.18.2.1");
  o = punch(a2, b2, cfg);
  CHECK(o.a == punch_state::failed);
  CHECK(o.b == punch_state::failed);
}

TEST_CASE("punch: a full cone learns a symmetric peer's endpoint from its check") {
  auto a = make_side(id_a(), full_cone(), "10.1.0.2", "198.18.1.1");
  auto b = make_side(id_b(), symmetric(), "10.2.0.2", "198.18.2.1");
  auto o = punch(a, b);
  REQUIRE(o.a == punch_state::succeeded);
  const auto& targets = a.s->targets();
  auto path = std::find_if(targets.begin(), targets.end(),
                           [&](const auto& t) { return t.endpoint == a.s->path(); });
  REQUIRE(path != targets.end());
  CHECK(path->from == punch_session::target::origin::learnt);  // peer-reflexive
}

TEST_CASE("punch: pacing, retransmission and the deadline") {
  auto a = make_side(id_a(), cone(), "10.1.0.2", "198.18.1.1");
  auto b = make_side(id_b(), cone(), "10.2.0.2", "198.18.2.1");
  punch_config cfg;
  cfg.deadline = std::chrono::seconds(1);
  auto s = punch_session::start(*a.info, b.info->pub(), a.local, t0, cfg);
  REQUIRE(s);
  REQUIRE(s->targets().size() == 2);  // host and reflexive; no prediction for a cone
  std::size_t sent = 0;
  std::map<udp_endpoint, std::vector<duration>> when;
  for (auto now = t0; now <= t0 + std::chrono::seconds(2); now += std::chrono::milliseconds(1)) {
    auto out = s->poll(now);
    CHECK(out.size() <= 1);  // one check per 5 ms at most, never a burst
    for (const auto& d : out) when[d.to].push_back(now - t0);
    sent += out.size();
  }
  CHECK(s->state() == punch_state::failed);
  CHECK(s->next_wakeup() == time_point::max());
  CHECK(s->poll(t0 + std::chrono::seconds(3)).empty());
  // Every 100 ms for each target, 5 ms apart, until the deadline.
  CHECK(sent == 20);
  for (const auto& entry : when) {  // no structured bindings in CAPTURE (clang 14)
    const auto& times = entry.second;
    CAPTURE(entry.first);
    REQUIRE(times.size() == 10);
    for (std::size_t i = 1; i < times.size(); ++i)
      CHECK(times[i] - times[i - 1] == std::chrono::milliseconds(100));
  }
}

TEST_CASE("punch: unauthenticated checks and answers are neither answered nor believed") {
  auto a = make_side(id_a(), cone(), "10.1.0.2", "198.18.1.1");
  auto b = make_side(id_b(), cone(), "10.2.0.2", "198.18.2.1");
  auto s = punch_session::start(*a.info, b.info->pub(), a.local, t0);
  REQUIRE(s);
  auto peer = punch_session::start(*b.info, a.info->pub(), b.local, t0);
  REQUIRE(peer);
  const udp_endpoint from{ip::make_address("198.18.2.1"), 40000};

  // A real check from the peer is claimed and answered.
  auto checks = peer->poll(t0);
  REQUIRE(checks.size() == 1);
  CHECK(s->claims(checks[0].data));
  auto answer = s->on_datagram(checks[0].data, from, t0);
  REQUIRE(answer);
  CHECK(peer->claims(*answer));

  // The same check with one byte of its integrity changed: nothing.
  auto bad = checks[0].data;
  bad[bad.size() - 20] ^= 1;  // inside MESSAGE-INTEGRITY-SHA256, before FINGERPRINT
  CHECK(!s->on_datagram(bad, from, t0));
  // A check made with another pair's secret (a third party who read both
  // infos cannot make one): nothing.
  const auto mallory = identity::from_secrets(secure::key32{9}, secure::key32{9});
  auto m = make_side(mallory, cone(), "10.3.0.2", "198.18.3.1");
  auto forger = punch_session::start(*m.info, a.info->pub(), m.local, t0);
  REQUIRE(forger);
  auto forged = forger->poll(t0);
  REQUIRE(forged.size() == 1);
  CHECK(!s->claims(forged[0].data));
  CHECK(!s->on_datagram(forged[0].data, from, t0));

  // Our check's answer from somewhere else than where it went: ignored.
  auto mine = s->poll(t0 + std::chrono::milliseconds(5));
  REQUIRE(mine.size() == 1);
  auto reply = peer->on_datagram(mine[0].data, {a.nat->external(), 40000}, t0);
  REQUIRE(reply);
  const udp_endpoint elsewhere{ip::make_address("198.18.9.9"), 40000};
  CHECK(!s->on_datagram(*reply, elsewhere, t0));
  CHECK(s->state() == punch_state::running);
  // From where it went, it counts once.
  CHECK(!s->on_datagram(*reply, mine[0].to, t0));
  CHECK(s->state() == punch_state::succeeded);
  CHECK(s->path() == mine[0].to);
  CHECK(s->checks_answered() == 1);
  // Garbage and non-STUN bytes are not claimed.
  CHECK(!s->claims(as_bytes("hello")));
  CHECK(!s->on_datagram(as_bytes("hello"), from, t0));
}

TEST_CASE("punch: a peer without a reachable UDP candidate cannot be punched to") {
  auto a = make_side(id_a(), cone(), "10.1.0.2", "198.18.1.1");
  const std::vector<candidate> v6_and_tcp = {
      {candidate_transport::udp, candidate_kind::host, ip::make_address("2001:db8::1"), 5},
      {candidate_transport::tcp, candidate_kind::host, ip::make_address("198.18.7.7"), 5}};
  auto only = private_connection_info::prepare(id_b(), "crust", v6_and_tcp, {}, t_unix);
  auto s = punch_session::start(*a.info, only.pub(), a.local, t0);  // an IPv4 socket
  REQUIRE(!s);
  CHECK(s.error() == make_error_code(errc::malformed));
  // A dual-stack socket can try the IPv6 one.
  CHECK(punch_session::start(*a.info, only.pub(), {ip::make_address("::"), 1}, t0));
}
