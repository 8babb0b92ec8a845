#include "nat/connection_info.hpp"

#include "transports/endpoint.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <array>

namespace crust::nat {

namespace ip = boost::asio::ip;
namespace json = boost::json;
using secure::key32;

namespace {
constexpr std::string_view magic = "CRCI";
constexpr std::string_view domain = "crust-conninfo-v1";
constexpr byte version = 1;
constexpr std::size_t tag_size = 8, signature_size = 64;
// magic, version, tag, id, static, punch key, nonce, created, lifetime,
// mapping, allocation, step, filtering, flags, n
constexpr std::size_t fixed_size =
    4 + 1 + tag_size + 32 + 32 + 32 + 16 + 8 + 4 + 1 + 1 + 2 + 1 + 1 + 1;
constexpr byte flag_hairpin_known = 1, flag_hairpin_works = 2;

// Names in the JSON form, indexed by the enums' values (which are also
// their wire bytes).
constexpr std::array<std::string_view, 6> mapping_names = {
    "unknown",  "none", "endpoint-independent", "address-dependent", "address-and-port-dependent",
    "dependent"};
constexpr std::array<std::string_view, 4> allocation_names = {"unknown", "preserving", "sequential",
                                                              "random"};
constexpr std::array<std::string_view, 4> filtering_names = {
    "unknown", "endpoint-independent", "address-dependent", "address-and-port-dependent"};

bytes signed_message(std::string_view network, byte_span body) {
  return signed_form::message(domain, network, body);
}

// Everything but the signature.
bytes encode_body(const connection_info& c) {
  bytes out;
  out.reserve(fixed_size + c.candidates.size() * 21 + signature_size);
  append(out, as_bytes(magic));
  out.push_back(version);
  append(out, c.network_tag);
  append(out, c.key.id.key);
  append(out, c.key.noise_static);
  append(out, c.punch_key);
  append(out, c.nonce);
  const auto created = static_cast<std::uint64_t>(c.created);
  put_u32(out, static_cast<std::uint32_t>(created >> 32));
  put_u32(out, static_cast<std::uint32_t>(created));
  put_u32(out, c.lifetime);
  out.push_back(static_cast<byte>(c.nat.mapping));
  out.push_back(static_cast<byte>(c.nat.allocation));
  put_u16(out, static_cast<std::uint16_t>(static_cast<std::int16_t>(c.nat.port_step)));
  out.push_back(static_cast<byte>(c.nat.filtering));
  byte flags = 0;
  if (c.nat.hairpinning) flags = flag_hairpin_known | (*c.nat.hairpinning ? flag_hairpin_works : 0);
  out.push_back(flags);
  out.push_back(static_cast<byte>(c.candidates.size()));
  for (const auto& k : c.candidates) encode_candidate(out, k);
  return out;
}

boost::system::result<connection_info, info_error> refuse(errc code, std::string message) {
  return info_error{make_error_code(code), std::move(message)};
}

template <std::size_t N>
byte_array<N> take(byte_span s, std::size_t at) {
  byte_array<N> out{};
  std::copy_n(s.begin() + static_cast<std::ptrdiff_t>(at), N, out.begin());
  return out;
}

template <std::size_t N>
std::optional<std::size_t> name_index(const std::array<std::string_view, N>& names,
                                      std::string_view s) {
  for (std::size_t i = 0; i < N; ++i)
    if (names[i] == s) return i;
  return std::nullopt;
}

template <std::size_t N>
std::optional<byte_array<N>> hex_field(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  if (!v || !v->is_string()) return std::nullopt;
  auto b = from_hex(v->as_string());
  if (!b || b->size() != N) return std::nullopt;
  byte_array<N> out{};
  std::copy(b->begin(), b->end(), out.begin());
  return out;
}

}  // namespace

std::string_view to_string(candidate_transport t) noexcept {
  return t == candidate_transport::tcp ? "tcp" : "udp";
}

std::string_view to_string(candidate_kind k) noexcept {
  switch (k) {
    case candidate_kind::host:
      return "host";
    case candidate_kind::reflexive:
      return "reflexive";
    case candidate_kind::mapped:
      return "mapped";
  }
  return "host";
}

void encode_candidate(bytes& out, const candidate& k) {
  out.push_back(static_cast<byte>(k.transport));
  out.push_back(static_cast<byte>(k.kind));
  if (k.address.is_v4()) {
    out.push_back(4);
    append(out, k.address.to_v4().to_bytes());
  } else {
    out.push_back(6);
    append(out, k.address.to_v6().to_bytes());
  }
  put_u16(out, k.port);
}

std::optional<std::string> decode_candidates(byte_span d, std::size_t& at, std::size_t n,
                                             std::string_view what, std::vector<candidate>& out) {
  const std::string cut_short = std::string(what) + " cut short";
  for (std::size_t i = 0; i < n; ++i) {
    const std::string which = "candidate " + std::to_string(i + 1);
    if (at + 3 > d.size()) return cut_short;
    candidate k;
    const byte t = d[at], kind = d[at + 1], family = d[at + 2];
    if (t < 1 || t > 2 || kind < 1 || kind > 3 || (family != 4 && family != 6))
      return which + " is of an unknown kind";
    const std::size_t alen = family == 4 ? 4 : 16;
    if (at + 3 + alen + 2 > d.size()) return cut_short;
    k.transport = static_cast<candidate_transport>(t);
    k.kind = static_cast<candidate_kind>(kind);
    if (family == 4)
      k.address = ip::address_v4(take<4>(d, at + 3));
    else
      k.address = ip::address_v6(take<16>(d, at + 3));
    k.port = get_u16(d.data() + at + 3 + alen);
    if (k.port == 0 || k.address.is_unspecified() || k.address.is_multicast())
      return which + " is not a unicast address and port";
    if (std::find(out.begin(), out.end(), k) != out.end()) return which + " is a duplicate";
    at += 3 + alen + 2;
    out.push_back(std::move(k));
  }
  return std::nullopt;
}

namespace signed_form {

key32 network_hash(std::string_view domain, std::string_view network) {
  return secure::sha256(as_bytes(domain), as_bytes(network));
}

byte_array<8> network_tag(std::string_view domain, std::string_view network) {
  const key32 h = network_hash(domain, network);
  byte_array<8> t{};
  std::copy_n(h.begin(), t.size(), t.begin());
  return t;
}

bytes message(std::string_view domain, std::string_view network, byte_span body) {
  bytes m(domain.begin(), domain.end());
  append(m, network_hash(domain, network));
  append(m, body);
  return m;
}

}  // namespace signed_form

std::string candidate::endpoint_string() const {
  return transport::to_string(transport::tcp_endpoint(address, port));
}

nat_hint nat_hint::from(const nat_report& r) {
  return {r.mapping, r.allocation, std::clamp(r.port_step, -32768, 32767), r.filtering,
          r.hairpinning};
}

bool connection_info::expired(std::int64_t now) const noexcept {
  // In long double: created and now may be anything, and must not overflow.
  const auto c = static_cast<long double>(created), n = static_cast<long double>(now);
  return c > n + info_clock_skew || c + lifetime + info_clock_skew < n;
}

bytes connection_info::encode() const {
  bytes out = encode_body(*this);
  append(out, signature);
  return out;
}

boost::system::result<connection_info, info_error> connection_info::decode(
    byte_span d, std::string_view network_name, std::int64_t now) {
  if (d.size() < fixed_size + signature_size || !std::equal(magic.begin(), magic.end(), d.begin()))
    return refuse(errc::malformed, "not a connection info (too short or no \"CRCI\" header)");
  if (d[4] != version)
    return refuse(errc::malformed,
                  "a connection info of version " + std::to_string(d[4]) + " (this is 1)");
  connection_info c;
  std::size_t at = 5;
  c.network_tag = take<8>(d, at);
  at += tag_size;
  if (c.network_tag != signed_form::network_tag(domain, network_name))
    return refuse(errc::wrong_network, "a connection info of another network (not \"" +
                                           std::string(network_name) + "\")");
  c.key.id.key = take<32>(d, at);
  c.key.noise_static = take<32>(d, at + 32);
  c.punch_key = take<32>(d, at + 64);
  c.nonce = take<16>(d, at + 96);
  at += 112;
  c.created = static_cast<std::int64_t>((std::uint64_t{get_u32(d.data() + at)} << 32) |
                                        get_u32(d.data() + at + 4));
  c.lifetime = get_u32(d.data() + at + 8);
  at += 12;
  const byte mapping = d[at], allocation = d[at + 1];
  const auto step = static_cast<std::int16_t>(get_u16(d.data() + at + 2));
  const byte filtering = d[at + 4], flags = d[at + 5];
  const std::size_t n = d[at + 6];
  at += 7;
  if (mapping >= mapping_names.size() || allocation >= allocation_names.size() ||
      filtering >= filtering_names.size() || (flags & ~(flag_hairpin_known | flag_hairpin_works)) ||
      (flags == flag_hairpin_works))
    return refuse(errc::malformed, "a connection info with an unknown NAT description");
  c.nat.mapping = static_cast<mapping_behaviour>(mapping);
  c.nat.allocation = static_cast<allocation_behaviour>(allocation);
  c.nat.port_step = step;
  c.nat.filtering = static_cast<filtering_behaviour>(filtering);
  if (flags & flag_hairpin_known) c.nat.hairpinning = (flags & flag_hairpin_works) != 0;
  if (c.lifetime == 0 || c.lifetime > info_max_lifetime)
    return refuse(errc::malformed, "a connection info with a lifetime of " +
                                       std::to_string(c.lifetime) + " s (1 to " +
                                       std::to_string(info_max_lifetime) + " allowed)");
  if (n == 0 || n > max_candidates)
    return refuse(errc::malformed, "a connection info with " + std::to_string(n) +
                                       " candidates (1 to " + std::to_string(max_candidates) +
                                       " allowed)");
  if (auto why = decode_candidates(d, at, n, "a connection info", c.candidates))
    return refuse(errc::malformed, std::move(*why));
  if (at + signature_size != d.size())
    return refuse(errc::malformed, at + signature_size > d.size()
                                       ? "a connection info cut short"
                                       : "a connection info with bytes after its signature");
  std::copy_n(d.begin() + static_cast<std::ptrdiff_t>(at), signature_size, c.signature.begin());
  if (!secure::ed25519_verify(c.key.id.key, signed_message(network_name, d.first(at)), c.signature))
    return refuse(errc::bad_signature, "a connection info whose signature does not verify");
  if (c.expired(now))
    return refuse(
        errc::expired,
        (c.created > now ? "a connection info made in the future" : "an expired connection info") +
            std::string(" (made at ") + std::to_string(c.created) + ", valid for " +
            std::to_string(c.lifetime) + " s; our clock says " + std::to_string(now) + ")");
  return c;
}

std::string connection_info::to_json() const {
  json::object o;
  o["format"] = "crust-connection-info";
  o["version"] = version;
  o["network_tag"] = to_hex(network_tag);
  o["key"] = key.to_string();
  o["punch_key"] = to_hex(punch_key);
  o["nonce"] = to_hex(nonce);
  o["created"] = created;
  o["lifetime"] = lifetime;
  json::object n;
  n["mapping"] = mapping_names[static_cast<std::size_t>(nat.mapping)];
  n["allocation"] = allocation_names[static_cast<std::size_t>(nat.allocation)];
  n["port_step"] = nat.port_step;
  n["filtering"] = filtering_names[static_cast<std::size_t>(nat.filtering)];
  if (nat.hairpinning)
    n["hairpinning"] = *nat.hairpinning;
  else
    n["hairpinning"] = nullptr;
  o["nat"] = std::move(n);
  json::array cs;
  for (const auto& k : candidates) {
    json::object e;
    e["transport"] = to_string(k.transport);
    e["kind"] = to_string(k.kind);
    e["endpoint"] = k.endpoint_string();
    cs.push_back(std::move(e));
  }
  o["candidates"] = std::move(cs);
  o["signature"] = to_hex(signature);
  return json::serialize(o) + "\n";
}

boost::system::result<connection_info, info_error> connection_info::from_json(
    std::string_view text, std::string_view network_name, std::int64_t now) {
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec);
  if (ec) return refuse(errc::malformed, "not valid JSON (" + ec.message() + ")");
  const auto* o = doc.if_object();
  const json::value* format = o ? o->if_contains("format") : nullptr;
  if (!format || !format->is_string() || format->as_string() != "crust-connection-info")
    return refuse(errc::malformed,
                  "not a connection info (no \"format\": \"crust-connection-info\")");
  static constexpr std::array<std::string_view, 11> keys = {
      "format",  "version",  "network_tag", "key",        "punch_key", "nonce",
      "created", "lifetime", "nat",         "candidates", "signature"};
  for (const auto& kv : *o)
    if (std::find(keys.begin(), keys.end(), std::string_view(kv.key())) == keys.end())
      return refuse(errc::malformed, "unknown key \"" + std::string(kv.key()) + "\"");
  const auto bad = [](std::string_view key, std::string_view what) {
    return refuse(errc::malformed, "\"" + std::string(key) + "\" must be " + std::string(what));
  };
  const auto* v = o->if_contains("version");
  if (!v || !v->is_int64() || v->as_int64() != version)
    return bad("version", "1 (the only version there is)");
  connection_info c;
  auto tag = hex_field<8>(*o, "network_tag");
  if (!tag) return bad("network_tag", "16 hex digits");
  c.network_tag = *tag;
  const auto* key = o->if_contains("key");
  if (!key || !key->is_string()) return bad("key", "128 hex digits (id, then Noise static key)");
  auto k = peer_key::parse(key->as_string());
  if (!k) return bad("key", "128 hex digits (id, then Noise static key)");
  c.key = *k;
  auto punch = hex_field<32>(*o, "punch_key");
  if (!punch) return bad("punch_key", "64 hex digits");
  c.punch_key = *punch;
  auto nonce = hex_field<16>(*o, "nonce");
  if (!nonce) return bad("nonce", "32 hex digits");
  c.nonce = *nonce;
  const auto* created = o->if_contains("created");
  if (!created || !created->is_int64()) return bad("created", "Unix seconds");
  c.created = created->as_int64();
  const auto* lifetime = o->if_contains("lifetime");
  if (!lifetime || !(lifetime->is_int64() || lifetime->is_uint64()) ||
      lifetime->to_number<std::int64_t>() < 1 ||
      lifetime->to_number<std::int64_t>() > info_max_lifetime)
    return bad("lifetime", "1 to " + std::to_string(info_max_lifetime) + " seconds");
  c.lifetime = static_cast<std::uint32_t>(lifetime->to_number<std::int64_t>());
  const auto* nat = o->if_contains("nat");
  if (!nat || !nat->is_object()) return bad("nat", "an object");
  const auto& no = nat->as_object();
  const auto name = [&](std::string_view field) -> std::string_view {
    const auto* f = no.if_contains(field);
    return f && f->is_string() ? std::string_view(f->as_string()) : std::string_view("?");
  };
  auto m = name_index(mapping_names, name("mapping"));
  auto a = name_index(allocation_names, name("allocation"));
  auto f = name_index(filtering_names, name("filtering"));
  const auto* step = no.if_contains("port_step");
  const auto* hairpin = no.if_contains("hairpinning");
  if (!m || !a || !f || !step || !step->is_int64() || step->as_int64() < -32768 ||
      step->as_int64() > 32767 || !hairpin || !(hairpin->is_bool() || hairpin->is_null()) ||
      no.size() != 5)
    return bad("nat", "{mapping, allocation, port_step, filtering, hairpinning} with known values");
  c.nat.mapping = static_cast<mapping_behaviour>(*m);
  c.nat.allocation = static_cast<allocation_behaviour>(*a);
  c.nat.port_step = static_cast<int>(step->as_int64());
  c.nat.filtering = static_cast<filtering_behaviour>(*f);
  if (hairpin->is_bool()) c.nat.hairpinning = hairpin->as_bool();
  const auto* cs = o->if_contains("candidates");
  if (!cs || !cs->is_array() || cs->as_array().empty() || cs->as_array().size() > max_candidates)
    return bad("candidates", "an array of 1 to " + std::to_string(max_candidates) + " candidates");
  for (const auto& e : cs->as_array()) {
    const auto* eo = e.if_object();
    const json::value *t = eo ? eo->if_contains("transport") : nullptr,
                      *kind = eo ? eo->if_contains("kind") : nullptr,
                      *ep = eo ? eo->if_contains("endpoint") : nullptr;
    const auto bad_candidate = [&] {
      return bad("candidates",
                 "objects {transport: tcp|udp, kind: host|reflexive|mapped, endpoint: IP:PORT}");
    };
    if (!t || !kind || !ep || !t->is_string() || !kind->is_string() || !ep->is_string() ||
        eo->size() != 3)
      return bad_candidate();
    candidate k;
    if (t->as_string() == "tcp")
      k.transport = candidate_transport::tcp;
    else if (t->as_string() == "udp")
      k.transport = candidate_transport::udp;
    else
      return bad_candidate();
    const std::string_view ks = kind->as_string();
    if (ks == "host")
      k.kind = candidate_kind::host;
    else if (ks == "reflexive")
      k.kind = candidate_kind::reflexive;
    else if (ks == "mapped")
      k.kind = candidate_kind::mapped;
    else
      return bad_candidate();
    auto parsed = transport::parse_endpoint(ep->as_string());
    if (!parsed) return bad_candidate();
    k.address = parsed->address();
    k.port = parsed->port();
    c.candidates.push_back(std::move(k));
  }
  auto sig = hex_field<64>(*o, "signature");
  if (!sig) return bad("signature", "128 hex digits");
  c.signature = *sig;
  // The same checks as the wire form, on the bytes the signature covers.
  return decode(c.encode(), network_name, now);
}

private_connection_info private_connection_info::prepare(const identity& me,
                                                         std::string_view network_name,
                                                         std::vector<candidate> candidates,
                                                         nat_hint nat, std::int64_t now,
                                                         std::uint32_t lifetime) {
  byte_array<16> nonce{};
  secure::random_fill(nonce);
  return prepare(me, network_name, std::move(candidates), nat, now, lifetime,
                 secure::x25519_keypair::generate(), nonce);
}

private_connection_info private_connection_info::prepare(
    const identity& me, std::string_view network_name, std::vector<candidate> candidates,
    nat_hint nat, std::int64_t now, std::uint32_t lifetime, const secure::x25519_keypair& punch,
    const byte_array<16>& nonce) {
  private_connection_info p;
  p.punch_ = punch;
  auto& c = p.pub_;
  c.network_tag = signed_form::network_tag(domain, network_name);
  c.key = me.public_key();
  c.punch_key = punch.pub;
  c.nonce = nonce;
  c.created = now;
  c.lifetime = std::clamp<std::uint32_t>(lifetime, 1, info_max_lifetime);
  nat.port_step = std::clamp(nat.port_step, -32768, 32767);
  c.nat = nat;
  for (auto& k : candidates) {
    if (c.candidates.size() == max_candidates) break;
    if (k.port == 0 || k.address.is_unspecified() || k.address.is_multicast()) continue;
    if (k.address.is_v6() && k.address.to_v6().is_v4_mapped())
      k.address = transport::canonical(k.address);
    if (std::find(c.candidates.begin(), c.candidates.end(), k) == c.candidates.end())
      c.candidates.push_back(k);
  }
  c.signature = me.sign(signed_message(network_name, encode_body(c)));
  return p;
}

result<key32> private_connection_info::punch_secret(const connection_info& theirs) const {
  auto dh = secure::x25519(punch_.priv, theirs.punch_key);
  if (!dh) return dh.error();
  const bool we_low =
      std::lexicographical_compare(pub_.punch_key.begin(), pub_.punch_key.end(),
                                   theirs.punch_key.begin(), theirs.punch_key.end());
  const bool nonce_low = std::lexicographical_compare(pub_.nonce.begin(), pub_.nonce.end(),
                                                      theirs.nonce.begin(), theirs.nonce.end());
  bytes salt;
  append(salt, nonce_low ? pub_.nonce : theirs.nonce);
  append(salt, nonce_low ? theirs.nonce : pub_.nonce);
  bytes ikm(domain.begin(), domain.end());
  append(ikm, *dh);
  append(ikm, we_low ? pub_.punch_key : theirs.punch_key);
  append(ikm, we_low ? theirs.punch_key : pub_.punch_key);
  return secure::hmac_sha256(salt, ikm);
}

}  // namespace crust::nat
