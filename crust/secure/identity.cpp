#include "crust/secure/identity.hpp"

#include "crust/base/file.hpp"

#include <boost/json.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace crust {

namespace {

constexpr std::string_view binding_domain = "crust-static-binding-v1";

template <std::size_t N>
result<byte_array<N>> fixed_from_hex(std::string_view hex) {
  auto b = from_hex(hex);
  if (!b || b->size() != N) return make_error_code(errc::bad_key_file);
  byte_array<N> out{};
  std::copy(b->begin(), b->end(), out.begin());
  return out;
}

}  // namespace

std::string public_id::to_string() const {
  return to_hex(key);
}

result<public_id> public_id::parse(std::string_view hex) {
  auto k = fixed_from_hex<32>(hex);
  if (!k) return make_error_code(errc::bad_config);
  return public_id{*k};
}

std::string peer_key::to_string() const {
  return to_hex(id.key) + to_hex(noise_static);
}

result<peer_key> peer_key::parse(std::string_view hex) {
  if (hex.size() != 128) return make_error_code(errc::bad_config);
  auto id = fixed_from_hex<32>(hex.substr(0, 64));
  auto st = fixed_from_hex<32>(hex.substr(64));
  if (!id || !st) return make_error_code(errc::bad_config);
  return peer_key{public_id{*id}, *st};
}

bytes binding_message(const secure::key32& noise_static) {
  bytes m;
  m.reserve(binding_domain.size() + noise_static.size());
  append(m, as_bytes(binding_domain));
  append(m, noise_static);
  return m;
}

bool verify_binding(const peer_key& key, const secure::signature64& sig) {
  return secure::ed25519_verify(key.id.key, binding_message(key.noise_static), sig);
}

identity::identity(secure::ed25519_key sign_key, secure::x25519_keypair static_key)
    : sign_key_(std::move(sign_key)), static_key_(std::move(static_key)) {
  binding_ = sign_key_.sign(binding_message(static_key_.pub));
}

identity identity::generate() {
  return identity(secure::ed25519_key::generate(), secure::x25519_keypair::generate());
}

identity identity::from_secrets(const secure::key32& seed, const secure::key32& x_priv) {
  return identity(secure::ed25519_key::from_seed(seed),
                  secure::x25519_keypair::from_private(x_priv));
}

result<void> identity::save(const std::filesystem::path& path) const {
  boost::json::object o;
  o["format"] = "crust-identity";
  o["version"] = 1;
  o["ed25519_seed"] = to_hex(sign_key_.seed());
  o["x25519_private"] = to_hex(static_key_.priv);
  o["id"] = id().to_string();
  std::string text = boost::json::serialize(o) + "\n";

  // A crash leaves the old file or the new one, never half a key.
  return write_file_atomically(path, text, 0600);
}

result<identity> identity::load_or_create(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return error_code(errno, boost::system::system_category());
    auto fresh = generate();
    if (auto r = fresh.save(path); !r) return r.error();
    return fresh;
  }
  // A private key others can read is a leaked key: refuse it loudly.
  if ((st.st_mode & 077) != 0) return make_error_code(errc::bad_key_file);
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_key_file(ss.str());
}

result<identity> identity::parse_key_file(std::string_view text) {
  boost::system::error_code jec;
  auto v = boost::json::parse(text, jec);
  if (jec || !v.is_object()) return make_error_code(errc::bad_key_file);
  const auto& o = v.as_object();
  auto str = [&](std::string_view k) -> std::string_view {
    auto* f = o.if_contains(k);
    return f && f->is_string() ? std::string_view(f->as_string()) : std::string_view{};
  };
  if (str("format") != "crust-identity") return make_error_code(errc::bad_key_file);
  auto seed = fixed_from_hex<32>(str("ed25519_seed"));
  auto xpriv = fixed_from_hex<32>(str("x25519_private"));
  if (!seed || !xpriv) return make_error_code(errc::bad_key_file);
  auto id = from_secrets(*seed, *xpriv);
  // The stored id is redundant; a mismatch means the file was edited or damaged.
  if (auto stored = str("id"); !stored.empty() && stored != id.id().to_string())
    return make_error_code(errc::bad_key_file);
  return id;
}

}  // namespace crust
