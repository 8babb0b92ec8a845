// The message layer inside frames, without I/O: records, fragmentation and
// reassembly, and the priority send queue.
//
// Frame body = one or more records, each prefixed by its length, so small
// messages share a frame (one AEAD pass and 34 bytes of overhead for many):
//   body      = (u16be length | record)+
//   data:      u8 1 | u8 flags (1 first, 2 last, 4 signed) | u8 priority
//              | [first: u32be total length | [signed: 64-byte signature]]
//              | fragment bytes
//   heartbeat: u8 2
//   close:     u8 3 | u8 reason | UTF-8 text (at most 256 bytes)
//   hello:     u8 4 | u8 role (0 node, 1 client) | u8 flags (1 bootstrap)
//              | [u16be the dialler's TCP listening port, 0 = none
//                 [| u16be its UDP port (STUN, µTP), 0 = none]]
//              the dialler's first record on every connection (the TCP
//              port is for the acceptor's optional reachability dial-back,
//              the UDP port makes the dialler a STUN server for the
//              acceptor; a shorter hello reads as port 0)
//   admit:     u8 5 [| u16be the acceptor's UDP port, 0 = none]
//              the acceptor's answer to a hello it accepts (a refusal is a
//              close record with reason not_allowed)
//   relay:     u8 6 | body (nat/relay.hpp: introductions through a mutual
//              peer, and relay circuits), at most max_relay_record bytes
// A record never spans frames. Fragments of one message are contiguous; a
// new message starts only after the previous one's last fragment.
#pragma once

#include "crust/secure/crypto.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace crust {

// Lower value = more important. Under back-pressure `low` goes first.
enum class priority : std::uint8_t { high = 0, normal = 1, low = 2 };
inline constexpr std::size_t priority_count = 3;
const char* to_string(priority p) noexcept;

// Why a connection was closed, as carried in the close record.
enum class close_reason : std::uint8_t {
  normal = 0,          // the application disconnected
  shutdown = 1,        // the service stopped
  duplicate = 2,       // the simultaneous-dial rule kept the other connection
  protocol_error = 3,  // the peer broke the message rules
  timeout = 4,         // heartbeat timeout
  not_allowed = 5,     // admission refused
};
const char* to_string(close_reason r) noexcept;

// What a dialler says it is. Clients bootstrap off nodes and are admitted by
// the client whitelist; they take no part in the network otherwise.
enum class node_role : std::uint8_t { node = 0, client = 1 };
const char* to_string(node_role r) noexcept;

}  // namespace crust

namespace crust::secure {

inline constexpr std::size_t max_close_text = 256;
inline constexpr std::size_t record_prefix = 2;

// Splits a frame body into its records, front to back.
class record_reader {
 public:
  explicit record_reader(byte_span body) : rest_(body), empty_body_(body.empty()) {}
  // The next record; nullopt at the end; protocol_violation for an empty
  // body, an empty record or one that runs past the body.
  result<std::optional<byte_span>> next();

 private:
  byte_span rest_;
  bool empty_body_;
};

enum class record_type : byte {
  data = 1,
  heartbeat = 2,
  close = 3,
  hello = 4,
  admit = 5,
  relay = 6,
  gossip = 7
};
// A relay record whole (type byte included); it fits a frame with room for
// other records.
inline constexpr std::size_t max_relay_record = std::size_t{32} * 1024;
// A gossip record whole (bootstrap/gossip.hpp: at most 255 contact records
// of at most 237 bytes each, and a few bytes of header).
inline constexpr std::size_t max_gossip_record = std::size_t{64} * 1024;

struct outgoing_message {
  bytes payload;
  priority prio = priority::normal;
  std::optional<signature64> signature;
};

// Splits `msg` into records of at most `max_record` bytes each and hands each
// to `emit(header, data)`; header followed by data is one record.
template <class Emit>
void encode_message(const outgoing_message& msg, std::size_t max_record, Emit&& emit);
std::size_t first_fragment_header(bool signed_msg) noexcept;
inline constexpr std::size_t fragment_header = 3;

bytes encode_close(close_reason reason, std::string_view text);
bytes encode_heartbeat();
bytes encode_hello(node_role role, bool bootstrap, std::uint16_t listen_port = 0,
                   std::uint16_t udp_port = 0);
bytes encode_admit(std::uint16_t udp_port = 0);

// What the reassembler hands up.
struct incoming_message {
  bytes payload;
  priority prio = priority::normal;
  std::optional<signature64> signature;
};
struct incoming_heartbeat {};
struct incoming_close {
  close_reason reason = close_reason::normal;
  std::string text;
};
struct incoming_hello {
  node_role role = node_role::node;
  bool bootstrap = false;
  std::uint16_t listen_port = 0;  // 0: the dialler did not say (or does not listen)
  std::uint16_t udp_port = 0;     // likewise
};
struct incoming_admit {
  std::uint16_t udp_port = 0;  // the acceptor's; 0: it did not say (or has none)
};
// A relay record: its body (after the type byte), read by nat/relay.hpp.
struct incoming_relay {
  bytes body;
};
// A gossip record: its body (after the type byte), read by bootstrap/gossip.hpp.
struct incoming_gossip {
  bytes body;
};
// A message over the limit: its fragments are skipped, the connection lives.
struct incoming_oversize {
  std::uint64_t declared_size = 0;
};
using incoming = std::variant<std::monostate, incoming_message, incoming_heartbeat, incoming_close,
                              incoming_oversize, incoming_hello, incoming_admit, incoming_relay,
                              incoming_gossip>;

class reassembler {
 public:
  explicit reassembler(std::size_t max_message_size) : max_(max_message_size) {}

  // Feeds one record of an authenticated frame body. Returns monostate while a message is
  // incomplete. Errors: protocol_violation (unknown record, bad flags, a
  // fragment out of place, sizes that disagree).
  result<incoming> feed(byte_span body);

 private:
  std::size_t max_;
  bool in_message_ = false;
  bool discarding_ = false;
  std::uint64_t expected_ = 0;
  std::uint64_t received_ = 0;
  incoming_message current_;
};

// A bounded priority queue of messages waiting to be sealed. When a push
// would exceed the byte bound, the oldest messages of strictly lower
// priority are dropped first; if that is not enough, the new message itself
// is refused. Every drop is reported so the application can be told.
class send_queue {
 public:
  struct dropped {
    std::size_t count = 0;
    std::uint64_t bytes = 0;
    priority lowest_dropped = priority::high;
    bool refused_new = false;  // the pushed message itself was not queued
  };

  explicit send_queue(std::size_t max_bytes) : max_bytes_(max_bytes) {}

  dropped push(outgoing_message msg);
  std::optional<outgoing_message> pop();
  bool empty() const noexcept { return count_ == 0; }
  std::size_t size() const noexcept { return count_; }
  std::size_t queued_bytes() const noexcept { return bytes_; }

 private:
  // A FIFO that holds no memory while empty (std::deque allocates a block
  // when it is made): an idle connection's queue costs nothing.
  class fifo {
   public:
    bool empty() const noexcept { return head_ == items_.size(); }
    outgoing_message& front() { return items_[head_]; }
    void push_back(outgoing_message m) { items_.push_back(std::move(m)); }
    void pop_front();

   private:
    std::vector<outgoing_message> items_;
    std::size_t head_ = 0;
  };
  std::size_t max_bytes_;
  std::array<fifo, priority_count> queues_;
  std::size_t bytes_ = 0;
  std::size_t count_ = 0;
};

// Opt-in signed messages: what the signature covers, so a third party can
// verify it later with only the sender's and the receiver's ids.
bytes signed_message_body(const key32& sender, const key32& receiver, byte_span payload);

// --- template implementation ------------------------------------------------

template <class Emit>
void encode_message(const outgoing_message& msg, std::size_t max_record, Emit&& emit) {
  const bool is_signed = msg.signature.has_value();
  std::size_t offset = 0;
  bool first = true;
  bytes header;
  do {
    header.clear();
    const std::size_t header_size = first ? first_fragment_header(is_signed) : fragment_header;
    const std::size_t take = std::min(max_record - header_size, msg.payload.size() - offset);
    const bool last = offset + take == msg.payload.size();
    header.push_back(static_cast<byte>(record_type::data));
    header.push_back(static_cast<byte>((first ? 1 : 0) | (last ? 2 : 0) | (is_signed ? 4 : 0)));
    header.push_back(static_cast<byte>(msg.prio));
    if (first) {
      put_u32(header, static_cast<std::uint32_t>(msg.payload.size()));
      if (is_signed) append(header, *msg.signature);
    }
    emit(byte_span(header), byte_span(msg.payload).subspan(offset, take));
    offset += take;
    first = false;
  } while (offset < msg.payload.size());
}

}  // namespace crust::secure
