#include "bootstrap/beacon.hpp"

#include <algorithm>
#include <cstring>

namespace crust::bootstrap {

namespace ip = boost::asio::ip;
using secure::key32;

namespace {
constexpr std::string_view magic = "CRSD";
constexpr std::string_view domain = "crust-beacon-v1";
constexpr byte version = 1, kind_request = 1, kind_response = 2;
constexpr std::size_t header = 4 + 1 + 1;
constexpr std::size_t request_body = 32 + 32 + 16;
constexpr std::size_t response_header = header + 16 + 32;
constexpr std::size_t tag_size = 16, signature_size = 64;

key32 network_tag(std::string_view network) {
  return secure::sha256(as_bytes(domain), as_bytes(network));
}

bool has_header(byte_span d, byte kind) {
  return d.size() >= header && std::equal(magic.begin(), magic.end(), d.begin()) &&
         d[4] == version && d[5] == kind;
}

void put_header(bytes& out, byte kind) {
  append(out, as_bytes(magic));
  out.push_back(version);
  out.push_back(kind);
}

// The response key: both ephemerals and the DH result, salted by the nonce.
result<key32> response_key(const key32& my_priv, const key32& their_pub, const key32& asker_pub,
                           const key32& responder_pub, byte_span nonce) {
  auto dh = secure::x25519(my_priv, their_pub);
  if (!dh) return dh.error();
  bytes ikm;
  append(ikm, *dh);
  append(ikm, asker_pub);
  append(ikm, responder_pub);
  return secure::hmac_sha256(nonce, ikm);
}

bytes signed_part(const key32& tag, byte_span nonce, const key32& asker_pub, byte_span record) {
  bytes m(domain.begin(), domain.end());
  append(m, tag);
  append(m, nonce);
  append(m, asker_pub);
  append(m, record);
  return m;
}

template <std::size_t N>
byte_array<N> take(byte_span s, std::size_t at) {
  byte_array<N> out{};
  std::copy_n(s.begin() + static_cast<std::ptrdiff_t>(at), N, out.begin());
  return out;
}
}  // namespace

beacon_query::beacon_query(std::string_view network_name)
    : tag_(network_tag(network_name)), eph_(secure::x25519_keypair::generate()) {
  secure::random_fill(nonce_);
}

beacon_query::beacon_query(std::string_view network_name, secure::x25519_keypair eph,
                           byte_array<16> nonce)
    : tag_(network_tag(network_name)), eph_(eph), nonce_(nonce) {}

bytes beacon_query::request() const {
  bytes out;
  out.reserve(beacon_request_size);
  put_header(out, kind_request);
  append(out, tag_);
  append(out, eph_.pub);
  append(out, nonce_);
  out.resize(beacon_request_size, 0);
  return out;
}

bool beacon_query::is_own_request(byte_span d) const {
  return has_header(d, kind_request) && d.size() >= header + request_body &&
         std::equal(eph_.pub.begin(), eph_.pub.end(), d.begin() + header + 32);
}

std::optional<beacon_contact> beacon_query::accept(byte_span d, const ip::address& from) const {
  // The smallest record: id, static key, time, one family-0 endpoint, signature.
  constexpr std::size_t min_record = 32 + 32 + 8 + 1 + 3 + signature_size;
  if (!has_header(d, kind_response) || d.size() < response_header + min_record + tag_size)
    return std::nullopt;
  if (!std::equal(nonce_.begin(), nonce_.end(), d.begin() + header)) return std::nullopt;
  const auto responder_pub = take<32>(d, header + 16);
  auto key = response_key(eph_.priv, responder_pub, eph_.pub, responder_pub, nonce_);
  if (!key) return std::nullopt;
  const byte_span sealed = d.subspan(response_header);
  bytes record(sealed.size() - tag_size);
  secure::chacha20_poly1305 aead;
  if (!aead.open(*key, 0, d.first(response_header), sealed, record.data())) return std::nullopt;

  // id | static | time | n | endpoints | signature
  if (record.size() < 32 + 32 + 8 + 1 + signature_size) return std::nullopt;
  beacon_contact c;
  c.key.id.key = take<32>(record, 0);
  c.key.noise_static = take<32>(record, 32);
  c.timestamp = static_cast<std::int64_t>((std::uint64_t{get_u32(record.data() + 64)} << 32) |
                                          get_u32(record.data() + 68));
  const std::size_t n = record[72];
  if (n == 0 || n > beacon_max_endpoints) return std::nullopt;
  std::size_t at = 73;
  for (std::size_t i = 0; i < n; ++i) {
    if (at + 1 > record.size()) return std::nullopt;
    const byte family = record[at++];
    const std::size_t alen = family == 4 ? 4 : family == 6 ? 16 : family == 0 ? 0 : 99;
    if (alen == 99 || at + alen + 2 > record.size()) return std::nullopt;
    ip::address addr = from;
    if (family == 4) addr = ip::address_v4(take<4>(record, at));
    if (family == 6) addr = ip::address_v6(take<16>(record, at));
    at += alen;
    const auto port = get_u16(record.data() + at);
    at += 2;
    if (port == 0) return std::nullopt;
    c.endpoints.emplace_back(addr, port);
  }
  if (at + signature_size != record.size()) return std::nullopt;
  secure::signature64 sig{};
  std::copy_n(record.begin() + static_cast<std::ptrdiff_t>(at), signature_size, sig.begin());
  const auto body = byte_span(record).first(at);
  if (!secure::ed25519_verify(c.key.id.key, signed_part(tag_, nonce_, eph_.pub, body), sig))
    return std::nullopt;
  return c;
}

std::optional<bytes> beacon_answer(byte_span request, std::string_view network_name,
                                   const identity& me,
                                   const std::vector<advertised_endpoint>& endpoints,
                                   std::int64_t now) {
  if (!has_header(request, kind_request) || request.size() < header + request_body)
    return std::nullopt;
  const auto tag = network_tag(network_name);
  if (!std::equal(tag.begin(), tag.end(), request.begin() + header)) return std::nullopt;
  if (endpoints.empty()) return std::nullopt;
  const auto asker_pub = take<32>(request, header + 32);
  const byte_span nonce = request.subspan(header + 64, 16);

  bytes record;
  append(record, me.id().key);
  append(record, me.static_key().pub);
  const auto t = static_cast<std::uint64_t>(now);
  put_u32(record, static_cast<std::uint32_t>(t >> 32));
  put_u32(record, static_cast<std::uint32_t>(t));
  const std::size_t n = std::min(endpoints.size(), beacon_max_endpoints);
  record.push_back(static_cast<byte>(n));
  for (std::size_t i = 0; i < n; ++i) {
    const auto& e = endpoints[i];
    if (!e.address) {
      record.push_back(0);
    } else if (e.address->is_v4()) {
      record.push_back(4);
      append(record, e.address->to_v4().to_bytes());
    } else {
      record.push_back(6);
      append(record, e.address->to_v6().to_bytes());
    }
    put_u16(record, e.port);
  }
  append(record, me.sign(signed_part(tag, nonce, asker_pub, record)));

  bytes out;
  put_header(out, kind_response);
  append(out, nonce);
  const auto eph = secure::x25519_keypair::generate();
  append(out, eph.pub);
  if (out.size() + record.size() + tag_size > request.size())
    return std::nullopt;  // no amplification
  auto key = response_key(eph.priv, asker_pub, asker_pub, eph.pub, nonce);
  if (!key) return std::nullopt;  // a low-order key from the asker
  const std::size_t head = out.size();
  out.resize(head + record.size() + tag_size);
  secure::chacha20_poly1305 aead;
  aead.seal(*key, 0, byte_span(out).first(head), record, out.data() + head);
  return out;
}

}  // namespace crust::bootstrap
