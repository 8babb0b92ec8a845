#include "nat/stun.hpp"

#include "crust/secure/crypto.hpp"

#include <boost/crc.hpp>

#include <algorithm>

namespace crust::nat::stun {

namespace ip = boost::asio::ip;

namespace {

constexpr std::size_t mi_size = 20;      // HMAC-SHA1
constexpr std::size_t mi256_size = 32;   // HMAC-SHA256, as we send it
constexpr std::size_t mi256_min = 16;    // §14.6: may be truncated to 16
constexpr std::size_t max_reason = 763;  // §14.8, in bytes

constexpr bool is_xor_type(std::uint16_t t) noexcept {
  return t == attr::xor_mapped_address || t == attr::xor_mapped_address_draft;
}

// The 16 bytes an IPv6 XOR address is combined with: cookie then id.
byte_array<16> xor_pad(const transaction_id& id) {
  byte_array<16> pad{};
  for (int i = 0; i < 4; ++i) pad[i] = static_cast<byte>(magic_cookie >> (24 - 8 * i));
  std::copy(id.begin(), id.end(), pad.begin() + 4);
  return pad;
}

void write_u16(byte* p, std::uint16_t v) noexcept {
  p[0] = static_cast<byte>(v >> 8);
  p[1] = static_cast<byte>(v);
}

// The first `n` bytes of `raw` with the header's length field set to
// `length`: what an integrity or fingerprint attribute covers.
bytes covered(byte_span raw, std::size_t n, std::size_t length) {
  bytes b(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(n));
  write_u16(b.data() + 2, static_cast<std::uint16_t>(length));
  return b;
}

}  // namespace

bool looks_like_stun(byte_span d) noexcept {
  return d.size() >= header_size && (d[0] & 0xC0) == 0 && get_u32(d.data() + 4) == magic_cookie;
}

std::uint32_t fingerprint_of(byte_span data) noexcept {
  boost::crc_32_type crc;
  crc.process_bytes(data.data(), data.size());
  return crc.checksum() ^ fingerprint_xor;
}

result<message> message::parse(byte_span d) {
  const auto bad = make_error_code(errc::malformed);
  if (!looks_like_stun(d) || d.size() > max_message_size) return bad;
  const std::size_t length = get_u16(d.data() + 2);
  if (length % 4 != 0 || header_size + length != d.size()) return bad;

  message m;
  m.raw_.assign(d.begin(), d.end());
  const std::uint16_t type = get_u16(d.data());
  // Type bits: M11..M7 C1 M6..M4 C0 M3..M0 (§5).
  m.method_ =
      static_cast<std::uint16_t>((type & 0x000F) | ((type & 0x00E0) >> 1) | ((type & 0x3E00) >> 2));
  m.cls_ = static_cast<msg_class>(((type >> 4) & 0x1) | ((type >> 7) & 0x2));
  std::copy_n(d.begin() + 8, 12, m.id_.begin());

  bool after_mi = false, after_mi256 = false;
  std::size_t at = header_size;
  while (at < d.size()) {
    if (d.size() - at < 4) return bad;
    const std::uint16_t t = get_u16(d.data() + at);
    const std::size_t len = get_u16(d.data() + at + 2);
    const std::size_t padded = (len + 3) & ~std::size_t{3};
    if (d.size() - at - 4 < padded) return bad;
    const attribute a{t, at + 4, len};
    const std::size_t next = at + 4 + padded;
    if (t == attr::fingerprint) {
      // Last, 4 bytes, and right: otherwise this is not STUN.
      if (len != 4 || next != d.size()) return bad;
      if (get_u32(d.data() + a.offset) != fingerprint_of(d.first(at))) return bad;
      m.fingerprint_ = true;
      m.attrs_.push_back(a);
    } else if (t == attr::message_integrity) {
      if (len != mi_size) return bad;
      if (!after_mi && !after_mi256) m.attrs_.push_back(a);
      after_mi = true;
    } else if (t == attr::message_integrity_sha256) {
      if (len < mi256_min || len > mi256_size || len % 4 != 0) return bad;
      if (!after_mi256) m.attrs_.push_back(a);
      after_mi256 = true;
    } else if (!after_mi && !after_mi256) {
      m.attrs_.push_back(a);
    }
    at = next;
  }
  return m;
}

std::optional<byte_span> message::find(std::uint16_t type) const {
  for (const auto& a : attrs_)
    if (a.type == type) return byte_span(raw_).subspan(a.offset, a.length);
  return std::nullopt;
}

std::optional<udp_endpoint> message::address(std::uint16_t type) const {
  auto v = find(type);
  if (!v || v->size() < 4) return std::nullopt;
  const byte family = (*v)[1];
  std::uint16_t port = get_u16(v->data() + 2);
  const bool x = is_xor_type(type);
  if (x) port ^= static_cast<std::uint16_t>(magic_cookie >> 16);
  if (family == 0x01 && v->size() == 8) {
    std::uint32_t a = get_u32(v->data() + 4);
    if (x) a ^= magic_cookie;
    return udp_endpoint(ip::address_v4(a), port);
  }
  if (family == 0x02 && v->size() == 20) {
    ip::address_v6::bytes_type b;
    std::copy_n(v->begin() + 4, 16, b.begin());
    if (x) {
      const auto pad = xor_pad(id_);
      for (std::size_t i = 0; i < 16; ++i) b[i] ^= pad[i];
    }
    return udp_endpoint(ip::address_v6(b), port);
  }
  return std::nullopt;
}

std::optional<udp_endpoint> message::mapped() const {
  for (auto t : {attr::xor_mapped_address, attr::xor_mapped_address_draft, attr::mapped_address})
    if (auto a = address(t)) return a;
  return std::nullopt;
}

std::optional<error_value> message::error() const {
  auto v = find(attr::error_code);
  if (!v || v->size() < 4) return std::nullopt;
  const int cls = (*v)[2] & 0x07, number = (*v)[3];
  if (cls < 3 || cls > 6 || number > 99) return std::nullopt;
  const auto reason = v->subspan(4);
  return error_value{cls * 100 + number, std::string(reason.begin(), reason.end())};
}

std::optional<std::string> message::text(std::uint16_t type) const {
  auto v = find(type);
  if (!v) return std::nullopt;
  return std::string(v->begin(), v->end());
}

std::vector<std::uint16_t> message::unknown_required(
    const std::set<std::uint16_t>& understood) const {
  std::vector<std::uint16_t> out;
  for (const auto& a : attrs_)
    if (comprehension_required(a.type) && !understood.count(a.type) &&
        std::find(out.begin(), out.end(), a.type) == out.end())
      out.push_back(a.type);
  return out;
}

bool message::check_mac(std::uint16_t type, byte_span key) const {
  for (const auto& a : attrs_) {
    if (a.type != type) continue;
    const std::size_t start = a.offset - 4;  // the attribute's header
    const auto data = covered(raw_, start, start - header_size + 4 + a.length);
    const auto got = byte_span(raw_).subspan(a.offset, a.length);
    if (type == attr::message_integrity) {
      const auto mac = secure::hmac_sha1(key, data);
      return equal_ct(got, mac);
    }
    const auto mac = secure::hmac_sha256(key, data);
    return equal_ct(got, byte_span(mac).first(a.length));
  }
  return false;
}

bool message::check_integrity(byte_span key) const {
  return check_mac(attr::message_integrity, key);
}

bool message::check_integrity_sha256(byte_span key) const {
  return check_mac(attr::message_integrity_sha256, key);
}

builder::builder(msg_class c, std::uint16_t method, const transaction_id& id) : id_(id) {
  const auto k = static_cast<std::uint16_t>(c);
  const auto type =
      static_cast<std::uint16_t>((method & 0x000F) | ((method & 0x0070) << 1) |
                                 ((method & 0x0F80) << 2) | ((k & 0x1) << 4) | ((k & 0x2) << 7));
  out_.reserve(128);
  put_u16(out_, type);
  put_u16(out_, 0);
  put_u32(out_, magic_cookie);
  append(out_, id);
}

void builder::set_length() {
  write_u16(out_.data() + 2, static_cast<std::uint16_t>(out_.size() - header_size));
}

builder& builder::add(std::uint16_t type, byte_span value) {
  put_u16(out_, type);
  put_u16(out_, static_cast<std::uint16_t>(value.size()));
  append(out_, value);
  out_.resize(out_.size() + ((4 - value.size() % 4) % 4), 0);
  set_length();
  return *this;
}

builder& builder::add(std::uint16_t type, std::string_view value) {
  return add(type, as_bytes(value));
}

builder& builder::add_address(std::uint16_t type, const udp_endpoint& ep) {
  bytes v;
  const bool x = is_xor_type(type);
  const auto a = ep.address();
  v.push_back(0);
  v.push_back(a.is_v4() ? 0x01 : 0x02);
  put_u16(v, x ? static_cast<std::uint16_t>(ep.port() ^ (magic_cookie >> 16)) : ep.port());
  if (a.is_v4()) {
    put_u32(v, x ? a.to_v4().to_uint() ^ magic_cookie : a.to_v4().to_uint());
  } else {
    auto b = a.to_v6().to_bytes();
    if (x) {
      const auto pad = xor_pad(id_);
      for (std::size_t i = 0; i < 16; ++i) b[i] ^= pad[i];
    }
    append(v, b);
  }
  return add(type, v);
}

builder& builder::add_error(int code, std::string_view reason) {
  bytes v{0, 0, static_cast<byte>(code / 100), static_cast<byte>(code % 100)};
  append(v, as_bytes(reason.substr(0, max_reason)));
  return add(attr::error_code, v);
}

builder& builder::add_unknown(const std::vector<std::uint16_t>& types) {
  bytes v;
  for (auto t : types) put_u16(v, t);
  return add(attr::unknown_attributes, v);
}

builder& builder::add_padding(std::size_t value_length) {
  return add(attr::padding, bytes(value_length, 0));
}

builder& builder::add_integrity(byte_span key) {
  const std::size_t start = out_.size();
  const auto mac = secure::hmac_sha1(key, covered(out_, start, start - header_size + 4 + mi_size));
  return add(attr::message_integrity, mac);
}

builder& builder::add_integrity_sha256(byte_span key) {
  const std::size_t start = out_.size();
  const auto mac =
      secure::hmac_sha256(key, covered(out_, start, start - header_size + 4 + mi256_size));
  return add(attr::message_integrity_sha256, mac);
}

builder& builder::add_fingerprint() {
  const std::size_t start = out_.size();
  const auto fp = fingerprint_of(covered(out_, start, start - header_size + 8));
  bytes v;
  put_u32(v, fp);
  return add(attr::fingerprint, v);
}

transaction_id random_transaction_id() {
  transaction_id id{};
  secure::random_fill(id);
  return id;
}

bytes long_term_key(std::string_view username, std::string_view realm, std::string_view password) {
  std::string s;
  s.reserve(username.size() + realm.size() + password.size() + 2);
  s.append(username).append(":").append(realm).append(":").append(password);
  const auto d = secure::md5(as_bytes(s));
  return bytes(d.begin(), d.end());
}

std::string_view default_reason(int code) noexcept {
  switch (code) {
    case 300:
      return "Try Alternate";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthenticated";
    case 420:
      return "Unknown Attribute";
    case 438:
      return "Stale Nonce";
    case 500:
      return "Server Error";
    default:
      return "Error";
  }
}

}  // namespace crust::nat::stun
