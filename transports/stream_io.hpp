// Whole reads and writes on a transport stream, as coroutines, with the
// error as a value.
#pragma once

#include "crust/base/bytes.hpp"
#include "crust/base/error.hpp"
#include "transports/stream.hpp"

#include <boost/asio/awaitable.hpp>

namespace crust::transport {

// Fills `into`. Errors: the stream's (eof when it ends first).
boost::asio::awaitable<result<void>> read_exact(stream& s, mutable_byte_span into);
// Writes all of `data`, which must outlive the call. Errors: the stream's.
boost::asio::awaitable<result<void>> write_all(stream& s, byte_span data);

}  // namespace crust::transport
