// Encrypted framing, without I/O. Each frame is
//   ChaChaPoly(len: u16be) (18 bytes) || ChaChaPoly(body) (len + 16 bytes)
// so the length is itself encrypted and authenticated (as in BOLT 8). Each
// direction rekeys (Noise §11.3 REKEY) after `rekey_interval` frames and
// restarts its nonce at zero under the new key, so no (key, nonce) pair ever
// repeats. A tampered, truncated, replayed or reordered frame fails to
// authenticate: frame_corrupt, and the opener stays failed.
#pragma once

#include "crust/secure/noise.hpp"

#include <optional>

namespace crust::secure {

inline constexpr std::size_t frame_header_size = 2 + aead_tag_size;
inline constexpr std::size_t max_frame_body = 65535 - aead_tag_size;  // plaintext bytes
inline constexpr std::size_t frame_overhead = frame_header_size + aead_tag_size;
inline constexpr std::uint32_t default_rekey_interval = 1u << 16;

class frame_sealer {
 public:
  explicit frame_sealer(noise::cipher_state cs,
                        std::uint32_t rekey_interval = default_rekey_interval)
      : cs_(std::move(cs)), rekey_interval_(rekey_interval) {}

  // Appends one sealed frame holding `body` (at most max_frame_body bytes).
  result<void> seal(byte_span body, bytes& out);
  // Builds a frame in place: open_frame() reserves the header at the end of
  // `out`, the caller appends the body to `out`, close_frame() encrypts both
  // and appends the tag. The body may not exceed max_frame_body.
  void open_frame(bytes& out);
  std::size_t open_body_size(const bytes& out) const noexcept {
    return out.size() - open_at_ - frame_header_size;
  }
  result<void> close_frame(bytes& out);

  std::uint64_t frames() const noexcept { return frames_; }

 private:
  noise::cipher_state cs_;
  std::uint32_t rekey_interval_;
  std::uint32_t since_rekey_ = 0;
  std::uint64_t frames_ = 0;
  std::size_t open_at_ = 0;
};

class frame_opener {
 public:
  explicit frame_opener(noise::cipher_state cs,
                        std::uint32_t rekey_interval = default_rekey_interval)
      : cs_(std::move(cs)), rekey_interval_(rekey_interval) {}

  // Consumes bytes from the front of `in` and decrypts in place where a whole
  // frame is present (so `in` must be writable). Returns the body of the next
  // complete frame (valid until the next call), nullopt when `in` ran out
  // before a frame completed, or frame_corrupt.
  result<std::optional<byte_span>> next(mutable_byte_span& in);

  bool failed() const noexcept { return failed_; }
  std::uint64_t frames() const noexcept { return frames_; }

 private:
  result<void> open_header(byte* p);
  result<void> open_body(byte* p, std::size_t len);

  noise::cipher_state cs_;
  std::uint32_t rekey_interval_;
  std::uint32_t since_rekey_ = 0;
  std::uint64_t frames_ = 0;
  bool failed_ = false;
  std::optional<std::size_t> body_len_;  // set once the header is open
  bytes partial_;                        // bytes of an incomplete header or body
  bytes last_body_;                      // a body gathered across reads
};

}  // namespace crust::secure
