#include "nat/stun_server.hpp"

#include <algorithm>

namespace crust::nat::stun {

namespace {

// What this server reads, or may safely ignore, in a Binding request.
// USERNAME and the integrity attributes are understood and not checked:
// the server needs no credentials (Crust authenticates with Noise).
const std::set<std::uint16_t>& understood() {
  static const std::set<std::uint16_t> s{attr::change_request,
                                         attr::username,
                                         attr::message_integrity,
                                         attr::message_integrity_sha256,
                                         attr::realm,
                                         attr::nonce,
                                         attr::password_algorithm,
                                         attr::userhash,
                                         attr::priority,
                                         attr::use_candidate,
                                         attr::padding,
                                         attr::fingerprint};
  return s;
}

bool asks_for_change(const message& m) {
  auto v = m.find(attr::change_request);
  return v && v->size() == 4 && (get_u32(v->data()) & 0x6) != 0;
}

struct extras {
  bool software = true, origin = true, reason = true;
};

bytes success(const message& req, const udp_endpoint& from, const server_options& o,
              const extras& e) {
  builder b(msg_class::success, req.method(), req.id());
  b.add_address(attr::xor_mapped_address, from);
  if (e.origin && o.response_origin) b.add_address(attr::response_origin, *o.response_origin);
  if (e.software && !o.software.empty()) b.add(attr::software, o.software);
  if (req.has_fingerprint()) b.add_fingerprint();
  return std::move(b).finish();
}

bytes failure(const message& req, int code, const std::vector<std::uint16_t>& unknown,
              const server_options& o, const extras& e) {
  builder b(msg_class::error, req.method(), req.id());
  b.add_error(code, e.reason ? default_reason(code) : std::string_view{});
  if (!unknown.empty()) {
    // At most 8 (a request naming more is larger than their answer).
    const std::size_t keep = std::min<std::size_t>(unknown.size(), 8);
    b.add_unknown(std::vector<std::uint16_t>(unknown.begin(),
                                             unknown.begin() + static_cast<std::ptrdiff_t>(keep)));
  }
  if (e.software && !o.software.empty()) b.add(attr::software, o.software);
  if (req.has_fingerprint()) b.add_fingerprint();
  return std::move(b).finish();
}

}  // namespace

std::optional<bytes> answer(byte_span datagram, const udp_endpoint& from,
                            const server_options& options) {
  auto req = message::parse(datagram);
  if (!req || req->cls() != msg_class::request) return std::nullopt;
  const std::size_t budget = std::max(datagram.size(), options.answer_floor);

  // Each candidate answer, from the fullest to the leanest.
  const extras tries[] = {
      {true, true, true}, {false, true, true}, {false, false, true}, {false, false, false}};
  for (const auto& e : tries) {
    bytes out;
    if (req->method() != binding) {
      out = failure(*req, 400, {}, options, e);
    } else {
      auto unknown = req->unknown_required(understood());
      if (asks_for_change(*req) &&
          std::find(unknown.begin(), unknown.end(), attr::change_request) == unknown.end())
        unknown.insert(unknown.begin(), attr::change_request);
      out = unknown.empty() ? success(*req, from, options, e)
                            : failure(*req, 420, unknown, options, e);
    }
    if (out.size() <= budget) return out;
  }
  return std::nullopt;  // too small a request for any answer: never amplify
}

}  // namespace crust::nat::stun
