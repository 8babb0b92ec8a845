// The µTP codec against the published wire vectors (read at test time from
// $CRUST_VECTORS/utp-wire-test-vectors.md), and its rejection rules.
#include "transports/utp/packet.hpp"

#include "support/test.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>

using namespace crust;
using namespace crust::utp;

namespace {

// One "### ..." section of the vectors file.
struct wire_vector {
  std::string name;
  std::map<std::string, std::uint64_t> fields;  // the PacketHeader block
  std::optional<bytes> sack;
  bytes payload;
  bytes wire;
};

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r");
  const auto e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

// "[1, 0, 0, 128] // comment" -> {1, 0, 0, 128}
bytes parse_list(const std::string& s) {
  const auto open = s.find('['), close = s.find(']');
  REQUIRE(open != std::string::npos);
  REQUIRE(close != std::string::npos);
  bytes out;
  std::string item;
  for (char c : s.substr(open + 1, close - open - 1) + ",") {
    if (c != ',') {
      item += c;
    } else if (!trim(item).empty()) {
      out.push_back(static_cast<byte>(std::stoul(trim(item))));
      item.clear();
    }
  }
  return out;
}

std::vector<wire_vector> load_vectors() {
  const char* dir = std::getenv("CRUST_VECTORS");
  REQUIRE_MESSAGE(dir, "set CRUST_VECTORS to the vectors directory");
  const auto path = std::filesystem::path(dir) / "utp-wire-test-vectors.md";
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), "the µTP wire vectors are missing: expected " << path.string());
  std::vector<wire_vector> out;
  for (std::string line; std::getline(in, line);) {
    line = trim(line);
    const auto colon = line.find(": ");
    if (line.rfind("### ", 0) == 0) {
      out.push_back({line.substr(4), {}, {}, {}, {}});
    } else if (out.empty()) {
      continue;
    } else if (line.rfind("SelectiveAckExtension = ", 0) == 0) {
      if (line.find("none") == std::string::npos) out.back().sack = parse_list(line);
    } else if (line.rfind("Payload = ", 0) == 0) {
      out.back().payload = parse_list(line);
    } else if (line.rfind("packet = 0x", 0) == 0) {
      auto b = from_hex(line.substr(11));
      REQUIRE_MESSAGE(b, "bad hex in " << out.back().name);
      out.back().wire = *b;
    } else if (colon != std::string::npos && line.find_first_of("=#") == std::string::npos) {
      out.back().fields[line.substr(0, colon)] = std::stoull(line.substr(colon + 2));
    }
  }
  return out;
}

header header_of(const wire_vector& v) {
  auto f = [&](const char* k) {
    REQUIRE_MESSAGE(v.fields.count(k), v.name << " lacks " << k);
    return v.fields.at(k);
  };
  return {static_cast<packet_type>(f("type")),
          static_cast<std::uint16_t>(f("connection_id")),
          static_cast<std::uint32_t>(f("timestamp_microseconds")),
          static_cast<std::uint32_t>(f("timestamp_difference_microseconds")),
          static_cast<std::uint32_t>(f("wnd_size")),
          static_cast<std::uint16_t>(f("seq_nr")),
          static_cast<std::uint16_t>(f("ack_nr"))};
}

bytes as_vec(byte_span s) {
  return {s.begin(), s.end()};
}

const header sample{packet_type::state, 10049, 6195294, 916973699, 1048576, 16807, 11885};

// A header whose extension byte names `first`, followed by `rest` raw.
bytes with_chain(std::uint8_t first, const bytes& rest) {
  bytes d = encode(sample);
  d[1] = first;
  append(d, rest);
  return d;
}

}  // namespace

TEST_CASE("utp packet: every wire vector encodes to its hex and decodes to its fields") {
  const auto vectors = load_vectors();
  REQUIRE(vectors.size() == 6);
  std::map<packet_type, int> seen;
  for (const auto& v : vectors) {
    INFO(v.name);
    REQUIRE(v.wire.size() >= header_size);
    CHECK(v.fields.at("version") == version);
    CHECK(v.fields.at("extension") == (v.sack ? 1u : 0u));
    const header h = header_of(v);
    ++seen[h.type];
    const byte_span sack = v.sack ? byte_span(*v.sack) : byte_span();
    CHECK(to_hex(encode(h, sack, v.payload)) == to_hex(v.wire));

    auto r = decode(v.wire);
    REQUIRE(r);
    CHECK(r->h == h);
    CHECK(r->sack == v.sack);
    CHECK(as_vec(r->payload) == v.payload);
    CHECK(looks_like_utp(v.wire));
  }
  CHECK(seen.size() == 5);  // syn, state (twice), data, fin, reset
}

TEST_CASE("utp packet: every type round-trips, with and without SACK and payload") {
  const bytes payload{9, 8, 7};
  const bytes mask{0xff, 0, 0x10, 0, 1, 2, 3, 4};
  for (int t = 0; t <= 4; ++t) {
    header h{static_cast<packet_type>(t), 0xfffe, 0xdeadbeef, 1, 0xffffffff, 65535, 0};
    for (bool with_sack : {false, true}) {
      INFO(to_string(h.type) << (with_sack ? " with SACK" : ""));
      const bytes wire = encode(h, with_sack ? byte_span(mask) : byte_span(), payload);
      CHECK(wire[0] == (t << 4 | 1));
      auto r = decode(wire);
      REQUIRE(r);
      CHECK(r->h == h);
      CHECK(r->sack.has_value() == with_sack);
      if (with_sack) CHECK(*r->sack == mask);
      CHECK(as_vec(r->payload) == payload);
      CHECK(r->payload.data() == wire.data() + wire.size() - 3);  // a view, not a copy
      CHECK(encode(*r) == wire);
    }
  }
}

TEST_CASE("utp packet: encode appends, and refuses a SACK it cannot express") {
  bytes out{0xaa};
  encode(sample, {}, {}, out);
  CHECK(out.size() == 1 + header_size);
  CHECK(out[0] == 0xaa);
  const bytes three(3), too_long(256), longest(max_sack_bytes);
  CHECK_THROWS_AS(encode(sample, three), std::invalid_argument);
  CHECK_THROWS_AS(encode(sample, too_long), std::invalid_argument);
  auto r = decode(encode(sample, longest));
  REQUIRE(r);
  CHECK(r->sack->size() == max_sack_bytes);
}

TEST_CASE("utp packet: every truncation of every vector is rejected or stays in bounds") {
  for (const auto& v : load_vectors()) {
    for (std::size_t n = 0; n < v.wire.size(); ++n) {
      INFO(v.name << " cut to " << n);
      // An exact-size heap copy, so the sanitizer catches any read past n.
      const bytes cut(v.wire.begin(), v.wire.begin() + static_cast<std::ptrdiff_t>(n));
      auto r = decode(cut);
      if (n < header_size) {
        CHECK(r.error == decode_error::too_short);
      } else if (v.sack && n < header_size + 2 + v.sack->size()) {
        CHECK(r.error == decode_error::bad_extension);
      } else {
        REQUIRE(r);
        CHECK(r->h == header_of(v));
        CHECK(r->payload.data() + r->payload.size() == cut.data() + cut.size());
      }
    }
  }
}

TEST_CASE("utp packet: unknown extensions and extension bits are skipped") {
  // [next=2][len 3][xyz] -> type 2 (extension bits) [next=1][len 8][8 bytes]
  // -> SACK [next=0][len 4][mask], then the payload.
  const bytes chain{2, 3, 'x', 'y', 'z', 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 5, 0, 0, 0, 'p', 'q'};
  const bytes wire = with_chain(77, chain);  // outlives r, whose payload views it
  auto r = decode(wire);
  REQUIRE(r);
  CHECK(r->h == sample);
  REQUIRE(r->sack);
  CHECK(*r->sack == bytes{5, 0, 0, 0});
  CHECK(as_vec(r->payload) == bytes{'p', 'q'});

  const bytes bare = with_chain(9, {0, 0});  // a zero-length unknown extension is fine
  auto empty = decode(bare);
  REQUIRE(empty);
  CHECK(empty->payload.empty());
  CHECK_FALSE(empty->sack);
}

TEST_CASE("utp packet: only the first SACK is kept") {
  const bytes wire = with_chain(1, {1, 4, 1, 0, 0, 0, 0, 4, 2, 0, 0, 0});
  auto r = decode(wire);
  REQUIRE(r);
  CHECK(*r->sack == bytes{1, 0, 0, 0});
  CHECK(r->payload.empty());
}

TEST_CASE("utp packet: a chain that runs past the end is rejected") {
  CHECK(decode(with_chain(1, {})).error == decode_error::bad_extension);   // no link at all
  CHECK(decode(with_chain(9, {0})).error == decode_error::bad_extension);  // half a link
  CHECK(decode(with_chain(9, {0, 5, 1, 2})).error == decode_error::bad_extension);  // short body
  CHECK(decode(with_chain(9, {3, 0})).error == decode_error::bad_extension);  // next never comes
  CHECK(decode(with_chain(9, {0, 255})).error == decode_error::bad_extension);
}

TEST_CASE("utp packet: a SACK of zero length or not a multiple of 4 is rejected") {
  CHECK(decode(with_chain(1, {0, 0})).error == decode_error::bad_extension);
  CHECK(decode(with_chain(1, {0, 3, 1, 2, 3})).error == decode_error::bad_extension);
  CHECK(decode(with_chain(1, {0, 5, 1, 2, 3, 4, 5})).error == decode_error::bad_extension);
  // A bad SACK later in the chain, after a good one, still rejects.
  CHECK(decode(with_chain(1, {1, 4, 1, 0, 0, 0, 0, 0})).error == decode_error::bad_extension);
}

TEST_CASE("utp packet: bad version, bad type and short datagrams are rejected") {
  bytes d = encode(sample);
  CHECK(decode(byte_span(d).first(header_size - 1)).error == decode_error::too_short);
  CHECK(decode({}).error == decode_error::too_short);
  for (byte first : {0x20, 0x22, 0x2f, 0x00}) {
    d[0] = first;
    CHECK(decode(d).error == decode_error::bad_version);
    CHECK_FALSE(looks_like_utp(d));
  }
  for (byte first : {0x51, 0x61, 0xf1}) {
    d[0] = first;
    CHECK(decode(d).error == decode_error::bad_type);
    CHECK_FALSE(looks_like_utp(d));
  }
  CHECK(std::string(to_string(decode_error::bad_extension)) == "bad extension");
  CHECK(std::string(to_string(packet_type::reset)) == "reset");
}

TEST_CASE("utp packet: SACK bits are LSB first and map to ack_nr + 2 + i") {
  const bytes vec{1, 0, 0, 128};  // the vector's mask: bits 0 and 31
  for (std::size_t i = 0; i < 40; ++i) CHECK(sack_has(vec, i) == (i == 0 || i == 31));

  std::vector<std::uint8_t> m;
  sack_set(m, 0);
  CHECK(m == bytes{1, 0, 0, 0});
  sack_set(m, 31);
  CHECK(m == vec);
  sack_set(m, 32);  // grows by a whole 32-bit word
  CHECK(m == bytes{1, 0, 0, 128, 1, 0, 0, 0});
  sack_set(m, 9);
  CHECK(m[1] == 2);
  CHECK(sack_has(m, 9));
  CHECK_FALSE(sack_has(m, 10));
  CHECK_FALSE(sack_has({}, 0));
}

TEST_CASE("utp packet: sequence numbers compare across the wrap") {
  CHECK(seq_less(65535, 0));
  CHECK_FALSE(seq_less(0, 65535));
  CHECK(seq_less(65000, 100));
  CHECK(seq_less(1, 2));
  CHECK_FALSE(seq_less(7, 7));
  CHECK(seq_less(0, 0x7fff));
  CHECK_FALSE(seq_less(0, 0x8000));  // exactly half apart: neither is before
  CHECK_FALSE(seq_less(0x8000, 0));
  CHECK(seq_distance(65535, 1) == 2);
  CHECK(seq_distance(1, 65535) == 65534);
  CHECK(seq_distance(5, 5) == 0);
  static_assert(seq_less(65535, 0));
}

TEST_CASE("utp packet: STUN on the same socket is not taken for µTP") {
  // Binding request: type 0x0001, length 0, cookie, 12-byte transaction id.
  auto request = from_hex(
      "000100002112a442"
      "0102030405060708090a0b0c");
  REQUIRE(request);
  CHECK_FALSE(looks_like_utp(*request));
  // A Binding success response starts 0x01, the shape of a µTP DATA byte:
  // only the cookie tells them apart.
  auto response = from_hex(
      "0101000c2112a442"
      "0102030405060708090a0b0c"
      "0020000800011a2b5e12a443");
  REQUIRE(response);
  CHECK((*response)[0] == (static_cast<int>(packet_type::data) << 4 | version));
  CHECK_FALSE(looks_like_utp(*response));
  // A µTP SYN whose timestamp happens to equal the cookie is not STUN-shaped.
  header syn = sample;
  syn.type = packet_type::syn;
  syn.timestamp_us = 0x2112A442;
  CHECK(looks_like_utp(encode(syn)));
  CHECK_FALSE(looks_like_utp(byte_span(encode(sample)).first(header_size - 1)));
}

TEST_CASE(
    "utp packet: the MTU probe and echo extensions round-trip after a SACK, and skip if odd") {
  header h;
  h.type = packet_type::state;
  h.connection_id = 9;
  std::vector<std::uint8_t> sack{1, 0, 0, 0};
  const std::vector<std::uint8_t> pad(100, 0);
  bytes d;
  encode(h, sack, pad, d, {0x01020304u, 0u, true});
  CHECK(d.size() == header_size + 6 + 10 + 6 + 6 + pad.size());
  auto p = decode(d);
  REQUIRE(p);
  CHECK(p->sack == sack);
  CHECK(p->mtu_probe == std::optional<std::uint32_t>(0x01020304u));
  CHECK(p->mtu_echo == std::optional<std::uint32_t>(0u));
  CHECK(p->answers_probes);
  CHECK(p->payload.size() == pad.size());
  CHECK(encode(*p) == d);
  // Echo alone, no SACK: the header names it first.
  const bytes e = encode(h, {}, {}), with = [&] {
    bytes out;
    encode(h, {}, {}, out, {std::nullopt, 7u});
    return out;
  }();
  CHECK(with.size() == e.size() + 6);
  CHECK(with[1] == ext_mtu_echo);
  CHECK_FALSE(decode(with)->answers_probes);
  // An MTU extension of the wrong length is skipped like an unknown one.
  bytes odd = e;
  odd[1] = ext_mtu_probe;
  odd.insert(odd.end(), {0, 2, 0xaa, 0xbb});
  auto q = decode(odd);
  REQUIRE(q);
  CHECK_FALSE(q->mtu_probe);
  CHECK(q->payload.empty());
}
