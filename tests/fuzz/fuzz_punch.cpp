// A punch session fed arbitrary datagrams from arbitrary endpoints, with
// polls in between: it must never misbehave, never answer with more bytes
// than it got, and claim what it acts on. The first two bytes pick the
// form (raw bytes, or a genuine check built around the input), the source
// port and how far the clock moves.
#include "nat/punch.hpp"

#include <algorithm>
#include <cstdint>

using namespace crust;
using namespace crust::nat;
namespace ip = boost::asio::ip;

namespace {
private_connection_info info(std::uint8_t seed, const char* addr) {
  const auto id = identity::from_secrets(secure::key32{seed}, secure::key32{seed});
  std::vector<candidate> cs = {
      {candidate_transport::udp, candidate_kind::host, ip::make_address(addr), 40000},
      {candidate_transport::udp, candidate_kind::reflexive, ip::make_address("198.18.0.9"), 41000}};
  nat_hint h;
  h.allocation = allocation_behaviour::sequential;
  h.port_step = 2;
  return private_connection_info::prepare(id, "crust", cs, h, 1'800'000'000, 600,
                                          secure::x25519_keypair::from_private(secure::key32{seed}),
                                          byte_array<16>{seed});
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto mine = info(1, "198.18.0.1");
  static const auto theirs = info(2, "198.18.0.2");
  if (size < 2) return 0;
  const time_point t0{};
  auto s = punch_session::start(mine, theirs.pub(), {ip::make_address("0.0.0.0"), 40000}, t0);
  if (!s) __builtin_trap();
  const udp_endpoint from{ip::make_address("198.18.0.9"),
                          static_cast<std::uint16_t>(41000 + (data[0] >> 1))};
  const auto now = t0 + std::chrono::milliseconds(data[1] * 20);
  (void)s->poll(t0);
  // Odd first byte: a genuine check from the peer (the harness knows the
  // pair's secret), its transaction id and a SOFTWARE text from the input,
  // so the fuzzer reaches the answering and learning paths too.
  bytes genuine;
  byte_span d(data + 2, size - 2);
  if (data[0] & 1) {
    static const auto key = theirs.punch_secret(mine.pub());
    if (!key) __builtin_trap();
    stun::transaction_id id{};
    std::copy_n(d.begin(), std::min(d.size(), id.size()), id.begin());
    const auto rest = d.size() > id.size() ? d.subspan(id.size()) : byte_span{};
    const std::string_view text(reinterpret_cast<const char*>(rest.data()),
                                std::min<std::size_t>(rest.size(), 200));
    const auto user = to_hex(byte_span(mine.pub().nonce).first(8)) + ":" +
                      to_hex(byte_span(theirs.pub().nonce).first(8));
    genuine = std::move(stun::builder(stun::msg_class::request, stun::binding, id)
                            .add(stun::attr::username, user)
                            .add(stun::attr::software, text)
                            .add_integrity_sha256(*key)
                            .add_fingerprint())
                  .finish();
    d = genuine;
  }
  const bool claimed = s->claims(d);
  auto answer = s->on_datagram(d, from, now);
  if (answer && (!claimed || answer->size() > d.size())) __builtin_trap();
  if (s->state() == punch_state::succeeded && (!claimed || !s->path())) __builtin_trap();
  for (const auto& out : s->poll(now))
    if (out.data.empty()) __builtin_trap();
  return 0;
}
