#include "crust/base/error.hpp"

#include <string>

namespace crust {
namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "crust"; }

  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
      case errc::ok:
        return "success";
      case errc::timed_out:
        return "operation timed out";
      case errc::cancelled:
        return "operation cancelled";
      case errc::shutting_down:
        return "service is shutting down";
      case errc::handshake_failed:
        return "handshake failed to authenticate: the peer uses another network name or "
               "protocol version, or was dialled with the wrong public key";
      case errc::handshake_rejected:
        return "peer closed the connection during the handshake: it rejected our network "
               "name, protocol version or the key we dialled";
      case errc::wrong_peer_key:
        return "peer authenticated with a different key than expected";
      case errc::bad_signature:
        return "signature did not verify";
      case errc::frame_corrupt:
        return "frame failed authentication (tampered, replayed, reordered or truncated)";
      case errc::protocol_violation:
        return "peer violated the message protocol";
      case errc::message_too_large:
        return "message larger than the configured maximum";
      case errc::peer_closed:
        return "peer closed the connection";
      case errc::connection_lost:
        return "peer went silent past the heartbeat timeout";
      case errc::not_connected:
        return "not connected to that peer";
      case errc::duplicate_connection:
        return "connection replaced by the one the simultaneous-dial rule keeps";
      case errc::bad_config:
        return "invalid configuration";
      case errc::bad_key_file:
        return "invalid identity file";
      case errc::crypto_failure:
        return "cryptographic library failure";
      case errc::all_attempts_failed:
        return "every attempt failed";
      case errc::not_allowed:
        return "the peer does not admit us (blacklist, whitelist, role or no bootstrap)";
      case errc::blacklisted:
        return "that peer or address is blacklisted";
      case errc::no_contacts:
        return "no one to bootstrap from (no cache entries, contacts or LAN peers)";
      case errc::malformed:
        return "malformed message";
      case errc::server_error:
        return "the server answered with an error";
      case errc::wrong_network:
        return "made for another network";
      case errc::expired:
        return "expired";
      case errc::quota_exceeded:
        return "quota exceeded";
      case errc::not_found:
        return "no one we asked knows that peer";
    }
    return "unknown crust error " + std::to_string(ev);
  }
};

}  // namespace

const boost::system::error_category& crust_category() noexcept {
  static const category instance;
  return instance;
}

}  // namespace crust
