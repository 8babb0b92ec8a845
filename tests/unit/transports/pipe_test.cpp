// pipe_stream: two ends joined by an in-process carrier (posted, as a
// connection's records would be): bytes arrive whole and in order, the
// window is never overrun, an end closing gives the other eof, a carrier
// that overruns the window is refused, and operations are cancellable.
#include "transports/pipe.hpp"

#include "support/co_test.hpp"

#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

#include <numeric>

using namespace crust;
namespace asio = boost::asio;
using transport::pipe_state;
using transport::pipe_stream;

namespace {

struct joined {
  std::shared_ptr<pipe_state> a, b;
  std::uint64_t in_flight_ab = 0, max_in_flight_ab = 0;
  bool a_closed = false, b_closed = false;
};

std::shared_ptr<joined> join(asio::io_context& io, std::uint32_t window, std::size_t chunk) {
  auto j = std::make_shared<joined>();
  std::weak_ptr<joined> w = j;
  auto ex = io.get_executor();
  pipe_state::carrier ca, cb;
  ca.send = [w, ex](bytes d) {
    if (auto j = w.lock()) {
      j->in_flight_ab += d.size();
      j->max_in_flight_ab = std::max(j->max_in_flight_ab, j->in_flight_ab);
    }
    asio::post(ex, [w, d = std::move(d)] {
      if (auto j = w.lock()) {
        j->in_flight_ab -= d.size();
        CHECK(j->b->deliver(d));
      }
    });
  };
  ca.grant = [w, ex](std::uint32_t more) {
    asio::post(ex, [w, more] {
      if (auto j = w.lock()) j->b->add_credit(more);
    });
  };
  ca.closed = [w] {
    if (auto j = w.lock()) {
      j->a_closed = true;
      j->b->end(make_error_code(asio::error::eof));
    }
  };
  cb.send = [w, ex](bytes d) {
    asio::post(ex, [w, d = std::move(d)] {
      if (auto j = w.lock()) CHECK(j->a->deliver(d));
    });
  };
  cb.grant = [w, ex](std::uint32_t more) {
    asio::post(ex, [w, more] {
      if (auto j = w.lock()) j->a->add_credit(more);
    });
  };
  cb.closed = [w] {
    if (auto j = w.lock()) {
      j->b_closed = true;
      j->a->end(make_error_code(asio::error::eof));
    }
  };
  j->a = std::make_shared<pipe_state>(ex, "a", window, chunk, std::move(ca));
  j->b = std::make_shared<pipe_state>(ex, "b", window, chunk, std::move(cb));
  return j;
}

bytes pattern(std::size_t n) {
  bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<byte>(i * 7 + i / 251);
  return b;
}

}  // namespace

TEST_CASE("pipe: a megabyte each way arrives in order, within the window") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto j = join(io, 64 * 1024, 4096);
    pipe_stream a(j->a), b(j->b);
    const auto out = pattern(1 << 20);
    bytes got_b(out.size()), got_a(out.size());
    bool done_ab = false, done_ba = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto [ec, n] = co_await asio::async_read(b, asio::buffer(got_b),
                                                   asio::as_tuple(asio::use_awaitable));
          CHECK_FALSE(ec);
          CHECK(n == out.size());
          done_ab = true;
        },
        asio::detached);
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto [ec, n] = co_await asio::async_read(a, asio::buffer(got_a),
                                                   asio::as_tuple(asio::use_awaitable));
          CHECK_FALSE(ec);
          done_ba = true;
        },
        asio::detached);
    auto [e1, n1] =
        co_await asio::async_write(a, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(e1);
    auto [e2, n2] =
        co_await asio::async_write(b, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(e2);
    CHECK(co_await test::eventually([&] { return done_ab && done_ba; }));
    CHECK(got_b == out);
    CHECK(got_a == out);
    // Never more than a window in the carrier.
    CHECK(j->max_in_flight_ab <= 64 * 1024);
    CHECK(j->max_in_flight_ab > 0);
  });
}

TEST_CASE("pipe: a writer waits for credit until the reader reads") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto j = join(io, 8192, 1024);
    pipe_stream a(j->a), b(j->b);
    const auto out = pattern(32 * 1024);
    bool written = false;
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          auto [ec, n] =
              co_await asio::async_write(a, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
          CHECK_FALSE(ec);
          written = true;
        },
        asio::detached);
    co_await test::sleep_for(milliseconds(50));
    CHECK_FALSE(written);  // 8 KiB out, then no credit: nobody reads
    CHECK(j->max_in_flight_ab <= 8192);
    bytes got(out.size());
    auto [ec, n] =
        co_await asio::async_read(b, asio::buffer(got), asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(ec);
    CHECK(got == out);
    CHECK(co_await test::eventually([&] { return written; }));
  });
}

TEST_CASE("pipe: closing one end gives the other what was sent, then eof") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto j = join(io, 65536, 4096);
    pipe_stream a(j->a), b(j->b);
    const auto out = pattern(10000);
    auto [e1, n1] =
        co_await asio::async_write(a, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(e1);
    co_await test::sleep_for(milliseconds(5));  // the carrier delivers
    a.close();
    CHECK_FALSE(a.is_open());
    bytes got(out.size());
    auto [e2, n2] =
        co_await asio::async_read(b, asio::buffer(got), asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(e2);
    CHECK(got == out);
    CHECK(co_await test::eventually([&] { return j->a_closed; }));
    std::array<byte, 10> more{};
    auto [e3, n3] =
        co_await b.async_read_some(asio::buffer(more), asio::as_tuple(asio::use_awaitable));
    CHECK(e3 == asio::error::eof);
    // Writing to an ended pipe fails at once.
    auto [e4, n4] =
        co_await b.async_write_some(asio::buffer(out), asio::as_tuple(asio::use_awaitable));
    CHECK(e4 == asio::error::broken_pipe);
    // A closed handle's operations fail.
    auto [e5, n5] =
        co_await a.async_read_some(asio::buffer(more), asio::as_tuple(asio::use_awaitable));
    CHECK(e5);
  });
}

TEST_CASE("pipe: a carrier that delivers past the window is refused") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto st =
        std::make_shared<pipe_state>(io.get_executor(), "x", 1000, 100, pipe_state::carrier{});
    pipe_stream s(st);
    CHECK(st->deliver(bytes(600, 1)));
    CHECK(st->deliver(bytes(400, 1)));
    CHECK_FALSE(st->deliver(bytes(1, 1)));
    CHECK(st->ended());
    std::array<byte, 2000> buf{};
    // What came within the window is still read, then the error.
    auto [e1, n1] =
        co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(e1);
    CHECK(n1 == 1000);
    auto [e2, n2] =
        co_await s.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
    CHECK(e2 == errc::protocol_violation);
  });
}

TEST_CASE("pipe: a read and a write are cancelled by a deadline") {
  test::run([](asio::io_context& io) -> asio::awaitable<void> {
    auto j = join(io, 1024, 512);
    pipe_stream a(j->a), b(j->b);
    auto reading = [&]() -> asio::awaitable<result<std::size_t>> {
      std::array<byte, 10> buf{};
      auto [ec, n] =
          co_await b.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return ec;
      co_return n;
    };
    auto r = co_await with_timeout(reading(), milliseconds(0));
    CHECK(r.error() == errc::timed_out);
    // A write with no credit left waits, and is cancelled the same way.
    const auto out = pattern(1024);
    auto [e, n] =
        co_await asio::async_write(a, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(e);
    auto writing = [&]() -> asio::awaitable<result<std::size_t>> {
      auto [ec, n2] =
          co_await a.async_write_some(asio::buffer(out), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return ec;
      co_return n2;
    };
    auto w = co_await with_timeout(writing(), milliseconds(10));
    CHECK(w.error() == errc::timed_out);
    // The pipe still works afterwards.
    bytes got(out.size());
    auto [e2, n3] =
        co_await asio::async_read(b, asio::buffer(got), asio::as_tuple(asio::use_awaitable));
    CHECK_FALSE(e2);
    CHECK(got == out);
  });
}
