// The µTP state machine under a hostile peer: the input is a script of
// packets (built from fuzzer bytes around the connection's own numbers, so
// they land in and near its windows), time steps, writes and reads. The
// machine must never crash, never buffer past its window, emit only
// datagrams that decode, keep its window bookkeeping consistent, and stay
// finished once finished.
#include "transports/utp/connection.hpp"

#include <cstdint>

using namespace crust;
using namespace crust::utp;

namespace {
struct reader {
  const std::uint8_t* p;
  std::size_t n;
  std::uint8_t u8() { return n ? (--n, *p++) : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>(u8() << 8 | u8()); }
  std::uint32_t u32() { return std::uint32_t{u16()} << 16 | u16(); }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reader in{data, size};
  settings s;
  s.recv_window = 16384;
  s.send_buffer = 16384;
  s.packet_size = 1000;
  s.max_datagram = 4000;  // the MTU search runs, against probes and echoes from the input
  time_point now{};
  const std::uint8_t first = in.u8();
  const bool initiator = first & 1;
  packet syn;
  syn.h = header{packet_type::syn, 100, 1, 0, 65535, 10, 0};
  syn.answers_probes = first & 2;
  auto c = initiator ? connection::dial(100, 500, now, s) : connection::accept(syn, 500, now, s);
  const std::uint16_t peer_base = 10, our_base = 500;
  bytes payload_store(2048, 0xab);
  bool was_finished = false;
  while (in.n > 0) {
    const std::uint8_t op = in.u8();
    switch (op % 5) {
      case 0: {  // a packet from the peer
        header h;
        h.type = static_cast<packet_type>(in.u8() % 5);
        h.connection_id = in.u8() & 1 ? c.recv_id() : in.u16();
        h.timestamp_us = in.u32();
        h.timestamp_diff_us = in.u8() & 1 ? 0 : in.u32();
        h.wnd_size = in.u8() & 1 ? 65536 : in.u32();
        h.seq_nr = static_cast<std::uint16_t>(peer_base + static_cast<std::int8_t>(in.u8()) +
                                              (in.u8() & 1 ? in.u16() : 0));
        h.ack_nr = static_cast<std::uint16_t>(our_base + static_cast<std::int8_t>(in.u8()));
        std::optional<std::vector<std::uint8_t>> sack;
        if (in.u8() & 1) sack = std::vector<std::uint8_t>{in.u8(), in.u8(), in.u8(), in.u8()};
        const std::size_t len = std::size_t{in.u8()} * 8;
        packet p;
        p.h = h;
        p.sack = sack;
        p.payload = byte_span(payload_store.data(), len);
        const std::uint8_t mtu = in.u8();
        p.answers_probes = mtu & 1;
        if (mtu & 2) p.mtu_probe = in.u8();
        if (mtu & 4) p.mtu_echo = in.u8();  // small ids: ours count up from 1
        c.on_packet(p, now);
        break;
      }
      case 1:
        now += std::chrono::milliseconds(std::size_t{in.u8()} * (op & 0x80 ? 1000 : 1));
        c.on_timer(now);
        break;
      case 2: {
        bytes w(std::size_t{in.u8()} * 40, 0x5a);
        if (c.write(w) > w.size()) __builtin_trap();
        break;
      }
      case 3: {
        bytes r(std::size_t{in.u8()} * 40);
        if (c.read(r) > r.size()) __builtin_trap();
        break;
      }
      case 4:
        if (op & 0x10) c.close();
        if (op & 0x20 && op & 0x40) c.reset();
        break;
    }
    c.flush(now, [](byte_span d) {
      if (!decode(d)) __builtin_trap();
    });
    if (c.readable() > s.recv_window) __builtin_trap();
    if (!c.consistent()) __builtin_trap();
    if (c.next_deadline() < now && !c.finished() && c.next_deadline() != time_point::min()) {
      // A deadline in the past is fine (on_timer runs it next); one that
      // on_timer does not move would spin a driver.
      auto before = c.next_deadline();
      c.on_timer(now);
      c.flush(now, [](byte_span) {});
      if (!c.finished() && c.next_deadline() == before && before < now) __builtin_trap();
    }
    if (was_finished && !c.finished()) __builtin_trap();
    was_finished = c.finished();
  }
  return 0;
}
