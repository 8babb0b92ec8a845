// The coroutine that drives a handshake over a stream; the decisions are in
// handshake.cpp, which has no I/O (and so builds in the fuzzing mode).
#include "crust/secure/handshake.hpp"
#include "transports/stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace crust::secure {

boost::asio::awaitable<result<handshake_result>> run_handshake(transport::stream& s, handshake hs) {
  namespace asio = boost::asio;
  auto st = hs.start();
  if (!st) co_return st.error();
  bytes in;
  for (;;) {
    if (!st->send.empty()) {
      auto [ec, n] = co_await asio::async_write(s, asio::buffer(st->send),
                                                asio::as_tuple(asio::use_awaitable));
      if (ec) co_return ec;
    }
    if (st->done) co_return hs.finish();
    in.resize(st->expect);
    auto [ec, n] =
        co_await asio::async_read(s, asio::buffer(in), asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::eof || ec == asio::error::connection_reset)
      co_return make_error_code(errc::handshake_rejected);
    if (ec) co_return ec;
    st = hs.receive(in);
    if (!st) co_return st.error();
  }
}

}  // namespace crust::secure
