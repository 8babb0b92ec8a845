#include "nat/tcp_stun.hpp"

#include "crust/base/race.hpp"
#include "nat/stun_server.hpp"
#include "transports/endpoint.hpp"
#include "transports/stream_io.hpp"
#include "transports/tcp.hpp"

namespace crust::nat {

namespace asio = boost::asio;
using transport::read_exact;
using transport::write_all;

namespace {

constexpr std::size_t header = 20;

}  // namespace

bool is_tcp_binding_head(byte_span head) noexcept {
  if (head.size() < header || !stun::looks_like_stun(head.first(header))) return false;
  const std::uint16_t type = get_u16(head.data());
  const std::size_t length = get_u16(head.data() + 2);
  // Binding (method 1), class request: type 0x0001.
  return type == 0x0001 && length % 4 == 0 && header + length <= tcp_stun_max_message;
}

asio::awaitable<result<void>> serve_tcp_binding(transport::stream& s, bytes head,
                                                const transport::tcp_endpoint& from,
                                                duration limit) {
  if (!is_tcp_binding_head(head)) co_return make_error_code(errc::malformed);
  const std::size_t length = get_u16(head.data() + 2);
  head.resize(header + length);
  if (length > 0) {
    auto r = co_await with_timeout(read_exact(s, mutable_byte_span(head.data() + header, length)),
                                   limit);
    if (!r) co_return r.error();
  }
  stun::server_options o;
  o.answer_floor = stun::full_answer_size;  // TCP's handshake proved the asker's address
  // A dual-stack listener sees IPv4 askers as v4-mapped: they are told
  // their IPv4 address, as the UDP server tells them.
  auto answer =
      stun::answer(head, stun::udp_endpoint(transport::canonical(from.address()), from.port()), o);
  if (!answer) co_return make_error_code(errc::malformed);
  auto w = co_await with_timeout(write_all(s, *answer), limit);
  if (!w) co_return w.error();
  co_return result<void>{};
}

asio::awaitable<result<transport::tcp_endpoint>> tcp_binding(transport::tcp_endpoint local,
                                                             transport::tcp_endpoint server,
                                                             duration limit) {
  auto attempt = [&]() -> asio::awaitable<result<transport::tcp_endpoint>> {
    auto s = co_await transport::tcp_dial_from(local, server);
    if (!s) co_return s.error();
    const auto id = stun::random_transaction_id();
    auto request = stun::builder(stun::msg_class::request, stun::binding, id).add_fingerprint();
    const bytes wire = std::move(request).finish();
    auto w = co_await write_all(*s, wire);
    if (!w) co_return w.error();
    bytes in(header);
    auto h = co_await read_exact(*s, in);
    if (!h) co_return h.error();
    if (!stun::looks_like_stun(in)) co_return make_error_code(errc::malformed);
    const std::size_t length = get_u16(in.data() + 2);
    if (header + length > tcp_stun_max_message) co_return make_error_code(errc::malformed);
    in.resize(header + length);
    if (length > 0) {
      auto b = co_await read_exact(*s, mutable_byte_span(in.data() + header, length));
      if (!b) co_return b.error();
    }
    s->close();
    auto m = stun::message::parse(in);
    if (!m || m->id() != id || m->method() != stun::binding)
      co_return make_error_code(errc::malformed);
    if (m->cls() == stun::msg_class::error) co_return make_error_code(errc::server_error);
    if (m->cls() != stun::msg_class::success) co_return make_error_code(errc::malformed);
    auto mapped = m->mapped();
    if (!mapped) co_return make_error_code(errc::malformed);
    co_return transport::tcp_endpoint(transport::canonical(mapped->address()), mapped->port());
  };
  auto r = co_await with_timeout(attempt(), limit);
  co_return r;
}

}  // namespace crust::nat
