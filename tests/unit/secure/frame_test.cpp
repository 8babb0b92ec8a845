#include "crust/secure/frame.hpp"

#include "support/test.hpp"

using namespace crust;
using namespace crust::secure;

namespace {

std::pair<frame_sealer, frame_opener> pair_of(std::uint32_t rekey = default_rekey_interval) {
  key32 k{};
  k[3] = 42;
  noise::cipher_state a, b;
  a.initialize_key(k);
  b.initialize_key(k);
  return {frame_sealer(std::move(a), rekey), frame_opener(std::move(b), rekey)};
}

bytes body_of(std::size_t n, int seed) {
  bytes b(n);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = static_cast<byte>(i * 31 + static_cast<std::size_t>(seed));
  return b;
}

// Feeds `wire` in chunks of `chunk` bytes; returns the bodies or the error.
result<std::vector<bytes>> open_all(frame_opener& o, bytes wire, std::size_t chunk) {
  std::vector<bytes> out;
  for (std::size_t at = 0; at < wire.size(); at += chunk) {
    mutable_byte_span in(wire.data() + at, std::min(chunk, wire.size() - at));
    while (!in.empty()) {
      auto f = o.next(in);
      if (!f) return f.error();
      if (!*f) break;
      out.emplace_back((*f)->begin(), (*f)->end());
    }
  }
  return out;
}

}  // namespace

TEST_CASE("frame: bodies round-trip whatever the read boundaries") {
  for (std::size_t chunk : {1u, 2u, 17u, 18u, 19u, 1000u, 100000u}) {
    CAPTURE(chunk);
    auto [s, o] = pair_of();
    bytes wire;
    std::vector<bytes> sent;
    for (std::size_t n : {0u, 1u, 100u, 65519u, 3u}) {
      sent.push_back(body_of(n, static_cast<int>(n)));
      REQUIRE(s.seal(sent.back(), wire));
    }
    auto got = open_all(o, wire, chunk);
    REQUIRE(got);
    CHECK(*got == sent);
  }
}

TEST_CASE("frame: nothing of the length or body is plaintext") {
  auto [s, o] = pair_of();
  bytes body(100, 0);
  bytes wire;
  REQUIRE(s.seal(body, wire));
  CHECK(wire.size() == body.size() + frame_overhead);
  // A body of zeros would show as a run of zeros if it were not encrypted.
  std::size_t zeros = 0;
  for (byte b : wire) zeros += b == 0;
  CHECK(zeros < 10);
  CHECK_FALSE((wire[0] == 0 && wire[1] == 100));
}

TEST_CASE("frame: an oversized body is refused by the sealer") {
  auto [s, o] = pair_of();
  bytes wire;
  CHECK(s.seal(bytes(max_frame_body + 1), wire).error() == errc::message_too_large);
}

TEST_CASE("frame: every truncation waits for more and delivers nothing") {
  auto [s, o] = pair_of();
  bytes wire;
  REQUIRE(s.seal(body_of(300, 1), wire));
  for (std::size_t cut = 0; cut < wire.size(); ++cut) {
    auto [s2, o2] = pair_of();
    bytes w2;
    REQUIRE(s2.seal(body_of(300, 1), w2));
    w2.resize(cut);
    auto got = open_all(o2, w2, 64);
    REQUIRE(got);
    CHECK(got->empty());
  }
}

TEST_CASE("frame: corrupting any byte fails authentication and the opener stays failed") {
  bytes good;
  {
    auto [s, o] = pair_of();
    REQUIRE(s.seal(body_of(200, 2), good));
    REQUIRE(s.seal(body_of(10, 3), good));
  }
  for (std::size_t pos = 0; pos < good.size(); ++pos) {
    CAPTURE(pos);
    auto [s, o] = pair_of();
    bytes w = good;
    w[pos] ^= 0x80;
    auto got = open_all(o, w, w.size());
    CHECK(got.error() == errc::frame_corrupt);
    CHECK(o.failed());
    mutable_byte_span more(good.data(), good.size());
    CHECK(o.next(more).error() == errc::frame_corrupt);
  }
}

TEST_CASE("frame: a replayed or reordered frame fails; nothing is delivered twice") {
  auto [s, o] = pair_of();
  bytes f1, f2;
  REQUIRE(s.seal(body_of(50, 1), f1));
  REQUIRE(s.seal(body_of(50, 2), f2));
  {
    auto [s2, o2] = pair_of();
    bytes w = f1;
    append(w, f1);  // replay
    auto got = open_all(o2, w, w.size());
    CHECK(got.error() == errc::frame_corrupt);
  }
  {
    auto [s2, o2] = pair_of();
    bytes w = f2;
    append(w, f1);  // reorder
    auto got = open_all(o2, w, w.size());
    CHECK(got.error() == errc::frame_corrupt);
  }
  bytes w = f1;
  append(w, f2);
  auto got = open_all(o, w, 5);
  REQUIRE(got);
  CHECK(got->size() == 2);
}

TEST_CASE("frame: keys rotate on schedule and both sides follow") {
  auto [s, o] = pair_of(3);
  bytes wire;
  std::vector<bytes> sent;
  for (int i = 0; i < 10; ++i) {
    sent.push_back(body_of(20, i));
    REQUIRE(s.seal(sent.back(), wire));
  }
  auto got = open_all(o, wire, 7);
  REQUIRE(got);
  CHECK(*got == sent);
  // A receiver that does not rotate fails at the first frame after rotation.
  auto [s2, o2] = pair_of(1000);
  (void)s2;
  auto bad = open_all(o2, wire, wire.size());
  CHECK(bad.error() == errc::frame_corrupt);
}
