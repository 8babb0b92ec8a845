#include "nat/pmp.hpp"

#include <algorithm>

namespace crust::nat::pmp {

namespace ip = boost::asio::ip;

namespace {

constexpr byte natpmp_version = 0;
constexpr byte pcp_version = 2;
constexpr byte pcp_op_map = 1;
constexpr std::size_t pcp_header = 24;
constexpr std::size_t pcp_map_body = 36;

// An address as PCP carries it: 16 bytes, IPv4 as ::ffff:a.b.c.d.
void put_address16(bytes& out, const ip::address& a) {
  ip::address_v6::bytes_type b{};
  if (a.is_v4()) {
    b = ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes();
  } else if (a.is_v6()) {
    b = a.to_v6().to_bytes();
  }
  // An unspecified address (default-constructed: IPv4 0.0.0.0) is sent as
  // the IPv4-mapped zero address, which PCP reads as "any IPv4".
  out.insert(out.end(), b.begin(), b.end());
}

ip::address get_address16(const byte* p) {
  ip::address_v6::bytes_type b{};
  std::copy(p, p + 16, b.begin());
  const ip::address_v6 v6(b);
  if (v6.is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, v6);
  return v6;
}

std::optional<answer> fail(parse_error* why, const char* text) {
  if (why) why->message = text;
  return std::nullopt;
}

std::optional<answer> parse_natpmp(byte_span d, parse_error* why) {
  if (d.size() < 8) return fail(why, "NAT-PMP answer shorter than 8 bytes");
  answer a;
  a.result = get_u16(d.data() + 2);
  a.epoch = get_u32(d.data() + 4);
  const byte op = d[1] & 0x7F;
  if (op == 0) {
    a.kind = answer_kind::natpmp_address;
    // An error answer may stop after the epoch (RFC 6886 §3.5).
    if (a.result == 0) {
      if (d.size() < 12) return fail(why, "NAT-PMP address answer shorter than 12 bytes");
      a.external = ip::address_v4(get_u32(d.data() + 8));
    }
    return a;
  }
  if (op != 1 && op != 2) {
    // A version refusal echoes whatever opcode it was sent (a PCP MAP is 1,
    // but a gateway may echo 0 or anything); its result is what matters.
    if (a.result == 1) {
      a.kind = answer_kind::natpmp_map;
      return a;
    }
    return fail(why, "NAT-PMP answer to an unknown operation");
  }
  a.kind = answer_kind::natpmp_map;
  a.proto = op == 1 ? protocol::udp : protocol::tcp;
  if (a.result != 0 && d.size() < 16) return a;
  if (d.size() < 16) return fail(why, "NAT-PMP map answer shorter than 16 bytes");
  a.internal_port = get_u16(d.data() + 8);
  a.external_port = get_u16(d.data() + 10);
  a.lifetime = get_u32(d.data() + 12);
  return a;
}

std::optional<answer> parse_pcp(byte_span d, parse_error* why) {
  if (d.size() < pcp_header) return fail(why, "PCP answer shorter than its 24-byte header");
  if (d.size() > max_message) return fail(why, "PCP answer longer than 1100 bytes");
  if (d.size() % 4 != 0) return fail(why, "PCP answer not a multiple of 4 bytes");
  const byte op = d[1] & 0x7F;
  answer a;
  a.kind = answer_kind::pcp_map;
  a.result = d[3];
  a.lifetime = get_u32(d.data() + 4);
  a.epoch = get_u32(d.data() + 8);
  if (op != pcp_op_map) {
    // Errors such as UNSUPP_OPCODE carry no body; anything else we did not ask for.
    if (a.result != 0) return a;
    return fail(why, "PCP answer to an opcode other than MAP");
  }
  if (d.size() < pcp_header + pcp_map_body) {
    if (a.result != 0) return a;  // an error answer may be just the header
    return fail(why, "PCP MAP answer shorter than 60 bytes");
  }
  const byte* b = d.data() + pcp_header;
  std::copy(b, b + 12, a.id.begin());
  if (b[12] != static_cast<byte>(protocol::tcp) && b[12] != static_cast<byte>(protocol::udp)) {
    return fail(why, "PCP MAP answer for a protocol other than TCP or UDP");
  }
  a.proto = static_cast<protocol>(b[12]);
  a.internal_port = get_u16(b + 16);
  a.external_port = get_u16(b + 18);
  a.external = get_address16(b + 20);
  // Options follow: code, reserved, u16 length, data padded to 4. They are
  // walked so a truncated one is refused, and otherwise ignored.
  std::size_t at = pcp_header + pcp_map_body;
  while (at < d.size()) {
    if (d.size() - at < 4) return fail(why, "PCP option header truncated");
    const std::size_t len = get_u16(d.data() + at + 2);
    const std::size_t padded = (len + 3) / 4 * 4;
    if (d.size() - at - 4 < padded) return fail(why, "PCP option longer than the answer");
    at += 4 + padded;
  }
  return a;
}

}  // namespace

std::string_view to_string(protocol p) noexcept {
  return p == protocol::tcp ? "tcp" : "udp";
}

bytes encode_natpmp_address_request() {
  return bytes{natpmp_version, 0};
}

bytes encode_natpmp_map(const map_request& r) {
  bytes out;
  out.reserve(12);
  out.push_back(natpmp_version);
  out.push_back(r.proto == protocol::udp ? 1 : 2);
  put_u16(out, 0);
  put_u16(out, r.internal_port);
  put_u16(out, r.lifetime == 0 ? 0 : r.suggested_external_port);
  put_u32(out, r.lifetime);
  return out;
}

bytes encode_pcp_map(const map_request& r) {
  bytes out;
  out.reserve(pcp_header + pcp_map_body);
  out.push_back(pcp_version);
  out.push_back(pcp_op_map);
  put_u16(out, 0);
  put_u32(out, r.lifetime);
  put_address16(out, r.client);
  out.insert(out.end(), r.id.begin(), r.id.end());
  out.push_back(static_cast<byte>(r.proto));
  out.insert(out.end(), 3, 0);
  put_u16(out, r.internal_port);
  put_u16(out, r.suggested_external_port);
  put_address16(out, r.suggested_external);
  return out;
}

std::optional<answer> parse(byte_span d, parse_error* why) {
  if (d.size() < 2) return fail(why, "datagram shorter than 2 bytes");
  if ((d[1] & 0x80) == 0) return fail(why, "a request, not an answer");
  if (d[0] == natpmp_version) return parse_natpmp(d, why);
  if (d[0] == pcp_version) return parse_pcp(d, why);
  return fail(why, "neither NAT-PMP (version 0) nor PCP (version 2)");
}

bool answers(const answer& a, const map_request& r, bool pcp) noexcept {
  if (pcp) {
    if (a.kind != answer_kind::pcp_map) return false;
    if (a.result != 0 && a.internal_port == 0) return true;  // a header-only error
    return a.id == r.id && a.proto == r.proto && a.internal_port == r.internal_port;
  }
  if (a.kind != answer_kind::natpmp_map) return false;
  if (a.result != 0 && a.internal_port == 0) return true;
  return a.proto == r.proto && a.internal_port == r.internal_port;
}

std::string_view natpmp_result_name(std::uint16_t code) noexcept {
  switch (code) {
    case 0:
      return "success";
    case 1:
      return "unsupported version";
    case 2:
      return "not authorized or refused";
    case 3:
      return "network failure";
    case 4:
      return "out of resources";
    case 5:
      return "unsupported opcode";
    default:
      return "unknown result";
  }
}

std::string_view pcp_result_name(std::uint16_t code) noexcept {
  static constexpr std::string_view names[] = {"success",
                                               "unsupported version",
                                               "not authorized",
                                               "malformed request",
                                               "unsupported opcode",
                                               "unsupported option",
                                               "malformed option",
                                               "network failure",
                                               "no resources",
                                               "unsupported protocol",
                                               "user exceeded quota",
                                               "cannot provide external",
                                               "address mismatch",
                                               "excessive remote peers"};
  if (code < std::size(names)) return names[code];
  return "unknown result";
}

bool is_natpmp_version_refusal(const answer& a) noexcept {
  return a.kind != answer_kind::pcp_map && a.result == 1;
}

}  // namespace crust::nat::pmp
