/// \file
/// Contact gossip, without I/O: connected peers exchange signed contact
/// records (bootstrap/contact_record.hpp), so a node learns of peers several
/// hops away with no directory. Time comes in as an argument (Unix seconds)
/// and randomness from a seeded generator, so every rule is tested exactly
/// and a thousand nodes run in one process (tests/unit/bootstrap/
/// gossip_sim_test.cpp).
///
/// Rules:
/// - Records are kept by XOR distance from our id, as Kademlia keeps its
///   contacts: at most `bucket_size` per bucket (the bucket is the number of
///   leading bits the two ids share), at most `max_records` in all, at most
///   `per_source` taught by one peer and at most `per_group` whose first
///   endpoint lies in one IPv4 /16 (IPv6 /32). A record over a bound is
///   refused, not swapped in: a flood churns nothing that is already kept.
/// - A record is parsed, then its signature verified, before it is kept;
///   a newer record from the same id replaces the kept one (the kept one's
///   slot and source stay), an older or equal one is ignored. A record
///   older than `max_age` is dropped. Bytes already judged (kept, refused or
///   forged) are remembered by hash, up to `seen_memory`, and not judged
///   again.
/// - Nothing is forwarded unproven: what we send (pushes and answers) is
///   our own record and records whose endpoint we dialled back (an
///   authenticated connection to the record's id at the record's TCP
///   endpoint). The dial-back is the caller's: dial_backs() says whom,
///   dial_back_done() what happened, and only then may the caller put the
///   peer in the bootstrap cache (whose own per-/16 and per-source bounds
///   apply).
/// - From each peer at most `messages_per_minute` messages (burst of the same
///   size) and `records_per_message` records per message; more are dropped and
///   counted, and a malformed message or a forged record is a violation the
///   caller reports (and may disconnect the peer for).
///
/// Messages (the body of a gossip record in the message layer):
///   push:  u8 1 | u8 flags (bit 0: answer with a push) | u8 n | n x (u16 len | record)
///   find:  u8 2 | u32 query | u8 mode (0 a sample, 1 near a target)
///          | [target (32) when near] | u8 count
///   found: u8 3 | u32 query | u8 n | n x (u16 len | record)
#pragma once

#include "bootstrap/contact_record.hpp"

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace crust::bootstrap {

struct gossip_limits {
  std::size_t bucket_size = 16;
  std::size_t max_records = 512;
  std::size_t per_source = 32;
  std::size_t per_group = 16;
  std::size_t records_per_message = 16;  ///< in a push or an answer, ours included
  std::size_t max_find_count = 16;       ///< records one find may ask for
  unsigned messages_per_minute = 30;     ///< from one peer, whatever the kind
  std::size_t fanout = 3;                ///< peers pushed to per round
  std::size_t dial_backs_per_round = 8;  ///< what dial_backs() hands out at most
  std::int64_t max_age = 3600;           ///< seconds a record stays usable after it was issued
  std::size_t seen_memory = 4096;
};

struct gossip_entry {
  contact_record record;
  bytes wire;               ///< the record as signed
  public_id source;         ///< who taught it (its owner, when the owner pushed it)
  std::int64_t learnt = 0;  ///< when it was first kept
  bool proven = false;      ///< dialled back: its id answers at its TCP endpoint
  bool dialling = false;    ///< handed out by dial_backs(), not yet done
  unsigned failed_dials = 0;
};

/// What the engine counted, for status and the simulation's figures.
struct gossip_figures {
  std::uint64_t messages_in = 0, messages_out = 0;
  std::uint64_t records_in = 0, records_out = 0;
  std::uint64_t kept = 0, replaced = 0, ignored_older = 0, repeats = 0;
  std::uint64_t refused_bucket = 0, refused_source = 0, refused_group = 0, refused_full = 0;
  std::uint64_t expired = 0, wrong_network = 0, malformed = 0, forged = 0;
  std::uint64_t rate_limited = 0, over_count = 0;
  std::uint64_t signatures_checked = 0;
  std::uint64_t dial_backs_ok = 0, dial_backs_failed = 0;
};

class gossip {
 public:
  using rng = std::mt19937_64;
  /// Checks a parsed record's signature; the default is contact_record::verify.
  using verifier = std::function<bool(const contact_record&, byte_span wire)>;

  gossip(public_id self, std::string network_name, gossip_limits limits = {},
         std::uint64_t seed = std::random_device{}());

  /// What we advertise in every push; replaced when our endpoints change.
  void set_own(const contact_record& own);
  const contact_record* own() const noexcept { return own_ ? &own_->record : nullptr; }
  void set_verifier(verifier v) { verify_ = std::move(v); }
  const gossip_limits& limits() const noexcept { return limits_; }

  /// What on_message() asks of the caller.
  struct reaction {
    std::vector<bytes> replies;  ///< to send back to the sender, in order
    /// A found answer: its query id and the verified records it held (kept or not).
    std::optional<std::uint32_t> answer_to;
    std::vector<contact_record> found;
    /// Set when the message broke the rules (malformed, forged records,
    /// over the rate or the counts): the caller reports the peer.
    error_code violation;
  };
  /// A gossip message from `from`, a peer on an authenticated connection.
  reaction on_message(const public_id& from, byte_span body, std::int64_t now);
  /// Learns one record (its wire form) as taught by `from`. Returns whether
  /// it is kept now (new or newer). Errors are counted; a forged or
  /// malformed record also sets `violation`.
  bool learn(byte_span wire, const public_id& from, std::int64_t now,
             error_code* violation = nullptr);

  /// One round: pushes (answer wanted) to up to `fanout` of `partners`,
  /// chosen at random, each with our record and a random sample of proven
  /// ones. Also forgets expired records and idle rate buckets.
  std::vector<std::pair<public_id, bytes>> round(std::span<const public_id> partners,
                                                 std::int64_t now);
  /// A push for one peer (answer wanted or not), as round() makes them:
  /// what a node sends a peer that just connected.
  bytes make_push(bool answer_wanted);
  static bytes make_find_near(std::uint32_t query, const secure::key32& target, std::size_t count);
  static bytes make_find_sample(std::uint32_t query, std::size_t count);

  /// Up to dial_backs_per_round unproven records not being dialled, oldest
  /// first; each is now being dialled until dial_back_done().
  std::vector<contact_record> dial_backs();
  /// The outcome of a dial-back: proven, or a failure (a record that fails
  /// twice is forgotten). Returns the entry (for the caller's cache) when proven.
  const gossip_entry* dial_back_done(const public_id& id, bool ok);
  /// An id we reached at its record's TCP endpoint some other way (a dial
  /// of ours): proven without a dial-back.
  void mark_proven(const public_id& id);

  /// The `count` kept records nearest `target` by XOR distance, nearest
  /// first; only proven ones unless `any`. With `with_own`, our record
  /// competes too: that is what a find near `target` is answered with.
  std::vector<contact_record> near(const secure::key32& target, std::size_t count, bool any = false,
                                   bool with_own = false) const;
  /// Up to `count` proven records chosen at random.
  std::vector<contact_record> sample(std::size_t count);
  const gossip_entry* find(const public_id& id) const;
  const std::map<public_id, gossip_entry>& entries() const noexcept { return entries_; }
  void forget(const public_id& id);
  const gossip_figures& figures() const noexcept { return figures_; }

  /// The bucket of `other` seen from `self`: leading bits they share (0..256).
  static unsigned bucket_of(const public_id& self, const public_id& other) noexcept;

 private:
  struct rate_bucket {
    double tokens = 0;
    std::int64_t last = 0;
  };
  struct counts {
    std::size_t total = 0;
    std::map<unsigned, std::size_t> bucket;
    std::map<public_id, std::size_t> source;
    std::map<std::string, std::size_t> group;
  };
  bool allow(const public_id& from, std::int64_t now);
  // The record if its signature is known good (checked now or before);
  // keeps it when new or newer and within the bounds (`kept` says so).
  std::optional<contact_record> judge(byte_span wire, const public_id& from, std::int64_t now,
                                      error_code* violation, bool* kept);
  bool fits(const contact_record& r, const public_id& from);
  void count(const gossip_entry& e, int delta);
  void erase(std::map<public_id, gossip_entry>::iterator it);
  void remember(std::string digest, bool good);
  std::vector<const gossip_entry*> proven_sample(std::size_t count);
  std::vector<const gossip_entry*> nearest(const secure::key32& target, std::size_t count, bool any,
                                           bool with_own) const;
  void expire(std::int64_t now);

  public_id self_;
  std::string network_;
  gossip_limits limits_;
  rng rng_;
  verifier verify_;
  std::optional<gossip_entry> own_;
  std::map<public_id, gossip_entry> entries_;
  std::map<public_id, rate_bucket> rates_;
  counts counts_;
  // Digests of records already judged (true: the signature held), and the
  // order they came in, a ring of seen_memory.
  std::unordered_map<std::string, bool> seen_;
  std::vector<std::string> seen_order_;
  std::size_t seen_next_ = 0;
  gossip_figures figures_;
};

/// An iterative lookup for an id (Kademlia's, with parallelism `alpha`):
/// ask the `k` nearest records known not yet asked, learn nearer ones from
/// their answers, until the target's own record is known or no one nearer
/// is left to ask. No I/O: the caller sends the finds and feeds the answers.
class gossip_lookup {
 public:
  /// Records of the target issued at or before `newer_than` are ignored:
  /// a lookup for a fresher record than one that no longer works.
  explicit gossip_lookup(const public_id& target, std::size_t alpha = 3, std::size_t k = 8,
                         std::int64_t newer_than = std::numeric_limits<std::int64_t>::min())
      : target_(target), alpha_(alpha), k_(k), newer_than_(newer_than) {}

  void add(const contact_record& r);
  /// Whom to ask now (at most alpha in flight); each is now in flight.
  std::vector<contact_record> next();
  void answered(const public_id& who, const std::vector<contact_record>& found);
  void failed(const public_id& who);
  /// The target's record, once some answer (or add()) held it.
  const std::optional<contact_record>& result() const noexcept { return result_; }
  /// Found, or nothing left to ask and nothing in flight.
  bool done() const;
  /// Up to `count` records known, nearest first, those that failed left out.
  std::vector<contact_record> nearest(std::size_t count) const;
  std::size_t asked() const noexcept { return asked_; }

 private:
  struct candidate {
    contact_record record;
    secure::key32 distance{};  // from the target
    enum class state { fresh, in_flight, answered, failed } st = state::fresh;
  };
  // How many of known_, from the front, hold the k nearest not failed.
  std::size_t window() const;
  public_id target_;
  std::size_t alpha_, k_;
  std::int64_t newer_than_;
  std::vector<candidate> known_;  // nearest first
  std::optional<contact_record> result_;
  std::size_t asked_ = 0;
};

}  // namespace crust::bootstrap
