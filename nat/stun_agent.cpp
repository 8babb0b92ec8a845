#include "nat/stun_agent.hpp"

#include "crust/base/log.hpp"
#include "crust/base/notifier.hpp"
#include "transports/endpoint.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace crust::nat {

namespace asio = boost::asio;

struct stun_agent::pending {
  explicit pending(const asio::any_io_executor& ex) : wake(ex) {}
  timer wake;  // the retransmission deadline; cancelled when the answer comes
  std::optional<stun::message> answer;
  stun::udp_endpoint from;
  bool failed = false;  // the agent closed
};

stun_agent::stun_agent(const std::shared_ptr<transport::udp_mux>& mux, options o)
    : mux_(mux),
      options_(std::move(o)),
      limiter_(options_.per_source_per_second, options_.burst, options_.global_per_second) {
  const auto local = mux->local_endpoint();
  if (!options_.server.response_origin && !local.address().is_unspecified())
    options_.server.response_origin = local;
}

std::shared_ptr<stun_agent> stun_agent::attach(const std::shared_ptr<transport::udp_mux>& mux,
                                               options o) {
  std::shared_ptr<stun_agent> self(new stun_agent(mux, std::move(o)));
  std::weak_ptr<stun_agent> weak = self;
  mux->on(transport::datagram_kind::stun, [weak](byte_span d, const stun::udp_endpoint& from) {
    if (auto s = weak.lock()) s->on_datagram(d, from);
  });
  return self;
}

void stun_agent::on_datagram(byte_span d, const stun::udp_endpoint& from) {
  if (closed_) return;
  auto mux = mux_.lock();
  if (!mux) return;
  if (intercept_ && intercept_(d, from)) return;
  // Requests are the server's (cheap to tell: the class bits are in byte
  // 0-1); everything else may answer one of our transactions.
  const bool request = (d[0] & 0x01) == 0 && (d[1] & 0x10) == 0;
  if (request) {
    if (!options_.serve) {
      ++stats_.ignored;
      return;
    }
    if (options_.admit && !options_.admit(transport::canonical(from.address()))) {
      ++stats_.ignored;
      return;
    }
    if (!limiter_.allow(transport::canonical(from.address()), clock::now())) {
      ++stats_.requests_limited;
      return;
    }
    // A dual-stack socket sees IPv4 peers as ::ffff:a.b.c.d; they are
    // told their IPv4 address.
    const stun::udp_endpoint seen(transport::canonical(from.address()), from.port());
    auto reply = stun::answer(d, seen, options_.server);
    if (!reply) {
      ++stats_.ignored;
      return;
    }
    ++stats_.requests_answered;
    mux->send(*reply, from);
    return;
  }
  auto m = stun::message::parse(d);
  if (!m || (m->cls() != stun::msg_class::success && m->cls() != stun::msg_class::error)) {
    ++stats_.ignored;
    return;
  }
  auto it = pending_.find(m->id());
  if (it == pending_.end() || it->second->answer) {
    ++stats_.responses_unmatched;
    return;
  }
  ++stats_.responses;
  it->second->from = from;
  it->second->answer = std::move(*m);
  it->second->wake.cancel();
}

bytes stun_agent::request(const stun::transaction_id& id, change_request change) const {
  stun::builder b(stun::msg_class::request, stun::binding, id);
  if (change.address || change.port) {
    bytes flags;
    put_u32(flags, (change.address ? 0x4u : 0u) | (change.port ? 0x2u : 0u));
    b.add(stun::attr::change_request, flags);
  }
  // SOFTWARE, padded with spaces, then FINGERPRINT: both
  // comprehension-optional, so old servers ignore them; our request says
  // nothing the answer needs, it only makes room for it.
  const std::size_t fixed = b.size() + 4 + 8;  // + SOFTWARE's header + FINGERPRINT
  if (options_.request_size > fixed) {
    std::string text = "crust";
    text.resize(std::max(text.size(), options_.request_size - fixed), ' ');
    b.add(stun::attr::software, text);
  }
  b.add_fingerprint();
  return std::move(b).finish();
}

asio::awaitable<result<binding_result>> stun_agent::binding(stun::udp_endpoint server,
                                                            stun::retransmission r,
                                                            change_request change) {
  auto self = shared_from_this();
  auto mux = mux_.lock();
  if (closed_ || !mux) co_return make_error_code(asio::error::not_connected);
  if (pending_.size() >= options_.max_pending)
    co_return make_error_code(asio::error::no_buffer_space);
  // A dual-stack socket reaches IPv4 servers through mapped addresses.
  if (server.address().is_v4() && mux->local_endpoint().address().is_v6())
    server = {asio::ip::make_address_v6(asio::ip::v4_mapped, server.address().to_v4()),
              server.port()};

  const auto id = stun::random_transaction_id();
  const auto req = request(id, change);
  auto p = std::make_shared<pending>(mux->get_executor());
  pending_.emplace(id, p);
  struct forget {
    stun_agent* a;
    stun::transaction_id id;
    ~forget() { a->pending_.erase(id); }
  } guard{this, id};

  const auto start = clock::now();
  stun::transaction_timer schedule(r, start);
  mux->send(req, server);
  ++stats_.requests_sent;
  for (;;) {
    p->wake.expires_at(schedule.deadline());
    auto [ec] = co_await p->wake.async_wait(asio::as_tuple(asio::use_awaitable));
    if (p->answer) break;
    const bool cancelled = co_await cancel_requested();
    if (cancelled) co_return make_error_code(asio::error::operation_aborted);
    if (p->failed) co_return make_error_code(asio::error::not_connected);
    if (ec) continue;  // woken early for nothing: wait again
    const auto step = schedule.fire(clock::now());
    if (step == stun::transaction_timer::step::give_up) co_return make_error_code(errc::timed_out);
    if (step == stun::transaction_timer::step::send) {
      auto m = mux_.lock();
      if (!m) co_return make_error_code(asio::error::not_connected);
      m->send(req, server);
      ++stats_.requests_sent;
    }
  }

  const auto& a = *p->answer;
  if (a.cls() == stun::msg_class::error) {
    const auto e = a.error();
    CRUST_LOG(debug, "stun",
              "Binding error from " << p->from.address().to_string() << ":" << p->from.port()
                                    << ": " << (e ? e->code : 0) << " "
                                    << (e ? e->reason : std::string("(no ERROR-CODE)")));
    co_return make_error_code(errc::server_error);
  }
  auto mapped = a.mapped();
  if (!mapped) co_return make_error_code(errc::malformed);
  binding_result out;
  out.mapped = {transport::canonical(mapped->address()), mapped->port()};
  out.server = {transport::canonical(p->from.address()), p->from.port()};
  out.response_origin = a.address(stun::attr::response_origin);
  out.other_address = a.address(stun::attr::other_address);
  out.software = a.text(stun::attr::software).value_or("");
  out.requests = schedule.sent();
  if (out.requests == 1) out.rtt = clock::now() - start;
  co_return out;
}

void stun_agent::close() {
  intercept_ = nullptr;
  closed_ = true;
  for (auto& [id, p] : pending_) {
    p->failed = true;
    p->wake.cancel();
  }
}

}  // namespace crust::nat
