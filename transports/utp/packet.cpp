// The µTP wire codec: see packet.hpp for the format and its rules.
#include "transports/utp/packet.hpp"

#include <stdexcept>

namespace crust::utp {

namespace {
constexpr std::uint8_t ext_none = 0;
constexpr std::uint8_t ext_sack = 1;
constexpr std::uint32_t stun_cookie = 0x2112A442;

decode_result fail(decode_error e) {
  return {std::nullopt, e};
}
}  // namespace

const char* to_string(packet_type t) noexcept {
  switch (t) {
    case packet_type::data:
      return "data";
    case packet_type::fin:
      return "fin";
    case packet_type::state:
      return "state";
    case packet_type::reset:
      return "reset";
    case packet_type::syn:
      return "syn";
  }
  return "unknown";
}

const char* to_string(decode_error e) noexcept {
  switch (e) {
    case decode_error::too_short:
      return "too short";
    case decode_error::bad_version:
      return "bad version";
    case decode_error::bad_type:
      return "bad type";
    case decode_error::bad_extension:
      return "bad extension";
  }
  return "unknown";
}

void encode(const header& h, byte_span sack, byte_span payload, bytes& out, const mtu_ids& mtu) {
  if (sack.size() % 4 != 0 || sack.size() > max_sack_bytes)
    throw std::invalid_argument("utp::encode: SACK length must be a multiple of 4, at most 252");
  out.reserve(out.size() + header_size + (sack.empty() ? 0 : 2 + sack.size()) +
              (mtu.announce ? ext_bits_size : 0) + (mtu.probe ? mtu_ext_size : 0) +
              (mtu.echo ? mtu_ext_size : 0) + payload.size());
  // The chain: each link names the type of the one after it.
  std::uint8_t chain[4];
  std::size_t links = 0;
  if (!sack.empty()) chain[links++] = ext_sack;
  if (mtu.announce) chain[links++] = ext_bits;
  if (mtu.probe) chain[links++] = ext_mtu_probe;
  if (mtu.echo) chain[links++] = ext_mtu_echo;
  out.push_back(static_cast<byte>(static_cast<std::uint8_t>(h.type) << 4 | version));
  out.push_back(links > 0 ? chain[0] : ext_none);
  put_u16(out, h.connection_id);
  put_u32(out, h.timestamp_us);
  put_u32(out, h.timestamp_diff_us);
  put_u32(out, h.wnd_size);
  put_u16(out, h.seq_nr);
  put_u16(out, h.ack_nr);
  std::size_t link = 0;
  const auto next = [&] { return ++link < links ? chain[link] : ext_none; };
  if (!sack.empty()) {
    out.push_back(next());
    out.push_back(static_cast<byte>(sack.size()));
    append(out, sack);
  }
  if (mtu.announce) {
    out.push_back(next());
    out.push_back(8);
    for (int i = 0; i < 7; ++i) out.push_back(0);
    out.push_back(1);  // answers MTU probes
  }
  for (const auto& id : {mtu.probe, mtu.echo}) {
    if (!id) continue;
    out.push_back(next());
    out.push_back(4);
    put_u32(out, *id);
  }
  append(out, payload);
}

bytes encode(const header& h, byte_span sack, byte_span payload) {
  bytes out;
  encode(h, sack, payload, out);
  return out;
}

bytes encode(const packet& p) {
  bytes out;
  encode(p.h, p.sack ? byte_span(*p.sack) : byte_span(), p.payload, out,
         {p.mtu_probe, p.mtu_echo, p.answers_probes});
  return out;
}

decode_result decode(byte_span d) {
  if (d.size() < header_size) return fail(decode_error::too_short);
  if ((d[0] & 0x0f) != version) return fail(decode_error::bad_version);
  if ((d[0] >> 4) > static_cast<std::uint8_t>(packet_type::syn))
    return fail(decode_error::bad_type);

  packet p;
  p.h.type = static_cast<packet_type>(d[0] >> 4);
  p.h.connection_id = get_u16(&d[2]);
  p.h.timestamp_us = get_u32(&d[4]);
  p.h.timestamp_diff_us = get_u32(&d[8]);
  p.h.wnd_size = get_u32(&d[12]);
  p.h.seq_nr = get_u16(&d[16]);
  p.h.ack_nr = get_u16(&d[18]);

  // Each link is [next type][len][len bytes]. `at` grows by at least 2 per
  // link and every read is checked against the size first, so the walk ends
  // and stays in bounds whatever the chain says.
  std::size_t at = header_size;
  for (std::uint8_t ext = d[1]; ext != ext_none;) {
    if (d.size() - at < 2) return fail(decode_error::bad_extension);
    const std::uint8_t next = d[at];
    const std::size_t len = d[at + 1];
    at += 2;
    if (d.size() - at < len) return fail(decode_error::bad_extension);
    if (ext == ext_sack) {
      if (len == 0 || len % 4 != 0) return fail(decode_error::bad_extension);
      if (!p.sack) p.sack.emplace(d.begin() + at, d.begin() + at + len);
    } else if (ext == ext_bits && len == 8) {
      p.answers_probes = p.answers_probes || (d[at + 7] & 1) != 0;
    } else if ((ext == ext_mtu_probe || ext == ext_mtu_echo) && len == 4) {
      auto& id = ext == ext_mtu_probe ? p.mtu_probe : p.mtu_echo;
      if (!id) id = get_u32(&d[at]);
    }
    at += len;
    ext = next;
  }
  p.payload = d.subspan(at);
  return {std::move(p)};
}

bool sack_has(std::span<const std::uint8_t> mask, std::size_t i) noexcept {
  return i / 8 < mask.size() && ((mask[i / 8] >> (i % 8)) & 1) != 0;
}

void sack_set(std::vector<std::uint8_t>& mask, std::size_t i) {
  if (i / 8 >= mask.size()) mask.resize((i / 32 + 1) * 4, 0);
  mask[i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
}

bool looks_like_utp(byte_span d) noexcept {
  if (d.size() < header_size) return false;
  if ((d[0] & 0x0f) != version || (d[0] >> 4) > static_cast<std::uint8_t>(packet_type::syn))
    return false;
  const bool stun_shaped = (d[0] & 0xc0) == 0;
  return !(stun_shaped && get_u32(&d[4]) == stun_cookie);
}

}  // namespace crust::utp
