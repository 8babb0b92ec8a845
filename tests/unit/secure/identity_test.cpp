#include "crust/secure/identity.hpp"

#include "support/temp_dir.hpp"
#include "support/test.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

using namespace crust;
namespace fs = std::filesystem;

TEST_CASE("identity: load_or_create makes a private file and reloads the same id") {
  test::temp_dir d;
  auto file = d.path / "node.key";
  auto a = identity::load_or_create(file);
  REQUIRE(a);
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto b = identity::load_or_create(file);
  REQUIRE(b);
  CHECK(a->id() == b->id());
  CHECK(a->public_key() == b->public_key());
}

TEST_CASE("identity: a key file others can read is refused, not used") {
  test::temp_dir d;
  auto file = d.path / "node.key";
  REQUIRE(identity::load_or_create(file));
  ::chmod(file.c_str(), 0644);
  CHECK(identity::load_or_create(file).error() == errc::bad_key_file);
}

TEST_CASE("identity: a corrupt key file is an error and is never overwritten") {
  test::temp_dir d;
  auto file = d.path / "node.key";
  for (std::string text :
       {"", "{", "[]", "{\"format\":\"crust-identity\"}",
        "{\"format\":\"crust-identity\",\"ed25519_seed\":\"00\",\"x25519_private\":\"11\"}"}) {
    {
      std::ofstream out(file);
      out << text;
    }
    ::chmod(file.c_str(), 0600);
    CHECK(identity::load_or_create(file).error() == errc::bad_key_file);
    std::ifstream in(file);
    std::string back((std::istreambuf_iterator<char>(in)), {});
    CHECK(back == text);
  }
}

TEST_CASE("identity: printable forms round-trip and reject garbage") {
  auto id = identity::generate();
  auto pk = id.public_key();
  CHECK(pk.to_string().size() == 128);
  CHECK(id.id().to_string().size() == 64);
  CHECK(*peer_key::parse(pk.to_string()) == pk);
  CHECK(*public_id::parse(id.id().to_string()) == id.id());
  CHECK_FALSE(peer_key::parse("abc"));
  CHECK_FALSE(peer_key::parse(std::string(128, 'g')));
  CHECK_FALSE(public_id::parse(std::string(63, 'a')));
}

TEST_CASE("identity: the static key is bound to the id by a signature") {
  auto id = identity::generate();
  CHECK(verify_binding(id.public_key(), id.binding()));
  auto other = identity::generate();
  peer_key forged{id.id(), other.public_key().noise_static};
  CHECK_FALSE(verify_binding(forged, id.binding()));
}
