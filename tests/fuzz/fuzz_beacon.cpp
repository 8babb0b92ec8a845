// Both sides of the LAN beacon on arbitrary datagrams: the responder never
// answers with more bytes than it got, and the asker's parser (reached past
// the AEAD and the signature in the fuzzing build) never misreads a record.
#include "bootstrap/beacon.hpp"

#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace crust;
  using namespace crust::bootstrap;
  static const identity me = identity::from_secrets(secure::key32{1}, secure::key32{2});
  // The query's nonce is all zeros, so the fuzzer can write answers to it.
  static const beacon_query query("crust", secure::x25519_keypair::from_private(secure::key32{3}),
                                  byte_array<16>{});
  const byte_span in(data, size);
  const std::vector<advertised_endpoint> eps{{std::nullopt, 5483},
                                             {boost::asio::ip::make_address("2001:db8::1"), 9}};
  if (auto reply = beacon_answer(in, "crust", me, eps, 1700000000); reply && reply->size() > size)
    __builtin_trap();
  const auto from = boost::asio::ip::make_address("198.19.1.2");
  if (auto c = query.accept(in, from)) {
    if (c->endpoints.empty() || c->endpoints.size() > beacon_max_endpoints) __builtin_trap();
    for (const auto& e : c->endpoints)
      if (e.port() == 0) __builtin_trap();
  }
  return 0;
}
