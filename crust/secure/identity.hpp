/// \file
/// A node's identity: an Ed25519 key whose public half is the peer id, and a
/// separate X25519 static key for Noise, bound to the id by a signature.
#pragma once

#include "crust/secure/crypto.hpp"

#include <compare>
#include <filesystem>
#include <string>
#include <string_view>

namespace crust {

/// The peer id: an Ed25519 public key. Printed as 64 lower-case hex digits.
struct public_id {
  secure::key32 key{};

  std::string to_string() const;
  std::string short_string() const { return to_string().substr(0, 8); }
  static result<public_id> parse(std::string_view hex);
  /// NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads defaulted <=>
  auto operator<=>(const public_id&) const = default;
};

/// What a dialler needs to reach a node with Noise XK: its id and its Noise
/// static key. Printed as 128 hex digits (id, then static key). The binding
/// of the two is proven during every handshake, so this form needs no
/// signature of its own.
struct peer_key {
  public_id id;
  secure::key32 noise_static{};

  std::string to_string() const;
  static result<peer_key> parse(std::string_view hex);
  bool operator==(const peer_key&) const = default;
};

class identity {
 public:
  static identity generate();
  static identity from_secrets(const secure::key32& ed25519_seed, const secure::key32& x25519_priv);

  /// Loads the identity at `path`, or creates one there (mode 0600, written
  /// atomically) if the file does not exist. Errors: bad_key_file when the file
  /// is corrupt or readable by group/others (it is never overwritten), or the
  /// filesystem error.
  static result<identity> load_or_create(const std::filesystem::path& path);
  /// A key file's text, as load_or_create reads it. Errors: bad_key_file.
  static result<identity> parse_key_file(std::string_view text);
  result<void> save(const std::filesystem::path& path) const;

  public_id id() const { return public_id{sign_key_.public_key()}; }
  peer_key public_key() const { return {id(), static_key_.pub}; }
  const secure::x25519_keypair& static_key() const noexcept { return static_key_; }
  /// Signature binding the Noise static key to the id, for contact records
  /// exchanged outside a handshake.
  const secure::signature64& binding() const noexcept { return binding_; }
  secure::signature64 sign(byte_span message) const { return sign_key_.sign(message); }

 private:
  identity(secure::ed25519_key sign_key, secure::x25519_keypair static_key);
  secure::ed25519_key sign_key_;
  secure::x25519_keypair static_key_;
  secure::signature64 binding_{};
};

/// The message a binding signature covers.
bytes binding_message(const secure::key32& noise_static);
bool verify_binding(const peer_key& key, const secure::signature64& sig);

}  // namespace crust
