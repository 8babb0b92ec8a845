#include "crust/events.hpp"

#include <sstream>

namespace crust {

namespace {
template <class... F>
struct overloaded : F... {
  using F::operator()...;
};
template <class... F>
overloaded(F...) -> overloaded<F...>;

std::string who(const peer_info& p) {
  return p.id.short_string() + " (" + to_string(p.role) + ", " + transport::to_string(p.transport) +
         " " + p.remote +
         (p.path == path_kind::direct ? "" : std::string(", ") + to_string(p.path)) + ")";
}
}  // namespace

std::string describe(const event& e) {
  return std::visit(
      overloaded{
          [](const events::new_message& m) {
            return "NewMessage from " + m.peer.short_string() + ": " +
                   std::to_string(m.payload.size()) + " bytes, " + to_string(m.prio) +
                   (m.signature ? ", signed" : "");
          },
          [](const events::bootstrap_accept& a) { return "BootstrapAccept " + who(a.peer); },
          [](const events::bootstrap_connect& b) { return "BootstrapConnect " + who(b.peer); },
          [](const events::bootstrap_failed& b) {
            return "BootstrapFailed after " + std::to_string(b.attempts) +
                   " attempts: " + b.error.message() +
                   (b.detail.empty() ? "" : " (" + b.detail + ")");
          },
          [](const events::connect_success& c) { return "ConnectSuccess " + who(c.peer); },
          [](const events::connect_failure& c) {
            return "ConnectFailure " + c.endpoint + ": " + c.error.message() +
                   (c.detail.empty() ? "" : " - " + c.detail);
          },
          [](const events::listener_started& l) { return "ListenerStarted " + l.endpoint; },
          [](const events::listener_failed& l) {
            return "ListenerFailed " + l.endpoint + ": " + l.error.message();
          },
          [](const events::listener_stopped& l) {
            return "ListenerStopped " + l.endpoint + " (" + l.why + ")";
          },
          [](const events::lost_peer& l) {
            return "LostPeer " + l.peer.short_string() + ": " + l.reason.message() +
                   (l.detail.empty() ? "" : " (" + l.detail + ")");
          },
          [](const events::message_too_large& m) {
            return "MessageTooLarge from " + m.peer.short_string() + ": " + std::to_string(m.size) +
                   " bytes, skipped";
          },
          [](const events::messages_dropped& d) {
            return "MessagesDropped to " + d.peer.short_string() + ": " + std::to_string(d.count) +
                   " messages, " + std::to_string(d.bytes) + " bytes, down to priority " +
                   to_string(d.lowest);
          },
          [](const events::connection_info_prepared& c) {
            std::string s = "ConnectionInfoPrepared " + c.nonce.substr(0, 8) + ": " +
                            std::to_string(c.candidates.size()) + " candidates (";
            for (std::size_t i = 0; i < c.candidates.size(); ++i)
              s += (i ? ", " : "") + c.candidates[i];
            return s + "), NAT " + c.nat;
          },
          [](const events::port_mapping_changed& p) {
            std::string s = "PortMapping " + std::string(events::to_string(p.kind)) + " " +
                            p.protocol + " port " + std::to_string(p.internal_port);
            if (!p.external.empty())
              s += " -> " + p.external + " (" + p.method + ", " +
                   (p.lifetime ? std::to_string(p.lifetime) + " s" : std::string("permanent")) +
                   ")";
            for (std::size_t i = 0; i < p.notes.size(); ++i) s += (i ? "; " : ": ") + p.notes[i];
            return s;
          },
      },
      e);
}

const char* to_string(path_kind p) noexcept {
  switch (p) {
    case path_kind::direct:
      return "direct";
    case path_kind::punched:
      return "punched";
    case path_kind::mapped:
      return "mapped";
    case path_kind::relayed:
      return "relayed";
  }
  return "?";
}

std::string_view events::to_string(port_mapping_changed::what w) noexcept {
  switch (w) {
    case port_mapping_changed::what::mapped:
      return "mapped";
    case port_mapping_changed::what::renewed:
      return "renewed";
    case port_mapping_changed::what::failed:
      return "failed";
    case port_mapping_changed::what::lost:
      return "lost";
  }
  return "?";
}

bool verify_message_signature(const public_id& sender, const public_id& receiver, byte_span payload,
                              const secure::signature64& sig) {
  return secure::ed25519_verify(
      sender.key, secure::signed_message_body(sender.key, receiver.key, payload), sig);
}

}  // namespace crust
