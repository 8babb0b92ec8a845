// The bootstrap cache: peers this node reached directly, most recent first,
// bounded, persisted as JSON. No I/O except load/save, and time comes in as
// an argument (seconds since the Unix epoch, because entries outlive the
// process), so every rule here is tested exactly.
//
// Rules:
// - record_success() puts a peer at the front (or moves it there).
// - At most `capacity` entries; the least recently reached goes first.
// - Eclipse resistance: at most `per_group` entries share an IPv4 /16 or an
//   IPv6 /32 (loopback, private and link-local addresses are exempt: they
//   are the LAN), and at most `per_source` entries come from one informant
//   (anything but "direct"). A newcomer over a bound replaces the least
//   recent entry of its group or source, so a flood only churns its own
//   share.
// - An entry not reached for `ttl` is stale: candidates() lists it after the
//   fresh ones, and it is dropped at its first failed dial. A fresh entry is
//   dropped after `max_failures` failed dials in a row.
#pragma once

#include "crust/secure/identity.hpp"
#include "transports/endpoint.hpp"

#include <cstdint>
#include <deque>
#include <filesystem>
#include <string>
#include <vector>

namespace crust::bootstrap {

inline constexpr std::string_view direct_source = "direct";

struct cache_limits {
  std::size_t capacity = 200;
  std::size_t per_group = 8;
  std::size_t per_source = 16;
  std::int64_t ttl_seconds = 7 * 24 * 3600;
  unsigned max_failures = 3;
};

struct cache_entry {
  peer_key key;
  transport::tcp_endpoint endpoint;
  std::int64_t last_success = 0;      // Unix seconds
  unsigned failures = 0;              // failed dials since the last success
  std::string source{direct_source};  // who told us: "direct" or an informant id
};

// What load() found, for the log: a corrupt or foreign file is not fatal.
struct cache_load_report {
  std::size_t loaded = 0;
  std::size_t skipped = 0;  // entries that were malformed or over a bound
  std::string problem;      // why the file (or part of it) was not used; "" if clean
};

class cache {
 public:
  explicit cache(cache_limits limits = {}) : limits_(limits) {}

  // Returns false when the entry was not kept (an unusable address).
  bool record_success(const peer_key& key, const transport::tcp_endpoint& ep, std::int64_t now,
                      std::string_view source = direct_source);
  // A failed dial to `id`. Returns true when the entry was dropped.
  bool record_failure(const public_id& id, std::int64_t now);
  bool remove(const public_id& id);
  void clear() { entries_.clear(); }
  // New bounds; what no longer fits goes, as if the entries had been
  // recorded again under them, oldest first.
  void set_limits(cache_limits limits);

  // Fresh entries most recent first, then stale ones most recent first.
  std::vector<cache_entry> candidates(std::int64_t now) const;
  const std::deque<cache_entry>& entries() const noexcept { return entries_; }
  std::size_t size() const noexcept { return entries_.size(); }
  bool is_stale(const cache_entry& e, std::int64_t now) const noexcept;
  const cache_limits& limits() const noexcept { return limits_; }

  // JSON text: {"format":"crust-bootstrap-cache","version":1,"network":...,
  // "peers":[{"key","endpoint","last_success","failures","source"}...]}.
  std::string to_json(std::string_view network_name) const;
  // Replaces the contents with what `text` holds. A file of another format
  // or network, or broken JSON, leaves the cache empty and says why;
  // malformed entries are skipped one by one.
  cache_load_report parse(std::string_view text, std::string_view network_name);

  // File forms. load() of a missing file is an empty cache with no problem.
  cache_load_report load(const std::filesystem::path& path, std::string_view network_name);
  result<void> save(const std::filesystem::path& path, std::string_view network_name) const;

 private:
  // Puts `e` at the front, replacing entries of the same peer or endpoint;
  // false (nothing changes) for an address no one can dial.
  bool add(cache_entry e);
  void insert_front(cache_entry e);
  cache_limits limits_;
  std::deque<cache_entry> entries_;  // most recent first
};

// The eclipse group of an address: "v4:a.b" for IPv4 /16, "v6:xxxx:xxxx"
// for IPv6 /32, "" for addresses exempt from the group bound.
std::string address_group(const boost::asio::ip::address& ip);

}  // namespace crust::bootstrap
