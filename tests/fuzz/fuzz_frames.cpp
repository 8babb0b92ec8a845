// The receive path of a connection after the handshake: frame decoder,
// record splitter and reassembler, fed one stream cut at fuzzer-chosen
// boundaries. In the fuzzing build a frame is plaintext with a 16-byte
// dummy tag after the 2-byte length and after the body.
#include "crust/secure/frame.hpp"
#include "crust/secure/message.hpp"

#include <cstdint>
#include <cstring>

using namespace crust;
using namespace crust::secure;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t chunk = 1 + data[0] % 97;  // read boundaries vary with the input
  bytes stream(data + 1, data + size);
  noise::cipher_state cs;
  cs.initialize_key(key32{});
  frame_opener opener(std::move(cs), 4);  // rekeys often, to cover it
  reassembler reasm(1 << 20);
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    mutable_byte_span in(stream.data() + at, std::min(chunk, stream.size() - at));
    while (!in.empty()) {
      auto body = opener.next(in);
      if (!body) return 0;  // frame_corrupt: the connection would close
      if (!*body) break;
      record_reader records(**body);
      for (;;) {
        auto rec = records.next();
        if (!rec) return 0;
        if (!*rec) break;
        auto got = reasm.feed(**rec);
        if (!got) return 0;  // protocol_violation
        if (auto* m = std::get_if<incoming_message>(&*got)) {
          if (m->payload.size() > (1 << 20)) __builtin_trap();  // the limit must hold
        }
      }
    }
  }
  return 0;
}
