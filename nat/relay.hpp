// Introductions and relay circuits through a mutual peer, without I/O.
//
// Two peers A and B that are both connected to R, and not to each other,
// use R in two ways:
//
// 1. An introduction (as libp2p's DCUtR): A gives R its connection info for
//    B; R passes it on; B answers with its own info and how long it held
//    the introduction (its STUN work), so A can tell the round trip
//    through R; A sends a sync, waits half that round trip, and both punch
//    at about the same time. The same exchange between two peers that are
//    already connected (through a relay) finds a direct path to replace it:
//    then "R" is the peer itself.
//
// 2. A circuit: A asks R to open a circuit to B; R asks B; B accepts; then
//    bytes flow A -> R -> B and back, end-to-end encrypted (A and B run
//    their own Noise handshake over the circuit: R sees only ciphertext).
//    Each end grants the other a window of bytes (circuit_window at first,
//    then window records as it consumes), so R never holds more than the
//    window per direction, and R refuses senders that exceed it.
//
// Records travel inside the authenticated frames of the A-R and R-B
// connections (crust/secure/message.hpp, record type 6):
//
//   introduce          1 | id32 target | info (nat/connection_info.hpp wire form)
//   introduction       2 | id32 origin | info
//   introduce_reply    3 | id32 origin | u32 held_ms | info
//   introduce_answer   4 | id32 target | u32 held_ms | info
//   introduce_failed   5 | id32 target | u8 reason | text    (to the origin)
//   introduce_refuse  14 | id32 origin | u8 reason | text    (target to relay)
//   sync               6 | id32 target
//   synced             7 | id32 origin
//   open               8 | u32 circuit | id32 target
//   incoming           9 | u32 circuit | id32 origin
//   accept            10 | u32 circuit
//   data              11 | u32 circuit | bytes (at most max_circuit_data)
//   window            12 | u32 circuit | u32 more bytes the sender may send
//   close             13 | u32 circuit | u8 reason | text
//
// A circuit number is chosen by whoever opens the circuit on that link
// (A on A-R, R on R-B), from its own counter; the top bit of the number
// on the wire says whether the sender of the record opened it, so the two
// ends' numbers never collide. R keeps the table that joins the two halves.
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/base/clock.hpp"
#include "crust/base/error.hpp"
#include "crust/secure/identity.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace crust::nat::relay {

inline constexpr std::size_t max_circuit_data = std::size_t{16} * 1024;
inline constexpr std::uint32_t circuit_window = 256 * 1024;  // bytes in flight, each way
inline constexpr std::size_t max_text = 200;
inline constexpr std::size_t max_info = 2048;

enum class reason : std::uint8_t {
  normal = 0,          // an end closed it
  not_connected = 1,   // the relay has no connection to the target
  refused = 2,         // the target does not take introductions or circuits
  not_relaying = 3,    // the relay does not relay (enable_relay off)
  quota = 4,           // a relay limit: circuits, bytes, or the window overrun
  peer_gone = 5,       // the other end's connection to the relay ended
  protocol_error = 6,  // a record out of place
  timed_out = 7,       // nothing happened in time
};
std::string_view to_string(reason r) noexcept;

// A circuit number as this end knows it: who opened it on this link.
struct circuit_ref {
  std::uint32_t number = 0;  // below 2^31
  bool opened_by_me = false;
  auto operator<=>(const circuit_ref&) const = default;
};

struct introduce {
  public_id target;
  bytes info;
};
struct introduction {
  public_id origin;
  bytes info;
};
struct introduce_reply {
  public_id origin;
  std::uint32_t held_ms = 0;
  bytes info;
};
struct introduce_answer {
  public_id target;
  std::uint32_t held_ms = 0;
  bytes info;
};
struct introduce_failed {
  public_id target;
  reason why = reason::normal;
  std::string text;
};
struct introduce_refuse {
  public_id origin;
  reason why = reason::normal;
  std::string text;
};
struct sync {
  public_id target;
};
struct synced {
  public_id origin;
};
struct open {
  circuit_ref circuit;
  public_id target;
};
struct incoming {
  circuit_ref circuit;
  public_id origin;
};
struct accept {
  circuit_ref circuit;
};
struct data {
  circuit_ref circuit;
  bytes payload;
};
struct window {
  circuit_ref circuit;
  std::uint32_t more = 0;
};
struct close {
  circuit_ref circuit;
  reason why = reason::normal;
  std::string text;
};

using record =
    std::variant<introduce, introduction, introduce_reply, introduce_answer, introduce_failed,
                 introduce_refuse, sync, synced, open, incoming, accept, data, window, close>;

// The whole record, type byte 6 first, ready for connection::send_control.
// Circuit numbers are written from the sender's side (opened_by_me sets
// the top bit). Payloads over their bounds are the caller's bug: they
// are cut (data to max_circuit_data, texts to max_text).
bytes encode(const record& r);
// Reads a record body (after the type byte), as the receiver: the top bit
// becomes "opened by the sender", so opened_by_me is its opposite.
// Errors: protocol_violation (unknown op, wrong length, a number with
// no room, an oversized part).
result<record> decode(byte_span body);

// What R does with the records of its peers: forwards introductions,
// joins circuits, counts bytes against the window and the quotas. No I/O:
// it returns the records to send, each to a peer.
struct limits {
  std::size_t circuits = 64;                   // open at once, in all
  std::size_t circuits_per_peer = 8;           // opened by one peer, or to one peer
  std::uint64_t circuit_bytes = 256ull << 20;  // both ways, over the circuit's life
  std::size_t introductions_per_minute = 30;   // from one peer
};

struct outgoing {
  public_id to;
  bytes record;  // encoded
};

class relay_switch {
 public:
  using connected_fn = std::function<bool(const public_id&)>;
  relay_switch(public_id me, limits l, bool relaying) : me_(me), limits_(l), relaying_(relaying) {}

  void set_relaying(bool on) noexcept { relaying_ = on; }
  void set_limits(limits l) noexcept { limits_ = l; }

  // A record from `from` that is R's business (introduce and sync for
  // another peer, introduce_reply, introduce_refuse, open, and accept,
  // data, window and close for a circuit R joins).
  // Records for circuits that end here are not R's: handled() is false
  // and the caller's endpoint logic takes them.
  struct verdict {
    bool handled = false;
    std::vector<outgoing> out;
  };
  verdict on_record(const public_id& from, const record& r, const connected_fn& connected,
                    time_point now);
  // `peer`'s connection to us ended: its circuits close at the other end.
  std::vector<outgoing> on_peer_gone(const public_id& peer);

  std::size_t circuits() const noexcept { return joined_.size(); }
  struct totals {
    std::uint64_t circuits_opened = 0, bytes_relayed = 0, introductions = 0, refusals = 0;
  };
  const totals& stats() const noexcept { return stats_; }

 private:
  struct half {
    public_id peer;
    circuit_ref ref;  // as R knows it on that link
    auto operator<=>(const half&) const = default;
  };
  struct joined {
    half a, b;  // a opened it, b is the target
    bool accepted = false;
    std::uint64_t bytes = 0;                  // relayed, both ways
    std::int64_t credit_ab = circuit_window;  // what a may still send to b
    std::int64_t credit_ba = circuit_window;
  };
  std::optional<std::pair<std::uint64_t, bool>> find(const public_id& from,
                                                     const circuit_ref& c) const;
  std::size_t count_for(const public_id& peer) const;
  bool allow_introduction(const public_id& from, time_point now);
  void drop(std::uint64_t key);

  public_id me_;
  limits limits_;
  bool relaying_;
  std::uint32_t next_number_ = 1;
  std::uint64_t next_key_ = 1;
  std::map<std::uint64_t, joined> joined_;
  std::map<half, std::pair<std::uint64_t, bool>> by_half_;  // -> (key, is side a)
  std::map<public_id, std::vector<time_point>> intro_times_;
  totals stats_;
};

}  // namespace crust::nat::relay
