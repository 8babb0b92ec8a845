#include "transports/stream_io.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace crust::transport {

asio::awaitable<result<void>> read_exact(stream& s, mutable_byte_span into) {
  auto [ec, n] = co_await asio::async_read(s, asio::buffer(into.data(), into.size()),
                                           asio::as_tuple(asio::use_awaitable));
  if (ec) co_return ec;
  co_return result<void>{};
}

asio::awaitable<result<void>> write_all(stream& s, byte_span data) {
  auto [ec, n] = co_await asio::async_write(s, asio::buffer(data.data(), data.size()),
                                            asio::as_tuple(asio::use_awaitable));
  if (ec) co_return ec;
  co_return result<void>{};
}

}  // namespace crust::transport
