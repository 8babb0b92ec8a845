#include "bootstrap/cache.hpp"

#include "crust/base/file.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cstdio>
#include <map>

namespace crust::bootstrap {

namespace json = boost::json;
namespace ip = boost::asio::ip;

namespace {
constexpr std::string_view cache_format = "crust-bootstrap-cache";
constexpr std::int64_t cache_version = 1;

bool exempt(const ip::address& a) {
  if (a.is_loopback() || a.is_unspecified()) return true;
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    return b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) || (b[0] == 192 && b[1] == 168) ||
           (b[0] == 169 && b[1] == 254);
  }
  const auto v6 = a.to_v6();
  const auto b = v6.to_bytes();
  return v6.is_link_local() || (b[0] & 0xfe) == 0xfc;  // fe80::/10, fc00::/7
}

}  // namespace

std::string address_group(const ip::address& raw) {
  const auto a = transport::canonical(raw);
  if (exempt(a)) return {};
  char buf[32];
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    std::snprintf(buf, sizeof buf, "v4:%u.%u", b[0], b[1]);
  } else {
    const auto b = a.to_v6().to_bytes();
    std::snprintf(buf, sizeof buf, "v6:%02x%02x:%02x%02x", b[0], b[1], b[2], b[3]);
  }
  return buf;
}

bool cache::is_stale(const cache_entry& e, std::int64_t now) const noexcept {
  return now - e.last_success > limits_.ttl_seconds;
}

void cache::insert_front(cache_entry e) {
  const auto group = address_group(e.endpoint.address());
  const bool informed = e.source != direct_source;
  // Over a bound, the least recent entry of the same group (or source) makes room.
  auto evict_last_where = [this](auto pred, std::size_t bound) {
    std::size_t n = 0;
    for (const auto& x : entries_) n += pred(x) ? 1 : 0;
    for (auto it = entries_.rbegin(); n >= bound && it != entries_.rend();) {
      if (pred(*it)) {
        it = std::reverse_iterator(entries_.erase(std::next(it).base()));
        --n;
      } else {
        ++it;
      }
    }
  };
  if (!group.empty())
    evict_last_where(
        [&](const cache_entry& x) { return address_group(x.endpoint.address()) == group; },
        limits_.per_group);
  if (informed)
    evict_last_where([&](const cache_entry& x) { return x.source == e.source; },
                     limits_.per_source);
  entries_.push_front(std::move(e));
  while (entries_.size() > limits_.capacity) entries_.pop_back();
}

bool cache::add(cache_entry e) {
  const auto& ep = e.endpoint;
  if (ep.port() == 0 || ep.address().is_unspecified() || ep.address().is_multicast()) return false;
  // One entry per peer, and one peer per endpoint: the newest word wins.
  std::erase_if(entries_,
                [&](const cache_entry& x) { return x.key.id == e.key.id || x.endpoint == ep; });
  insert_front(std::move(e));
  return true;
}

bool cache::record_success(const peer_key& key, const transport::tcp_endpoint& ep, std::int64_t now,
                           std::string_view source) {
  return add(cache_entry{key, ep, now, 0, std::string(source)});
}

void cache::set_limits(cache_limits limits) {
  limits_ = limits;
  auto old = std::move(entries_);
  entries_.clear();
  for (auto it = old.rbegin(); it != old.rend(); ++it) add(std::move(*it));
}

bool cache::record_failure(const public_id& id, std::int64_t now) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const cache_entry& x) { return x.key.id == id; });
  if (it == entries_.end()) return false;
  ++it->failures;
  if (is_stale(*it, now) || it->failures >= limits_.max_failures) {
    entries_.erase(it);
    return true;
  }
  return false;
}

bool cache::remove(const public_id& id) {
  return std::erase_if(entries_, [&](const cache_entry& x) { return x.key.id == id; }) > 0;
}

std::vector<cache_entry> cache::candidates(std::int64_t now) const {
  std::vector<cache_entry> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_)
    if (!is_stale(e, now)) out.push_back(e);
  for (const auto& e : entries_)
    if (is_stale(e, now)) out.push_back(e);
  return out;
}

std::string cache::to_json(std::string_view network_name) const {
  json::object o;
  o["format"] = cache_format;
  o["version"] = cache_version;
  o["network"] = network_name;
  json::array peers;
  for (const auto& e : entries_) {
    json::object p;
    p["key"] = e.key.to_string();
    p["endpoint"] = transport::to_string(e.endpoint);
    p["last_success"] = e.last_success;
    p["failures"] = e.failures;
    p["source"] = e.source;
    peers.push_back(std::move(p));
  }
  o["peers"] = std::move(peers);
  return json::serialize(o) + "\n";
}

cache_load_report cache::parse(std::string_view text, std::string_view network_name) {
  entries_.clear();
  cache_load_report r;
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec);
  if (ec) {
    r.problem = "not valid JSON (" + ec.message() + ")";
    return r;
  }
  const auto* o = doc.if_object();
  if (!o) {
    r.problem = "not a bootstrap cache (the top level is not an object)";
    return r;
  }
  const auto* format = o->if_contains("format");
  if (!format || !format->is_string() || format->as_string() != cache_format) {
    r.problem = "not a bootstrap cache (no \"format\": \"crust-bootstrap-cache\")";
    return r;
  }
  const auto* version = o->if_contains("version");
  if (!version || !version->is_int64() || version->as_int64() != cache_version) {
    r.problem = "a bootstrap cache of an unknown version";
    return r;
  }
  const auto* network = o->if_contains("network");
  if (!network || !network->is_string() || network->as_string() != network_name) {
    r.problem = "a bootstrap cache of another network";
    return r;
  }
  const auto* peers = o->if_contains("peers");
  if (!peers || !peers->is_array()) {
    r.problem = "a bootstrap cache without a \"peers\" array";
    return r;
  }
  // File order is most recent first; insert oldest first so every bound
  // applies exactly as it did when the entries were recorded.
  std::vector<cache_entry> ok;
  for (const auto& v : peers->as_array()) {
    const auto* p = v.if_object();
    const json::value *key = nullptr, *ep = nullptr, *last = nullptr, *fails = nullptr,
                      *source = nullptr;
    if (p) {
      key = p->if_contains("key");
      ep = p->if_contains("endpoint");
      last = p->if_contains("last_success");
      fails = p->if_contains("failures");
      source = p->if_contains("source");
    }
    result<peer_key> k = make_error_code(errc::bad_config);
    result<transport::tcp_endpoint> e = make_error_code(errc::bad_config);
    if (key && key->is_string()) k = peer_key::parse(key->as_string());
    if (ep && ep->is_string()) e = transport::parse_endpoint(ep->as_string());
    const bool good = k && e && last && last->is_int64() && fails &&
                      (fails->is_int64() || fails->is_uint64()) && source && source->is_string() &&
                      !source->as_string().empty() && source->as_string().size() <= 128;
    if (!good) {
      ++r.skipped;
      continue;
    }
    const auto n = fails->to_number<std::int64_t>();
    cache_entry entry{*k, *e, last->as_int64(),
                      static_cast<unsigned>(std::clamp<std::int64_t>(n, 0, 1000)),
                      std::string(source->as_string())};
    ok.push_back(std::move(entry));
  }
  std::size_t usable = 0;
  for (auto it = ok.rbegin(); it != ok.rend(); ++it) {
    if (add(std::move(*it)))
      ++usable;
    else
      ++r.skipped;
  }
  r.loaded = entries_.size();
  r.skipped += usable - entries_.size();  // duplicates and entries over a bound
  if (r.skipped > 0 && r.problem.empty())
    r.problem = std::to_string(r.skipped) + " malformed or surplus entries skipped";
  return r;
}

cache_load_report cache::load(const std::filesystem::path& path, std::string_view network_name) {
  auto text = read_file(path);
  if (!text) {
    entries_.clear();
    cache_load_report r;
    if (text.error() != boost::system::errc::no_such_file_or_directory)
      r.problem = "cannot be read (" + text.error().message() + ")";
    return r;
  }
  return parse(*text, network_name);
}

result<void> cache::save(const std::filesystem::path& path, std::string_view network_name) const {
  return write_file_atomically(path, to_json(network_name), 0600);
}

}  // namespace crust::bootstrap
