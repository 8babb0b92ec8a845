// Included by every test: doctest, and a printer for result<T> so
// REQUIRE(r) works for any T.
#pragma once

#include <doctest/doctest.h>

#include <boost/system/result.hpp>

#include <string>
#include <type_traits>

namespace doctest {
template <class T, class E>
struct StringMaker<boost::system::result<T, E>> {
  static String convert(const boost::system::result<T, E>& r) {
    if (r.has_value()) return "value";
    if constexpr (std::is_same_v<E, boost::system::error_code>)
      return String(("error: " + r.error().message()).c_str());
    else
      return "error";
  }
};
}  // namespace doctest
