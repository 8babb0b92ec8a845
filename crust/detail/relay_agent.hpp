// The service's part in introductions and relay circuits (nat/relay.hpp
// has the records and the relay's switch): as the relay R it passes
// introductions on and joins circuits; as A it introduces itself to a
// peer through R, punches, and falls back to a circuit through R, then
// keeps trying a direct path that replaces the circuit; as B it answers
// introductions and accepts circuits.
#pragma once

#include "crust/base/notifier.hpp"
#include "crust/base/task_group.hpp"
#include "crust/config.hpp"
#include "crust/events.hpp"
#include "crust/service.hpp"
#include "nat/connection_info.hpp"
#include "nat/relay.hpp"
#include "transports/pipe.hpp"
#include "transports/stream.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <map>
#include <memory>
#include <optional>

namespace crust::detail {

// What the agent needs from the service. The service outlives the agent's
// coroutines (it awaits them in stop()).
class relay_host {
 public:
  virtual ~relay_host() = default;
  // Queues a relay record (nat::relay::encode) on the connection to `to`;
  // false if there is none.
  virtual bool send_relay(const public_id& to, bytes record) = 0;
  // The registered connection to `id`; `direct_only`: not a relayed one.
  virtual std::optional<peer_info> peer(const public_id& id, bool direct_only) const = 0;
  // A circuit a peer opened to us: the inbound handshake runs on it.
  virtual void accept_relayed(transport::stream s) = 0;
  // Our end of a circuit we opened through `via`: Noise XK to `key` (XX
  // without one), hello, admission, registration, as connect() does.
  virtual boost::asio::awaitable<result<peer_info>> dial_relayed(transport::stream s,
                                                                 std::optional<peer_key> key,
                                                                 public_id via) = 0;
  virtual boost::asio::awaitable<result<nat::private_connection_info>> prepare_info() = 0;
  virtual boost::asio::awaitable<result<peer_info>> rendezvous(nat::private_connection_info mine,
                                                               nat::connection_info theirs,
                                                               rendezvous_options o) = 0;
  // Records on the registered connection to `id` how long reaching it
  // took; its info, or nullopt if it is gone.
  virtual std::optional<peer_info> set_connect_time(const public_id& id, duration took) = 0;
  virtual bool refused(const public_id& id) const = 0;  // blacklisted
  virtual bool stopping() const = 0;
  // Held by the agent's background coroutines until they have finished.
  virtual std::shared_ptr<void> keep_alive() = 0;
};

class relay_agent {
 public:
  relay_agent(const boost::asio::any_io_executor& ex, relay_host& host, const config& cfg,
              public_id me);
  relay_agent(const relay_agent&) = delete;
  relay_agent& operator=(const relay_agent&) = delete;

  // A relay record (its body) from the connected peer `from`.
  void on_record(const public_id& from, byte_span body);
  // The connection to `peer` ended (not replaced).
  void on_peer_gone(const public_id& peer);
  // New limits and relaying on or off (service::reload).
  void reconfigure(const config& cfg);

  // A's side: see service::connect_through.
  boost::asio::awaitable<result<peer_info>> connect_through(public_id via, public_id target,
                                                            introduction_options o);
  // Ends every circuit and waiter, and the background work; awaits it.
  boost::asio::awaitable<void> stop();
  void stop_now();

  const nat::relay::relay_switch::totals& relay_stats() const { return switch_.stats(); }

 private:
  struct circuit_end {
    std::shared_ptr<transport::pipe_state> pipe;
    bool accepted = false;
    bool closed = false;
    nat::relay::reason why = nat::relay::reason::normal;
    std::string text;
    std::unique_ptr<notifier> changed;
  };
  struct intro_wait {
    explicit intro_wait(const boost::asio::any_io_executor& ex) : wake(ex) {}
    public_id via;
    notifier wake;
    std::optional<nat::relay::introduce_answer> answer;
    std::optional<nat::relay::introduce_failed> failed;
  };
  struct sync_wait {
    explicit sync_wait(const boost::asio::any_io_executor& ex) : wake(ex) {}
    public_id via;
    notifier wake;
    bool synced = false;
  };
  using circuit_key = std::pair<public_id, nat::relay::circuit_ref>;

  void send(const public_id& to, const nat::relay::record& r);
  void on_endpoint_record(const public_id& from, nat::relay::record r);
  std::shared_ptr<circuit_end> new_circuit(const public_id& via, nat::relay::circuit_ref ref);
  void end_circuit(const circuit_key& k, nat::relay::reason why, std::string text, bool tell);

  // B: answer an introduction (through `via`, or from the peer itself).
  boost::asio::awaitable<void> answer_introduction(public_id via, public_id origin, bytes info,
                                                   bool direct);
  // A: the exchange of infos through `via` (the peer itself for a direct
  // exchange over a relayed connection), the sync, and the wait.
  struct exchanged {
    nat::private_connection_info mine;
    nat::connection_info theirs;
  };
  boost::asio::awaitable<result<exchanged>> exchange(public_id via, public_id target,
                                                     duration limit);
  boost::asio::awaitable<result<peer_info>> relay_dial(public_id via, public_id target,
                                                       std::optional<peer_key> key, duration limit);
  // A, once relayed: retries a direct path now and then while relayed.
  boost::asio::awaitable<void> upgrade(public_id target, introduction_options o);

  boost::asio::any_io_executor ex_;
  relay_host& host_;
  public_id me_;
  std::string network_;
  duration handshake_timeout_;
  nat::relay::relay_switch switch_;
  std::map<circuit_key, std::shared_ptr<circuit_end>> circuits_;
  std::map<public_id, std::shared_ptr<intro_wait>> intros_;  // by target
  std::map<public_id, std::shared_ptr<sync_wait>> syncs_;    // by origin
  std::uint32_t next_circuit_ = 1;
  task_group tasks_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool stopped_ = false;
};

}  // namespace crust::detail
