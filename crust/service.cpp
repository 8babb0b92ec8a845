#include "crust/service.hpp"

#include "crust/base/log.hpp"
#include "crust/base/notifier.hpp"
#include "crust/base/race.hpp"
#include "crust/base/task_group.hpp"
#include "crust/detail/connection.hpp"
#include "transports/tcp.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>

#include <deque>
#include <map>

namespace crust {

namespace asio = boost::asio;
using detail::connection;

namespace {
constexpr auto replacement_wait = seconds(2);

}  // namespace

class service::impl final : public detail::connection_owner,
                            public std::enable_shared_from_this<service::impl> {
 public:
  impl(asio::any_io_executor ex, config cfg, identity id)
      : ex_(std::move(ex)),
        cfg_(std::move(cfg)),
        id_(std::move(id)),
        tasks_(ex_),
        event_ready_(ex_),
        event_space_(ex_),
        registered_(ex_) {}

  // --- connection_owner ---
  asio::awaitable<void> deliver(event ev, bool is_message) override {
    while (is_message && queued_messages_ >= cfg_.event_queue_messages && !stopping_) {
      co_await event_space_.wait();
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return;
    }
    if (stopping_) co_return;
    if (is_message) ++queued_messages_;
    events_.push_back(std::move(ev));
    event_ready_.notify();
  }
  void post_event(event ev) override {
    if (stopping_) return;
    events_.push_back(std::move(ev));
    event_ready_.notify();
  }
  const identity& me() const override { return id_; }

  // --- listening ---
  asio::awaitable<result<endpoint>> start() {
    if (stopping_) co_return make_error_code(errc::shutting_down);
    if (acceptor_) co_return acceptor_->local_endpoint();
    error_code ec;
    auto addr = asio::ip::make_address(cfg_.listen_address, ec);
    if (ec) co_return make_error_code(errc::bad_config);
    endpoint at(addr, cfg_.tcp_acceptor_port);
    auto acc = transport::tcp_listen(ex_, at);
    if (!acc) {
      post_event(events::listener_failed{transport::to_string(at), acc.error()});
      co_return acc.error();
    }
    acceptor_.emplace(std::move(*acc));
    auto bound = acceptor_->local_endpoint();
    CRUST_LOG(
        info, "service",
        "listening on tcp " << transport::to_string(bound) << " as " << id_.id().short_string());
    post_event(events::listener_started{"tcp " + transport::to_string(bound)});
    spawn(accept_loop(), "accept loop");
    co_return bound;
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      auto s = co_await transport::tcp_accept(*acceptor_);
      if (stopping_ || !acceptor_ || !acceptor_->is_open()) co_return;
      if (!s) {
        if (s.error() == asio::error::operation_aborted) co_return;
        // EMFILE and friends: back off briefly rather than spin.
        CRUST_LOG(warn, "service", "accept failed: " << s.error().message());
        timer t(ex_);
        t.expires_after(milliseconds(50));
        co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      if (pending_.size() >= cfg_.max_pending_handshakes) {
        // Full: close the oldest handshake rather than refuse the newest. A
        // real peer finishes within a round trip or two, so stalled sockets
        // (a slowloris) are what gets evicted, and new peers still get in.
        auto oldest = pending_.begin();
        CRUST_LOG(warn, "service",
                  "too many handshakes in progress; closing the oldest, from "
                      << oldest->second->remote_description());
        oldest->second->close();
        pending_.erase(oldest);
      }
      spawn(inbound(std::move(*s)), "inbound handshake");
    }
  }

  asio::awaitable<void> inbound(transport::stream s) {
    const auto ticket = next_ticket_++;
    pending_.emplace(ticket, &s);  // s lives in this frame until it returns
    const auto t0 = clock::now();
    std::string from = s.remote_description();
    auto machine = secure::handshake::responder(id_, cfg_.network_name, cfg_.accept_address_only);
    auto op = secure::run_handshake(s, std::move(machine));
    auto hs = co_await with_timeout(std::move(op), cfg_.handshake_timeout);
    pending_.erase(ticket);  // a no-op if it was evicted
    if (!hs) {
      CRUST_LOG(info, "service",
                "inbound handshake from " << from << " failed: " << hs.error().message());
      co_return;
    }
    if (stopping_) co_return;
    auto conn =
        std::make_shared<connection>(std::move(s), std::move(*hs), cfg_, *this, clock::now() - t0);
    auto current = adopt(conn);
    if (current == conn) post_event(events::bootstrap_accept{conn->info()});
    co_await run_connection(conn);
  }

  // --- dialling ---
  asio::awaitable<result<peer_info>> connect(endpoint to, std::optional<peer_key> key) {
    if (stopping_) co_return make_error_code(errc::shutting_down);
    if (key && key->id == id_.id()) co_return make_error_code(errc::wrong_peer_key);
    if (key) {
      if (auto it = peers_.find(key->id); it != peers_.end()) co_return it->second->info();
      if (auto d = dialling_.find(key->id); d != dialling_.end()) {
        // Join the dial in flight: one connection per peer from this end.
        auto pending = d->second;
        while (!pending->finished) {
          co_await pending->done.wait();
          const bool cancelled = co_await cancel_requested();
          if (cancelled) co_return make_error_code(errc::cancelled);
        }
        co_return pending->outcome;
      }
    }
    auto self = shared_from_this();
    // Marks the dial in flight; however this coroutine ends, the mark is
    // removed and whoever joined is woken.
    struct mark_guard {
      impl* owner;
      std::optional<public_id> id;
      std::shared_ptr<dial_in_flight> mark;
      ~mark_guard() {
        if (!mark) return;
        owner->dialling_.erase(*id);
        mark->finished = true;
        mark->done.notify();
      }
    } guard{this, std::nullopt, nullptr};
    if (key) {
      guard.id = key->id;
      guard.mark = std::make_shared<dial_in_flight>(ex_);
      dialling_.emplace(key->id, guard.mark);
    }
    auto outcome = co_await dial(to, key);
    if (guard.mark) guard.mark->outcome = outcome;
    co_return outcome;
  }

  asio::awaitable<result<peer_info>> dial(endpoint to, std::optional<peer_key> key) {
    const std::string where = transport::to_string(to);
    auto fail = [&](error_code ec) -> result<peer_info> {
      std::optional<public_id> who;
      if (key) who = key->id;
      post_event(events::connect_failure{where, who, ec});
      CRUST_LOG(info, "service", "connect to " << where << " failed: " << ec.message());
      return ec;
    };
    auto attempt = transport::tcp_dial(to);
    auto s = co_await with_timeout(std::move(attempt), cfg_.connect_timeout);
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(errc::cancelled);
    if (!s) co_return fail(s.error());
    const auto t0 = clock::now();
    auto machine = secure::handshake::initiator(id_, cfg_.network_name, key);
    auto op = secure::run_handshake(*s, std::move(machine));
    auto hs = co_await with_timeout(std::move(op), cfg_.handshake_timeout);
    const bool cancelled_in_handshake = co_await cancel_requested();
    if (cancelled_in_handshake) co_return make_error_code(errc::cancelled);
    if (!hs) co_return fail(hs.error());
    if (hs->remote.id == id_.id()) co_return fail(make_error_code(errc::wrong_peer_key));
    if (stopping_) co_return make_error_code(errc::shutting_down);
    auto conn =
        std::make_shared<connection>(std::move(*s), std::move(*hs), cfg_, *this, clock::now() - t0);
    auto current = adopt(conn);
    spawn(run_connection(conn), "connection");
    post_event(events::connect_success{current->info()});
    co_return current->info();
  }

  // --- the simultaneous-dial rule ---
  // Two connections to one peer:
  // - dialled by different ends (a simultaneous dial): both ends keep the one
  //   dialled by the larger id, which each computes alike from what it sees;
  // - dialled by the same end: the newer wins. That end redialled because it
  //   closed the old one (connect() joins a dial already in flight rather
  //   than dialling twice), and its close may reach us after the new
  //   handshake does.
  // The loser is flushed and closed with reason "duplicate", so nothing sent
  // on it is lost.
  std::shared_ptr<connection> adopt(const std::shared_ptr<connection>& conn) {
    const auto id = conn->info().id;
    auto it = peers_.find(id);
    if (it == peers_.end()) {
      peers_.emplace(id, conn);
      registered_.notify();
      return conn;
    }
    auto initiator = [this](const connection& c) {
      return c.initiated_by_us() ? id_.id() : c.info().id;
    };
    const auto mine = initiator(*conn), theirs = initiator(*it->second);
    if (mine == theirs || mine > theirs) {
      CRUST_LOG(debug, "service",
                "duplicate connection to " << id.short_string() << ": keeping the new one");
      it->second->close(close_reason::duplicate, "replaced");
      it->second = conn;
      registered_.notify();
      return conn;
    }
    CRUST_LOG(debug, "service",
              "duplicate connection to " << id.short_string() << ": keeping the existing one");
    conn->close(close_reason::duplicate, "simultaneous dial");
    return it->second;
  }

  asio::awaitable<void> run_connection(std::shared_ptr<connection> conn) {
    auto why = co_await conn->run();
    const auto id = conn->info().id;
    auto it = peers_.find(id);
    if (it == peers_.end() || it->second != conn) co_return;  // replaced or disconnected
    peers_.erase(it);
    if (stopping_) co_return;
    if (why == errc::duplicate_connection) {
      // The peer kept another connection that has not reached us yet: give
      // it a moment before calling the peer lost.
      co_await asio::this_coro::throw_if_cancelled(false);
      timer t(ex_);
      t.expires_after(replacement_wait);
      using namespace asio::experimental::awaitable_operators;
      auto deadline = clock::now() + replacement_wait;
      while (!peers_.contains(id) && clock::now() < deadline && !stopping_) {
        co_await (registered_.wait() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
      }
      if (peers_.contains(id) || stopping_) co_return;
    }
    auto detail = conn->peer_close_detail();
    CRUST_LOG(info, "service",
              "lost peer " << id.short_string() << ": " << why.message()
                           << (detail.empty() ? "" : " - " + detail));
    post_event(events::lost_peer{id, why, std::move(detail)});
  }

  // --- application calls ---
  result<void> send(const public_id& peer, bytes payload, send_options opts) {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return make_error_code(errc::not_connected);
    return it->second->send(std::move(payload), opts.prio, opts.sign);
  }

  asio::awaitable<result<void>> flush(const public_id& peer) {
    auto it = peers_.find(peer);
    if (it == peers_.end()) co_return make_error_code(errc::not_connected);
    auto conn = it->second;
    co_return co_await conn->flush();
  }

  void disconnect(const public_id& peer) {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return;
    auto conn = it->second;
    peers_.erase(it);
    conn->close(close_reason::normal, "disconnect");
  }

  asio::awaitable<result<event>> next_event() {
    while (events_.empty()) {
      if (stopping_) co_return make_error_code(errc::shutting_down);
      co_await event_ready_.wait();
      const bool cancelled = co_await cancel_requested();
      if (cancelled) co_return make_error_code(errc::cancelled);
    }
    event ev = std::move(events_.front());
    events_.pop_front();
    if (std::holds_alternative<events::new_message>(ev)) {
      --queued_messages_;
      event_space_.notify();
    }
    co_return ev;
  }

  asio::awaitable<void> stop(duration grace) {
    if (stopping_) {
      co_await tasks_.wait_all();
      co_return;
    }
    auto self = shared_from_this();
    begin_stop();
    for (auto& [id, conn] : peers_) conn->close(close_reason::shutdown, "service stopping");
    using namespace asio::experimental::awaitable_operators;
    timer t(ex_);
    t.expires_after(grace);
    co_await (tasks_.wait_all() || t.async_wait(asio::as_tuple(asio::use_awaitable)));
    for (auto& [id, conn] : peers_) conn->abort();
    tasks_.cancel_all();
    co_await tasks_.wait_all();
    peers_.clear();
    events_.clear();
  }

  // Immediate teardown, for a service destroyed without stop().
  void stop_now() {
    if (!stopping_) begin_stop();
    for (auto& [id, conn] : peers_) conn->abort();
    peers_.clear();
    tasks_.cancel_all();
  }

  std::vector<peer_info> peers() const {
    std::vector<peer_info> out;
    for (const auto& [id, conn] : peers_) out.push_back(conn->info());
    return out;
  }
  std::optional<peer_stats> stats(const public_id& peer) const {
    auto it = peers_.find(peer);
    if (it == peers_.end()) return std::nullopt;
    return it->second->stats();
  }
  std::optional<endpoint> local_endpoint() const {
    if (!acceptor_ || !acceptor_->is_open()) return std::nullopt;
    error_code ec;
    auto ep = acceptor_->local_endpoint(ec);
    if (ec) return std::nullopt;
    return ep;
  }
  const identity& id() const { return id_; }
  const config& cfg() const { return cfg_; }

 private:
  void spawn(asio::awaitable<void> task, const char* what) {
    tasks_.spawn(std::move(task), what, shared_from_this());
  }
  void begin_stop() {
    stopping_ = true;
    if (acceptor_) {
      error_code ec;
      acceptor_->close(ec);
    }
    event_ready_.notify();
    event_space_.notify();
  }

  asio::any_io_executor ex_;
  config cfg_;
  identity id_;
  task_group tasks_;
  std::optional<asio::ip::tcp::acceptor> acceptor_;
  std::map<public_id, std::shared_ptr<connection>> peers_;
  std::deque<event> events_;
  std::size_t queued_messages_ = 0;
  notifier event_ready_;
  notifier event_space_;
  notifier registered_;
  struct dial_in_flight {
    explicit dial_in_flight(const asio::any_io_executor& ex) : done(ex) {}
    notifier done;
    bool finished = false;
    result<peer_info> outcome = make_error_code(errc::not_connected);
  };
  std::map<public_id, std::shared_ptr<dial_in_flight>> dialling_;
  // Inbound handshakes in progress, oldest first (by ticket).
  std::map<std::uint64_t, transport::stream*> pending_;
  std::uint64_t next_ticket_ = 0;
  bool stopping_ = false;
};

service::service(asio::any_io_executor ex, config cfg, identity id)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(cfg), std::move(id))) {}

service::~service() {
  if (impl_) impl_->stop_now();
}

service::service(service&&) noexcept = default;
service& service::operator=(service&& other) noexcept {
  if (this != &other) {
    if (impl_) impl_->stop_now();
    impl_ = std::move(other.impl_);
  }
  return *this;
}

asio::awaitable<result<service::endpoint>> service::start() {
  return impl_->start();
}
asio::awaitable<void> service::stop(duration grace) {
  return impl_->stop(grace);
}
asio::awaitable<result<peer_info>> service::connect(endpoint to, peer_key key) {
  return impl_->connect(to, key);
}
asio::awaitable<result<peer_info>> service::connect(endpoint to) {
  return impl_->connect(to, std::nullopt);
}
result<void> service::send(const public_id& peer, bytes payload, send_options opts) {
  return impl_->send(peer, std::move(payload), opts);
}
asio::awaitable<result<void>> service::flush(const public_id& peer) {
  return impl_->flush(peer);
}
void service::disconnect(const public_id& peer) {
  impl_->disconnect(peer);
}
asio::awaitable<result<event>> service::next_event() {
  return impl_->next_event();
}
std::vector<peer_info> service::peers() const {
  return impl_->peers();
}
std::optional<peer_stats> service::stats(const public_id& peer) const {
  return impl_->stats(peer);
}
std::optional<service::endpoint> service::local_endpoint() const {
  return impl_->local_endpoint();
}
const identity& service::id() const {
  return impl_->id();
}
const config& service::cfg() const {
  return impl_->cfg();
}

}  // namespace crust
