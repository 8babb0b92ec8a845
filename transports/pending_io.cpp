#include "transports/pending_io.hpp"

#include <boost/asio/append.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>

namespace crust::transport {

bool take_op(std::optional<pending_op>& slot, pending_op op, bool refused,
             const asio::any_io_executor& ex, std::function<void()> on_cancel) {
  if (slot || refused) {
    // One operation of a kind at a time; none after close.
    std::optional<pending_op> turned_down(std::move(op));
    complete_op(turned_down, ex, make_error_code(asio::error::operation_not_supported), 0);
    return false;
  }
  auto cancel = asio::get_associated_cancellation_slot(op.handler);
  slot.emplace(std::move(op));
  if (cancel.is_connected())
    cancel.assign([f = std::move(on_cancel)](asio::cancellation_type) { f(); });
  return true;
}

void complete_op(std::optional<pending_op>& slot, const asio::any_io_executor& ex, error_code ec,
                 std::size_t n) {
  auto h = std::move(slot->handler);
  slot.reset();
  asio::get_associated_cancellation_slot(h).clear();
  asio::post(ex, asio::append(std::move(h), ec, n));
}

}  // namespace crust::transport
