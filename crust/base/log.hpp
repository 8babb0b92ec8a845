/// \file
/// The logging hook. The library never writes to stdout or stderr itself: it
/// hands records to the handler the application installs (none by default).
#pragma once

#include <functional>
#include <sstream>
#include <string>
#include <string_view>

namespace crust {

enum class log_level { trace = 0, debug, info, warn, error, off };

using log_handler =
    std::function<void(log_level, std::string_view component, std::string_view msg)>;

/// Replaces the process-wide handler; pass {} to silence. Records below
/// `min_level` are not even formatted.
void set_log_handler(log_handler handler, log_level min_level = log_level::info);
bool log_enabled(log_level level) noexcept;
void log_write(log_level level, std::string_view component, const std::string& msg);
std::string_view to_string(log_level level) noexcept;

}  // namespace crust

#define CRUST_LOG(level, component, expr)                                             \
  do {                                                                                \
    if (::crust::log_enabled(::crust::log_level::level)) {                            \
      std::ostringstream crust_log_os_;                                               \
      crust_log_os_ << expr; /* a stream chain: NOLINT(bugprone-macro-parentheses) */ \
      ::crust::log_write(::crust::log_level::level, component, crust_log_os_.str());  \
    }                                                                                 \
  } while (false)
