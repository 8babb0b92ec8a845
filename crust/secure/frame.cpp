#include "crust/secure/frame.hpp"

#include <cstring>

namespace crust::secure {

void frame_sealer::open_frame(bytes& out) {
  open_at_ = out.size();
  out.resize(open_at_ + frame_header_size);
}

result<void> frame_sealer::close_frame(bytes& out) {
  const std::size_t len = out.size() - open_at_ - frame_header_size;
  if (len > max_frame_body) return make_error_code(errc::message_too_large);
  out.resize(out.size() + aead_tag_size);
  byte* p = out.data() + open_at_;
  p[0] = static_cast<byte>(len >> 8);
  p[1] = static_cast<byte>(len);
  if (auto r = cs_.seal_in_place({}, p, 2); !r) return r;
  if (auto r = cs_.seal_in_place({}, p + frame_header_size, len); !r) return r;
  ++frames_;
  if (++since_rekey_ == rekey_interval_) {
    cs_.rekey();
    cs_.set_nonce(0);
    since_rekey_ = 0;
  }
  return {};
}

result<void> frame_sealer::seal(byte_span body, bytes& out) {
  if (body.size() > max_frame_body) return make_error_code(errc::message_too_large);
  open_frame(out);
  append(out, body);
  return close_frame(out);
}

result<void> frame_opener::open_header(byte* p) {
  if (auto r = cs_.open_in_place({}, p, frame_header_size); !r) {
    failed_ = true;
    return r;
  }
  body_len_ = (std::size_t{p[0]} << 8) | p[1];
  if (*body_len_ > max_frame_body) {
    failed_ = true;
    return make_error_code(errc::frame_corrupt);
  }
  return {};
}

result<void> frame_opener::open_body(byte* p, std::size_t len) {
  if (auto r = cs_.open_in_place({}, p, len + aead_tag_size); !r) {
    failed_ = true;
    return r;
  }
  body_len_.reset();
  ++frames_;
  if (++since_rekey_ == rekey_interval_) {
    cs_.rekey();
    cs_.set_nonce(0);
    since_rekey_ = 0;
  }
  return {};
}

result<std::optional<byte_span>> frame_opener::next(mutable_byte_span& in) {
  if (failed_) return make_error_code(errc::frame_corrupt);
  for (;;) {
    const std::size_t want = body_len_ ? *body_len_ + aead_tag_size : frame_header_size;
    if (partial_.empty() && in.size() >= want) {
      // Fast path: the whole piece is in the caller's buffer; open in place.
      byte* p = in.data();
      in = in.subspan(want);
      if (!body_len_) {
        if (auto r = open_header(p); !r) return r.error();
        continue;
      }
      std::size_t len = *body_len_;
      if (auto r = open_body(p, len); !r) return r.error();
      return std::optional<byte_span>(byte_span(p, len));
    }
    // Slow path: gather the piece across reads.
    std::size_t take = std::min(want - partial_.size(), in.size());
    partial_.insert(partial_.end(), in.begin(), in.begin() + static_cast<std::ptrdiff_t>(take));
    in = in.subspan(take);
    if (partial_.size() < want) return std::optional<byte_span>{};
    if (!body_len_) {
      auto r = open_header(partial_.data());
      partial_.clear();
      if (!r) return r.error();
      continue;
    }
    std::size_t len = *body_len_;
    if (auto r = open_body(partial_.data(), len); !r) return r.error();
    // Hand the body out from a buffer of its own, valid until the next call.
    std::swap(partial_, last_body_);
    partial_.clear();
    return std::optional<byte_span>(byte_span(last_body_.data(), len));
  }
}

}  // namespace crust::secure
