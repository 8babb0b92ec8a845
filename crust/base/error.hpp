/// \file
/// Crust's error codes: every expected failure is a value of this category.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <system_error>

namespace crust {

using boost::system::error_code;

template <class T>
using result = boost::system::result<T, error_code>;

enum class errc {
  ok = 0,
  timed_out = 1,         ///< a deadline passed
  cancelled,             ///< the caller cancelled the operation
  shutting_down,         ///< the service is stopping
  handshake_failed,      ///< a handshake message failed to authenticate
  handshake_rejected,    ///< the peer closed during the handshake
  wrong_peer_key,        ///< the peer authenticated with another key than expected
  bad_signature,         ///< an identity or message signature did not verify
  frame_corrupt,         ///< a frame failed authentication: tampered, replayed or reordered
  protocol_violation,    ///< a well-authenticated frame broke the message rules
  message_too_large,     ///< a message exceeds the configured maximum
  peer_closed,           ///< the peer closed the connection
  connection_lost,       ///< no heartbeat within the timeout
  not_connected,         ///< no connection to that peer
  duplicate_connection,  ///< replaced by the connection the simultaneous-dial rule keeps
  bad_config,            ///< malformed or inconsistent configuration
  bad_key_file,          ///< the identity file is missing parts, corrupt or readable by others
  crypto_failure,        ///< OpenSSL refused an operation it should not refuse
  all_attempts_failed,   ///< every raced attempt failed
  not_allowed,           ///< the peer refused us (blacklist, whitelist, role, no bootstrap)
  blacklisted,           ///< that peer or address is on our blacklist
  no_contacts,           ///< bootstrap had nobody to try
  malformed,             ///< bytes from the network that do not parse
  server_error,          ///< a server (STUN, a port-mapping gateway) answered with an error
  wrong_network,         ///< made for another network name
  expired,               ///< past its lifetime (or made too far in the future)
  quota_exceeded,        ///< a limit a peer sets was reached (a relay's circuits or bytes)
  not_found,             ///< no one we asked knows that peer (a gossip lookup)
};

const boost::system::error_category& crust_category() noexcept;

inline error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), crust_category()};
}

}  // namespace crust

namespace boost::system {
template <>
struct is_error_code_enum<crust::errc> : std::true_type {};
}  // namespace boost::system
