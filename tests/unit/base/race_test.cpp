#include "crust/base/race.hpp"
#include "support/co_test.hpp"

using namespace crust;
namespace asio = boost::asio;

namespace {

// An attempt that sleeps `d` and then returns `v` (or fails when v < 0).
attempt<int> after(duration d, int v, int* finished = nullptr) {
  return [d, v, finished]() -> asio::awaitable<result<int>> {
    timer t(co_await asio::this_coro::executor);
    t.expires_after(d);
    auto [ec] = co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
    if (finished) ++*finished;
    if (ec) co_return make_error_code(errc::cancelled);
    if (v < 0) co_return make_error_code(errc::handshake_failed);
    co_return v;
  };
}

}  // namespace

TEST_CASE("first_success: the first success wins and losers are cancelled and awaited") {
  test::run([](asio::io_context&) -> asio::awaitable<void> {
    int finished = 0;
    std::vector<attempt<int>> a{after(seconds(5), 1, &finished),
                                after(milliseconds(10), 2, &finished),
                                after(seconds(5), 3, &finished)};
    auto t0 = clock::now();
    auto out = co_await first_success(std::move(a), duration::zero());
    CHECK(clock::now() - t0 < seconds(4));
    REQUIRE(out.value);
    CHECK(*out.value == 2);
    CHECK(out.winner == 1);
    CHECK(finished == 3);  // every attempt ended before first_success returned
    CHECK(out.errors[0] == errc::cancelled);
    CHECK(!out.errors[1]);
  });
}

TEST_CASE("first_success: a returned error is not a win; every error is kept") {
  test::run([](asio::io_context&) -> asio::awaitable<void> {
    std::vector<attempt<int>> a{after(milliseconds(1), -1), after(milliseconds(20), 7)};
    auto out = co_await first_success(std::move(a), duration::zero());
    REQUIRE(out.value);
    CHECK(*out.value == 7);
    CHECK(out.errors[0] == errc::handshake_failed);

    std::vector<attempt<int>> b{after(milliseconds(1), -1), after(milliseconds(2), -1)};
    auto none = co_await first_success(std::move(b), duration::zero());
    CHECK(none.value.error() == errc::all_attempts_failed);
    CHECK(none.errors[0] == errc::handshake_failed);
    CHECK(none.errors[1] == errc::handshake_failed);
  });
}

TEST_CASE("first_success: staggered attempts start late unless an earlier one fails") {
  test::run([](asio::io_context&) -> asio::awaitable<void> {
    // Attempt 0 fails at once, so attempt 1 starts without waiting its 10 s stagger.
    std::vector<attempt<int>> a{after(milliseconds(1), -1), after(milliseconds(1), 5)};
    auto t0 = clock::now();
    auto out = co_await first_success(std::move(a), seconds(10));
    REQUIRE(out.value);
    CHECK(*out.value == 5);
    CHECK(clock::now() - t0 < seconds(5));
    // A quick winner means the staggered attempt never starts.
    int finished = 0;
    std::vector<attempt<int>> b{after(milliseconds(1), 1, &finished),
                                after(milliseconds(1), 2, &finished)};
    auto out2 = co_await first_success(std::move(b), seconds(10));
    CHECK(*out2.value == 1);
    CHECK(finished == 1);
    CHECK(out2.errors[1] == errc::cancelled);
  });
}

TEST_CASE("first_success: never more than max_in_flight attempts at once") {
  test::run([](asio::io_context&) -> asio::awaitable<void> {
    int running = 0, most = 0, ran = 0;
    auto counted = [&](int v) -> attempt<int> {
      return [&, v]() -> asio::awaitable<result<int>> {
        ++ran;
        most = std::max(most, ++running);
        timer t(co_await asio::this_coro::executor);
        t.expires_after(milliseconds(5));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        --running;
        if (v < 0) co_return make_error_code(errc::handshake_failed);
        co_return v;
      };
    };
    std::vector<attempt<int>> a;
    for (int i = 0; i < 9; ++i) a.push_back(counted(-1));
    a.push_back(counted(42));
    auto out = co_await first_success(std::move(a), duration::zero(), 3);
    REQUIRE(out.value);
    CHECK(*out.value == 42);
    CHECK(ran == 10);  // every failure let the next one in
    CHECK(most == 3);  // but never more than three at a time
    CHECK(running == 0);
  });
}

TEST_CASE("first_success and with_timeout: cancelled by a 0 ms timer, they return promptly") {
  test::run([](asio::io_context&) -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    timer zero(co_await asio::this_coro::executor);
    zero.expires_after(duration::zero());
    std::vector<attempt<int>> a{after(seconds(30), 1), after(seconds(30), 2)};
    auto t0 = clock::now();
    auto r = co_await (first_success(std::move(a), duration::zero()) ||
                       zero.async_wait(asio::as_tuple(asio::use_awaitable)));
    CHECK(r.index() == 1);
    CHECK(clock::now() - t0 < seconds(5));

    // The std::function must outlive the coroutine it starts (captures live in it).
    auto slow_fn = after(seconds(30), 1);
    auto slow = slow_fn();
    auto t1 = clock::now();
    auto w = co_await with_timeout(std::move(slow), milliseconds(10));
    CHECK(w.error() == errc::timed_out);
    CHECK(clock::now() - t1 < seconds(5));
  });
}
