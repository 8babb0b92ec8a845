#include "crust/detail/relay_agent.hpp"

#include "crust/base/log.hpp"
#include "crust/base/race.hpp"
#include "nat/punch.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <algorithm>
#include <chrono>

namespace crust::detail {

namespace asio = boost::asio;
namespace relay = nat::relay;
using namespace std::chrono_literals;

namespace {

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

relay::limits limits_of(const config& c) {
  relay::limits l;
  l.circuits = c.relay_max_circuits;
  l.circuits_per_peer = c.relay_circuits_per_peer;
  l.circuit_bytes = c.relay_circuit_bytes;
  return l;
}

error_code error_of(relay::reason r) {
  switch (r) {
    case relay::reason::not_connected:
    case relay::reason::peer_gone:
      return make_error_code(errc::not_connected);
    case relay::reason::refused:
    case relay::reason::not_relaying:
      return make_error_code(errc::not_allowed);
    case relay::reason::quota:
      return make_error_code(errc::quota_exceeded);
    case relay::reason::timed_out:
      return make_error_code(errc::timed_out);
    case relay::reason::protocol_error:
      return make_error_code(errc::protocol_violation);
    case relay::reason::normal:
      break;
  }
  return make_error_code(errc::peer_closed);
}

// A side no punch can reach: a mapping per destination with random ports,
// and no port mapping on its gateway.
asio::awaitable<void> pause(duration d) {
  timer t(co_await asio::this_coro::executor);
  t.expires_after(d);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

}  // namespace

relay_agent::relay_agent(const asio::any_io_executor& ex, relay_host& host, const config& cfg,
                         public_id me)
    : ex_(ex),
      host_(host),
      me_(me),
      network_(cfg.network_name),
      handshake_timeout_(cfg.handshake_timeout),
      switch_(me, limits_of(cfg), cfg.enable_relay),
      tasks_(ex) {}

void relay_agent::reconfigure(const config& cfg) {
  switch_.set_limits(limits_of(cfg));
  switch_.set_relaying(cfg.enable_relay);
}

void relay_agent::send(const public_id& to, const relay::record& r) {
  (void)host_.send_relay(to, relay::encode(r));
}

void relay_agent::on_record(const public_id& from, byte_span body) {
  if (stopped_) return;
  auto r = relay::decode(body);
  if (!r) {
    CRUST_LOG(info, "relay", "a malformed relay record from " << from.short_string() << " ignored");
    return;
  }
  auto v = switch_.on_record(
      from, *r, [this](const public_id& id) { return host_.peer(id, false).has_value(); },
      clock::now());
  for (auto& o : v.out) (void)host_.send_relay(o.to, std::move(o.record));
  if (!v.handled) on_endpoint_record(from, std::move(*r));
}

void relay_agent::on_endpoint_record(const public_id& from, relay::record r) {
  if (auto* x = std::get_if<relay::introduction>(&r)) {
    tasks_.spawn(answer_introduction(from, x->origin, std::move(x->info), false), "introduction",
                 host_.keep_alive());
  } else if (auto* y = std::get_if<relay::introduce>(&r)) {
    // Only for us (the switch took the rest): a direct exchange.
    tasks_.spawn(answer_introduction(from, from, std::move(y->info), true), "introduction",
                 host_.keep_alive());
  } else if (auto* a = std::get_if<relay::introduce_answer>(&r)) {
    auto it = intros_.find(a->target);
    if (it != intros_.end() && it->second->via == from && !it->second->answer) {
      it->second->answer = std::move(*a);
      it->second->wake.notify();
    }
  } else if (auto* f = std::get_if<relay::introduce_failed>(&r)) {
    auto it = intros_.find(f->target);
    if (it != intros_.end() && it->second->via == from && !it->second->failed) {
      it->second->failed = std::move(*f);
      it->second->wake.notify();
    }
  } else if (auto* s = std::get_if<relay::synced>(&r)) {
    auto it = syncs_.find(s->origin);
    if (it != syncs_.end() && it->second->via == from) {
      it->second->synced = true;
      it->second->wake.notify();
    }
  } else if (std::holds_alternative<relay::sync>(r)) {
    // A direct exchange's sync (for us: the switch took the rest).
    auto it = syncs_.find(from);
    if (it != syncs_.end() && it->second->via == from) {
      it->second->synced = true;
      it->second->wake.notify();
    }
  } else if (auto* in = std::get_if<relay::incoming>(&r)) {
    if (host_.stopping() || host_.refused(in->origin) || circuits_.contains({from, in->circuit})) {
      send(from, relay::close{in->circuit, relay::reason::refused, "not accepted"});
      return;
    }
    auto end = new_circuit(from, in->circuit);
    end->accepted = true;
    send(from, relay::accept{in->circuit});
    CRUST_LOG(info, "relay",
              "circuit from " << in->origin.short_string() << " through " << from.short_string()
                              << " accepted");
    host_.accept_relayed(transport::stream(transport::pipe_stream(end->pipe)));
  } else {
    // accept, data, window, close on a circuit that ends here.
    relay::circuit_ref ref;
    if (auto* ac = std::get_if<relay::accept>(&r))
      ref = ac->circuit;
    else if (auto* da = std::get_if<relay::data>(&r))
      ref = da->circuit;
    else if (auto* wi = std::get_if<relay::window>(&r))
      ref = wi->circuit;
    else if (auto* cl = std::get_if<relay::close>(&r))
      ref = cl->circuit;
    else
      return;
    const circuit_key k{from, ref};
    auto it = circuits_.find(k);
    if (it == circuits_.end()) {
      // Unknown to us: say so, unless it is itself a close.
      if (!std::holds_alternative<relay::close>(r))
        send(from, relay::close{ref, relay::reason::protocol_error, "no such circuit"});
      return;
    }
    auto end = it->second;
    if (std::holds_alternative<relay::accept>(r)) {
      if (end->accepted || !ref.opened_by_me)
        return end_circuit(k, relay::reason::protocol_error, "unexpected accept", true);
      end->accepted = true;
      end->changed->notify();
    } else if (auto* da = std::get_if<relay::data>(&r)) {
      if (!end->accepted || !end->pipe->deliver(da->payload))
        end_circuit(k, relay::reason::protocol_error, "data past the window", true);
    } else if (auto* wi = std::get_if<relay::window>(&r)) {
      end->pipe->add_credit(wi->more);
    } else if (auto* cl = std::get_if<relay::close>(&r)) {
      end_circuit(k, cl->why, cl->text, false);
    }
  }
}

std::shared_ptr<relay_agent::circuit_end> relay_agent::new_circuit(const public_id& via,
                                                                   relay::circuit_ref ref) {
  auto end = std::make_shared<circuit_end>();
  end->changed = std::make_unique<notifier>(ex_);
  transport::pipe_state::carrier c;
  auto alive = std::weak_ptr<bool>(alive_);
  c.send = [this, via, ref, alive](bytes chunk) {
    if (alive.lock()) send(via, relay::data{ref, std::move(chunk)});
  };
  c.grant = [this, via, ref, alive](std::uint32_t more) {
    if (alive.lock()) send(via, relay::window{ref, more});
  };
  c.closed = [this, via, ref, alive] {
    if (alive.lock()) end_circuit({via, ref}, relay::reason::normal, "closed", true);
  };
  end->pipe = std::make_shared<transport::pipe_state>(ex_, "relay via " + via.short_string(),
                                                      relay::circuit_window,
                                                      relay::max_circuit_data, std::move(c));
  circuits_[{via, ref}] = end;
  return end;
}

void relay_agent::end_circuit(const circuit_key& k, relay::reason why, std::string text,
                              bool tell) {
  auto it = circuits_.find(k);
  if (it == circuits_.end()) return;
  auto end = it->second;
  circuits_.erase(it);
  if (tell) send(k.first, relay::close{k.second, why, text});
  end->closed = true;
  end->why = why;
  end->text = std::move(text);
  end->pipe->end(why == relay::reason::normal ? make_error_code(asio::error::eof)
                                              : make_error_code(asio::error::connection_reset));
  end->changed->notify();
}

void relay_agent::on_peer_gone(const public_id& peer) {
  for (auto& o : switch_.on_peer_gone(peer)) (void)host_.send_relay(o.to, std::move(o.record));
  std::vector<circuit_key> gone;
  for (const auto& [k, end] : circuits_)
    if (k.first == peer) gone.push_back(k);
  for (const auto& k : gone) end_circuit(k, relay::reason::peer_gone, "the relay left", false);
  for (auto& [target, w] : intros_)
    if (w->via == peer) w->wake.notify();
  for (auto& [origin, w] : syncs_)
    if (w->via == peer) w->wake.notify();
}

asio::awaitable<void> relay_agent::answer_introduction(public_id via, public_id origin, bytes info,
                                                       bool direct) {
  auto refuse = [&](relay::reason why, std::string text) {
    CRUST_LOG(info, "relay", "introduction from " << origin.short_string() << " refused: " << text);
    if (direct)
      send(via, relay::introduce_failed{me_, why, std::move(text)});
    else
      send(via, relay::introduce_refuse{origin, why, std::move(text)});
  };
  if (host_.refused(origin)) co_return refuse(relay::reason::refused, "not accepted");
  if (syncs_.contains(origin)) co_return refuse(relay::reason::refused, "already in progress");
  auto theirs = nat::connection_info::decode(info, network_, unix_now());
  if (!theirs)
    co_return refuse(relay::reason::refused, "bad connection info: " + theirs.error().message);
  if (theirs->key.id != origin)
    co_return refuse(relay::reason::refused, "connection info of another peer");
  const auto t0 = clock::now();
  auto mine = co_await host_.prepare_info();
  if (!mine)
    co_return refuse(relay::reason::refused, "no connection info: " + mine.error().message());
  const auto held = std::chrono::duration_cast<milliseconds>(clock::now() - t0);
  auto wait = std::make_shared<sync_wait>(ex_);
  wait->via = via;
  syncs_[origin] = wait;
  struct unregister {
    relay_agent* self;
    public_id origin;
    std::shared_ptr<sync_wait> w;
    ~unregister() {
      auto it = self->syncs_.find(origin);
      if (it != self->syncs_.end() && it->second == w) self->syncs_.erase(it);
    }
  } guard{this, origin, wait};
  const auto held_ms = static_cast<std::uint32_t>(held.count());
  if (direct)
    send(via, relay::introduce_answer{me_, held_ms, mine->pub().encode()});
  else
    send(via, relay::introduce_reply{origin, held_ms, mine->pub().encode()});
  // The origin sends its sync once our answer is back.
  using namespace asio::experimental::awaitable_operators;
  timer t(ex_, clock::now() + handshake_timeout_);
  while (!wait->synced && clock::now() < t.expiry() && !stopped_ && host_.peer(via, false)) {
    co_await (wait->wake.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return;
  }
  if (!wait->synced) {
    CRUST_LOG(info, "relay", "no sync from " << origin.short_string() << " after its introduction");
    co_return;
  }
  CRUST_LOG(debug, "relay", "synced with " << origin.short_string() << ": punching");
  auto r = co_await host_.rendezvous(*mine, *theirs, rendezvous_options{});
  if (!r)
    CRUST_LOG(info, "relay",
              "no direct path to " << origin.short_string() << ": " << r.error().message());
}

asio::awaitable<result<relay_agent::exchanged>> relay_agent::exchange(public_id via,
                                                                      public_id target,
                                                                      duration limit) {
  if (intros_.contains(target)) co_return make_error_code(errc::duplicate_connection);
  auto mine = co_await host_.prepare_info();
  if (!mine) co_return mine.error();
  if (!host_.peer(via, false)) co_return make_error_code(errc::not_connected);
  auto wait = std::make_shared<intro_wait>(ex_);
  wait->via = via;
  intros_[target] = wait;
  struct unregister {
    relay_agent* self;
    public_id target;
    ~unregister() { self->intros_.erase(target); }
  } guard{this, target};
  const auto t0 = clock::now();
  send(via, relay::introduce{target, mine->pub().encode()});
  using namespace asio::experimental::awaitable_operators;
  timer t(ex_, t0 + limit);
  while (!wait->answer && !wait->failed && clock::now() < t.expiry() && !stopped_ &&
         host_.peer(via, false)) {
    co_await (wait->wake.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
  }
  if (stopped_) co_return make_error_code(errc::shutting_down);
  if (wait->failed) {
    CRUST_LOG(info, "relay",
              "introduction to " << target.short_string() << " through " << via.short_string()
                                 << " failed: " << wait->failed->text);
    co_return error_of(wait->failed->why);
  }
  if (!wait->answer)
    co_return make_error_code(host_.peer(via, false) ? errc::timed_out : errc::not_connected);
  auto theirs = nat::connection_info::decode(wait->answer->info, network_, unix_now());
  if (!theirs) co_return theirs.error().code;
  if (theirs->key.id != target) co_return make_error_code(errc::wrong_peer_key);
  // The round trip through `via`, less the time the target spent on its
  // info: we punch after half of it, as the target does on our sync.
  const auto elapsed = clock::now() - t0;
  const auto held = milliseconds(wait->answer->held_ms);
  const auto rtt = elapsed > held ? elapsed - held : duration::zero();
  send(via, relay::sync{target});
  co_await pause(rtt / 2);
  CRUST_LOG(debug, "relay",
            "infos exchanged with "
                << target.short_string() << " through " << via.short_string() << ", round trip "
                << std::chrono::duration_cast<milliseconds>(rtt).count() << " ms");
  co_return exchanged{std::move(*mine), std::move(*theirs)};
}

asio::awaitable<result<peer_info>> relay_agent::relay_dial(public_id via, public_id target,
                                                           std::optional<peer_key> key,
                                                           duration limit) {
  if (stopped_) co_return make_error_code(errc::shutting_down);
  if (!host_.peer(via, false)) co_return make_error_code(errc::not_connected);
  const relay::circuit_ref ref{next_circuit_++ & 0x7fffffffu, true};
  if (next_circuit_ >= 0x80000000u) next_circuit_ = 1;
  auto end = new_circuit(via, ref);
  // The handle owns the circuit from here: dropping it closes the circuit.
  transport::stream s(transport::pipe_stream(end->pipe));
  send(via, relay::open{ref, target});
  using namespace asio::experimental::awaitable_operators;
  timer t(ex_, clock::now() + limit);
  while (!end->accepted && !end->closed && clock::now() < t.expiry()) {
    co_await (end->changed->wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
  }
  if (end->closed) {
    CRUST_LOG(info, "relay",
              "circuit to " << target.short_string() << " through " << via.short_string()
                            << " refused: " << end->text);
    co_return error_of(end->why);
  }
  if (!end->accepted) co_return make_error_code(errc::timed_out);
  // Without the key (no introduction first), Noise XX: the target proves
  // its id, and the relay cannot pose as it.
  auto r = co_await host_.dial_relayed(std::move(s), key, via);
  if (r && r->id != target) co_return make_error_code(errc::wrong_peer_key);
  co_return r;
}

asio::awaitable<result<peer_info>> relay_agent::connect_through(public_id via, public_id target,
                                                                introduction_options o) {
  if (auto p = host_.peer(target, true)) co_return *p;
  if (target == me_ || via == target) co_return make_error_code(errc::wrong_peer_key);
  if (host_.refused(target)) co_return make_error_code(errc::blacklisted);
  const auto started = clock::now();
  if (!o.direct_first) {
    // Relay first, as libp2p does: a direct path is the upgrade's work.
    if (!o.relay) co_return make_error_code(errc::no_contacts);
    auto r = co_await relay_dial(via, target, std::nullopt, handshake_timeout_);
    if (!r) co_return r;
    if (o.upgrade) tasks_.spawn(upgrade(target, o), "relay upgrade", host_.keep_alive());
    auto timed = host_.set_connect_time(target, clock::now() - started);
    co_return timed ? *timed : *r;
  }
  auto ex = co_await exchange(via, target, o.exchange_timeout);
  if (!ex) co_return ex.error();
  auto mine = std::move(ex->mine);
  auto theirs = std::move(ex->theirs);
  std::vector<attempt<peer_info>> attempts;
  attempts.push_back(
      [this, mine, theirs, d = o.direct] { return host_.rendezvous(mine, theirs, d); });
  auto relay_after = o.relay_after;
  if (o.relay) {
    // Neither side can be punched and nothing is mapped: do not wait.
    // Multi-socket probing gets the time its probes take at their pace.
    const bool hopeless = nat::hard_to_punch(theirs) && nat::hard_to_punch(mine.pub());
    if (hopeless) relay_after = duration::zero();
    if (nat::probing_between(mine.pub(), theirs))
      relay_after = std::max(relay_after, o.direct.punch.spray_time());
    attempts.push_back([this, via, target, key = theirs.key] {
      return relay_dial(via, target, key, handshake_timeout_);
    });
  }
  const auto n = attempts.size();
  auto out = co_await first_success(std::move(attempts), relay_after, n);
  if (!out.value) co_return std::move(out.value);
  auto info = *out.value;
  // From the call, the exchange through `via` included.
  if (auto timed = host_.set_connect_time(target, clock::now() - started)) info = *timed;
  CRUST_LOG(
      info, "relay",
      "connected to " << target.short_string() << " (" << to_string(info.path) << ", "
                      << transport::to_string(info.transport) << ") after "
                      << std::chrono::duration_cast<milliseconds>(clock::now() - started).count()
                      << " ms");
  if (info.path == path_kind::relayed && o.upgrade)
    tasks_.spawn(upgrade(target, o), "relay upgrade", host_.keep_alive());
  co_return info;
}

asio::awaitable<void> relay_agent::upgrade(public_id target, introduction_options o) {
  auto wait = o.upgrade_first;
  for (;;) {
    co_await pause(wait);
    const bool cancelled = co_await cancel_requested();
    if (cancelled || stopped_) co_return;
    auto current = host_.peer(target, false);
    if (!current || current->path != path_kind::relayed) co_return;  // gone, or direct already
    // The exchange runs over the relayed connection itself.
    auto ex = co_await exchange(target, target, o.exchange_timeout);
    if (ex) {
      auto r = co_await host_.rendezvous(std::move(ex->mine), std::move(ex->theirs), o.direct);
      if (r && r->path != path_kind::relayed) {
        CRUST_LOG(info, "relay",
                  "direct path to " << target.short_string() << " found ("
                                    << transport::to_string(r->transport)
                                    << "): the relay is left");
        co_return;
      }
    }
    wait = std::min(wait * 2, o.upgrade_max);
  }
}

asio::awaitable<void> relay_agent::stop() {
  stop_now();
  co_await tasks_.wait_all();
}

void relay_agent::stop_now() {
  stopped_ = true;
  tasks_.cancel_all();
  std::vector<circuit_key> all;
  for (const auto& [k, end] : circuits_) all.push_back(k);
  for (const auto& k : all) end_circuit(k, relay::reason::normal, "stopping", true);
  for (auto& [t, w] : intros_) w->wake.notify();
  for (auto& [t, w] : syncs_) w->wake.notify();
}

}  // namespace crust::detail
