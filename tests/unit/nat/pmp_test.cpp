// NAT-PMP (RFC 6886) and PCP (RFC 6887) MAP messages: the bytes we send,
// the answers we accept, and every way an answer can be broken.
#include "nat/pmp.hpp"

#include "support/test.hpp"

using namespace crust;
using namespace crust::nat::pmp;
namespace ip = boost::asio::ip;

namespace {

map_request sample_request() {
  map_request r;
  r.proto = protocol::udp;
  r.internal_port = 0x1234;
  r.suggested_external_port = 0x5678;
  r.lifetime = 7200;
  r.client = ip::make_address("198.19.1.2");
  for (std::size_t i = 0; i < r.id.size(); ++i) r.id[i] = static_cast<std::uint8_t>(0xA0 + i);
  return r;
}

// A PCP MAP answer to `r`, as a gateway would send it.
bytes pcp_answer(const map_request& r, std::uint8_t result, std::uint16_t external_port,
                 const char* external) {
  bytes a;
  a.push_back(2);
  a.push_back(0x81);
  a.push_back(0);
  a.push_back(result);
  put_u32(a, r.lifetime);
  put_u32(a, 1000);  // epoch
  a.insert(a.end(), 12, 0);
  a.insert(a.end(), r.id.begin(), r.id.end());
  a.push_back(static_cast<byte>(r.proto));
  a.insert(a.end(), 3, 0);
  put_u16(a, r.internal_port);
  put_u16(a, external_port);
  auto v6 = ip::make_address_v6(ip::v4_mapped, ip::make_address_v4(external)).to_bytes();
  a.insert(a.end(), v6.begin(), v6.end());
  return a;
}

bytes natpmp_map_answer(std::uint8_t op, std::uint16_t result, std::uint16_t internal,
                        std::uint16_t external, std::uint32_t lifetime) {
  bytes a{0, static_cast<byte>(0x80 | op)};
  put_u16(a, result);
  put_u32(a, 42);
  put_u16(a, internal);
  put_u16(a, external);
  put_u32(a, lifetime);
  return a;
}

}  // namespace

TEST_CASE("pmp: a NAT-PMP map request is RFC 6886's 12 bytes") {
  auto r = sample_request();
  const auto b = encode_natpmp_map(r);
  CHECK(b == bytes{0, 1, 0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0, 0x1C, 0x20});
  r.proto = protocol::tcp;
  CHECK(encode_natpmp_map(r)[1] == 2);
  // A deletion asks for lifetime 0 and external port 0.
  r.lifetime = 0;
  const auto del = encode_natpmp_map(r);
  CHECK(get_u16(del.data() + 6) == 0);
  CHECK(get_u32(del.data() + 8) == 0);
  CHECK(encode_natpmp_address_request() == bytes{0, 0});
}

TEST_CASE("pmp: a PCP MAP request is RFC 6887's 60 bytes") {
  const auto r = sample_request();
  const auto b = encode_pcp_map(r);
  REQUIRE(b.size() == 60);
  CHECK(b[0] == 2);
  CHECK(b[1] == 1);  // a request (top bit clear), opcode MAP
  CHECK(get_u32(b.data() + 4) == 7200);
  // The client address as an IPv4-mapped IPv6 address.
  const bytes mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 198, 19, 1, 2};
  CHECK(bytes(b.begin() + 8, b.begin() + 24) == mapped);
  CHECK(std::equal(r.id.begin(), r.id.end(), b.begin() + 24));
  CHECK(b[36] == 17);
  CHECK(get_u16(b.data() + 40) == 0x1234);
  CHECK(get_u16(b.data() + 42) == 0x5678);
  // No suggested external address: "any IPv4", ::ffff:0.0.0.0.
  const bytes any4{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0};
  CHECK(bytes(b.begin() + 44, b.end()) == any4);
}

TEST_CASE("pmp: a PCP MAP answer is read and matched to its request by nonce") {
  const auto r = sample_request();
  const auto d = pcp_answer(r, 0, 40000, "198.18.0.11");
  auto a = parse(d);
  REQUIRE(a);
  CHECK(a->kind == answer_kind::pcp_map);
  CHECK(a->result == 0);
  CHECK(a->lifetime == 7200);
  CHECK(a->epoch == 1000);
  CHECK(a->external_port == 40000);
  CHECK(a->internal_port == 0x1234);
  CHECK(a->external == ip::make_address("198.18.0.11"));
  CHECK(answers(*a, r, true));
  CHECK_FALSE(answers(*a, r, false));

  auto other = r;
  other.id[0] ^= 1;
  CHECK_FALSE(answers(*a, other, true));  // another mapping's answer
  other = r;
  other.internal_port += 1;
  CHECK_FALSE(answers(*a, other, true));
  other = r;
  other.proto = protocol::tcp;
  CHECK_FALSE(answers(*a, other, true));

  // Options after the body are walked and skipped.
  auto with_option = d;
  with_option.insert(with_option.end(), {0x12, 0, 0, 5, 1, 2, 3, 4, 5, 0, 0, 0});
  auto b = parse(with_option);
  REQUIRE(b);
  CHECK(b->external_port == 40000);
}

TEST_CASE("pmp: a PCP error answer may be only the header, and still answers") {
  const auto r = sample_request();
  auto d = pcp_answer(r, 2, 0, "0.0.0.0");  // NOT_AUTHORIZED
  d.resize(24);
  auto a = parse(d);
  REQUIRE(a);
  CHECK(a->result == 2);
  CHECK(answers(*a, r, true));
  CHECK(pcp_result_name(a->result) == "not authorized");
  CHECK(pcp_result_name(200) == "unknown result");
}

TEST_CASE("pmp: a NAT-PMP-only gateway's refusal of PCP is recognised") {
  // Version 0, result 1 (unsupported version), echoing PCP's opcode.
  bytes d{0, 0x81, 0, 1, 0, 0, 0, 9};
  auto a = parse(d);
  REQUIRE(a);
  CHECK(is_natpmp_version_refusal(*a));
  // A PCP-format UNSUPP_VERSION is not that: it speaks PCP.
  auto r = sample_request();
  auto p = pcp_answer(r, 1, 0, "0.0.0.0");
  auto pa = parse(p);
  REQUIRE(pa);
  CHECK_FALSE(is_natpmp_version_refusal(*pa));
  CHECK(natpmp_result_name(1) == "unsupported version");
}

TEST_CASE("pmp: NAT-PMP map and address answers") {
  auto r = sample_request();
  auto a = parse(natpmp_map_answer(1, 0, 0x1234, 50000, 3600));
  REQUIRE(a);
  CHECK(a->kind == answer_kind::natpmp_map);
  CHECK(a->proto == protocol::udp);
  CHECK(a->external_port == 50000);
  CHECK(a->lifetime == 3600);
  CHECK(a->epoch == 42);
  CHECK(answers(*a, r, false));
  CHECK_FALSE(answers(*a, r, true));
  r.proto = protocol::tcp;
  CHECK_FALSE(answers(*a, r, false));  // a UDP answer to a TCP request

  bytes addr{0, 0x80, 0, 0, 0, 0, 0, 1, 198, 18, 0, 11};
  auto b = parse(addr);
  REQUIRE(b);
  CHECK(b->kind == answer_kind::natpmp_address);
  CHECK(b->external == ip::make_address("198.18.0.11"));
}

TEST_CASE("pmp: requests, truncations and strangers are refused with a reason") {
  const auto r = sample_request();
  parse_error why;
  CHECK_FALSE(parse(encode_pcp_map(r), &why));  // our own request
  CHECK(why.message == "a request, not an answer");
  CHECK_FALSE(parse(bytes{1, 0x80, 0, 0}, &why));
  CHECK(why.message.find("neither") != std::string::npos);
  CHECK_FALSE(parse(bytes{}, &why));

  // Every truncation of a good PCP answer is refused or still consistent;
  // none is read past its end (ASan would say so).
  const auto good = pcp_answer(r, 0, 40000, "198.18.0.11");
  for (std::size_t n = 0; n < good.size(); ++n) {
    auto a = parse(byte_span(good.data(), n));
    if (a) CHECK(a->result == 0);
    CHECK_FALSE((a && answers(*a, r, true)));
  }
  // A truncated option, and an option longer than the answer.
  auto bad = good;
  bad.insert(bad.end(), {0x12, 0, 0, 8, 1, 2, 3, 4});
  CHECK_FALSE(parse(bad, &why));
  CHECK(why.message == "PCP option longer than the answer");
  // Not a multiple of four.
  bad = good;
  bad.push_back(0);
  CHECK_FALSE(parse(bad, &why));
  // An answer for a protocol we never ask about.
  bad = good;
  bad[36] = 1;
  CHECK_FALSE(parse(bad, &why));

  const auto natpmp = natpmp_map_answer(2, 0, 1, 2, 3);
  for (std::size_t n = 0; n < natpmp.size(); ++n) CHECK_FALSE(parse(byte_span(natpmp.data(), n)));
  // Every single flipped bit gives an answer or a refusal, never a crash.
  for (std::size_t i = 0; i < good.size() * 8; ++i) {
    auto flipped = good;
    flipped[i / 8] ^= static_cast<byte>(1u << (i % 8));
    (void)parse(flipped);
  }
}
