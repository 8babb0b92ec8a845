#include "bootstrap/contact_record.hpp"

#include <algorithm>

namespace crust::bootstrap {

namespace {
constexpr std::string_view magic = "CRCR";
constexpr std::string_view domain = "crust-contact-v1";
constexpr byte version = 1;
// magic, version, tag, id, static, issued, n
constexpr std::size_t fixed_size = 4 + 1 + 8 + 32 + 32 + 8 + 1;
constexpr std::size_t signature_size = 64;

bytes encode_body(const contact_record& r) {
  bytes out;
  out.reserve(fixed_size + r.candidates.size() * 21 + signature_size);
  append(out, as_bytes(magic));
  out.push_back(version);
  append(out, r.network_tag);
  append(out, r.key.id.key);
  append(out, r.key.noise_static);
  const auto issued = static_cast<std::uint64_t>(r.issued);
  put_u32(out, static_cast<std::uint32_t>(issued >> 32));
  put_u32(out, static_cast<std::uint32_t>(issued));
  out.push_back(static_cast<byte>(r.candidates.size()));
  for (const auto& k : r.candidates) nat::encode_candidate(out, k);
  return out;
}

boost::system::result<contact_record, nat::info_error> refuse(errc code, std::string message) {
  return nat::info_error{make_error_code(code), std::move(message)};
}
}  // namespace

contact_record contact_record::make(const identity& me, std::string_view network_name,
                                    std::vector<nat::candidate> candidates, std::int64_t now) {
  contact_record r;
  r.network_tag = nat::signed_form::network_tag(domain, network_name);
  r.key = me.public_key();
  r.issued = now;
  for (auto& k : candidates) {
    if (r.candidates.size() == max_record_candidates) break;
    if (std::find(r.candidates.begin(), r.candidates.end(), k) == r.candidates.end())
      r.candidates.push_back(std::move(k));
  }
  r.signature = me.sign(nat::signed_form::message(domain, network_name, encode_body(r)));
  return r;
}

bytes contact_record::encode() const {
  bytes out = encode_body(*this);
  append(out, signature);
  return out;
}

boost::system::result<contact_record, nat::info_error> contact_record::parse(
    byte_span d, std::string_view network_name, std::int64_t now, std::int64_t max_age,
    std::int64_t skew) {
  if (d.size() < fixed_size + signature_size || d.size() > max_record_size ||
      !std::equal(magic.begin(), magic.end(), d.begin()))
    return refuse(errc::malformed, "not a contact record (wrong size or no \"CRCR\" header)");
  if (d[4] != version)
    return refuse(errc::malformed,
                  "a contact record of version " + std::to_string(d[4]) + " (this is 1)");
  contact_record r;
  std::copy_n(d.begin() + 5, 8, r.network_tag.begin());
  if (r.network_tag != nat::signed_form::network_tag(domain, network_name))
    return refuse(errc::wrong_network, "a contact record of another network (not \"" +
                                           std::string(network_name) + "\")");
  std::copy_n(d.begin() + 13, 32, r.key.id.key.begin());
  std::copy_n(d.begin() + 45, 32, r.key.noise_static.begin());
  r.issued = static_cast<std::int64_t>((std::uint64_t{get_u32(d.data() + 77)} << 32) |
                                       get_u32(d.data() + 81));
  const std::size_t n = d[85];
  std::size_t at = fixed_size;
  if (n == 0 || n > max_record_candidates)
    return refuse(errc::malformed, "a contact record with " + std::to_string(n) +
                                       " candidates (1 to " +
                                       std::to_string(max_record_candidates) + " allowed)");
  if (auto why = nat::decode_candidates(d, at, n, "a contact record", r.candidates))
    return refuse(errc::malformed, std::move(*why));
  if (at + signature_size != d.size())
    return refuse(errc::malformed, at + signature_size > d.size()
                                       ? "a contact record cut short"
                                       : "a contact record with bytes after its signature");
  std::copy_n(d.begin() + static_cast<std::ptrdiff_t>(at), signature_size, r.signature.begin());
  // In long double: issued and now may be anything, and must not overflow.
  const auto issued = static_cast<long double>(r.issued), at_now = static_cast<long double>(now);
  if (issued > at_now + static_cast<long double>(skew))
    return refuse(errc::expired, "a contact record issued in the future (at " +
                                     std::to_string(r.issued) + "; our clock says " +
                                     std::to_string(now) + ")");
  if (issued + static_cast<long double>(max_age) < at_now)
    return refuse(errc::expired, "a contact record issued at " + std::to_string(r.issued) +
                                     ", more than " + std::to_string(max_age) + " s ago");
  return r;
}

bool contact_record::verify(std::string_view network_name) const {
  return secure::ed25519_verify(
      key.id.key, nat::signed_form::message(domain, network_name, encode_body(*this)), signature);
}

std::vector<transport::tcp_endpoint> contact_record::tcp_endpoints() const {
  std::vector<transport::tcp_endpoint> out;
  for (const auto& k : candidates)
    if (k.transport == nat::candidate_transport::tcp) out.emplace_back(k.address, k.port);
  return out;
}

std::optional<transport::tcp_endpoint> contact_record::tcp_endpoint() const {
  for (const auto& k : candidates)
    if (k.transport == nat::candidate_transport::tcp)
      return transport::tcp_endpoint(k.address, k.port);
  return std::nullopt;
}

}  // namespace crust::bootstrap
