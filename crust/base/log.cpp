#include "crust/base/log.hpp"

#include <atomic>
#include <mutex>

namespace crust {
namespace {

std::mutex handler_mutex;
log_handler current_handler;
std::atomic<int> min_enabled{static_cast<int>(log_level::off)};

}  // namespace

void set_log_handler(log_handler handler, log_level min_level) {
  std::lock_guard lock(handler_mutex);
  current_handler = std::move(handler);
  min_enabled = current_handler ? static_cast<int>(min_level) : static_cast<int>(log_level::off);
}

bool log_enabled(log_level level) noexcept {
  return static_cast<int>(level) >= min_enabled.load(std::memory_order_relaxed);
}

void log_write(log_level level, std::string_view component, const std::string& msg) {
  std::lock_guard lock(handler_mutex);
  if (current_handler) current_handler(level, component, msg);
}

std::string_view to_string(log_level level) noexcept {
  switch (level) {
    case log_level::trace:
      return "trace";
    case log_level::debug:
      return "debug";
    case log_level::info:
      return "info";
    case log_level::warn:
      return "warn";
    case log_level::error:
      return "error";
    case log_level::off:
      return "off";
  }
  return "?";
}

}  // namespace crust
