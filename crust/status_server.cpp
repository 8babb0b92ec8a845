// The only translation unit with Boost.Beast in it (HTTP is slow to
// compile): everything the server says is built in crust/status.cpp.
#include "crust/status_server.hpp"

#include "crust/base/log.hpp"
#include "crust/base/task_group.hpp"
#include "crust/base/version.hpp"
#include "transports/endpoint.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
// GCC 12 warns falsely inside Beast's parser (an optional<size_t> "may be
// used uninitialized" in basic_parser::do_field).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <list>

namespace crust {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::as_tuple;
using asio::use_awaitable;

struct status_server::state : std::enable_shared_from_this<state> {
  state(const asio::any_io_executor& ex, service::watcher w, status_options o)
      : acceptor(ex), node(std::move(w)), opts(o), tasks(ex) {}

  asio::ip::tcp::acceptor acceptor;
  service::watcher node;
  status_options opts;
  task_group tasks;
  std::list<beast::tcp_stream*> clients;  // open ones, for stop()
  bool stopped = false;

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(asio::ip::tcp::socket s);
  http::response<http::string_body> answer(const http::request<http::string_body>& req) const;
  void close_all();
};

namespace {

http::response<http::string_body> reply(http::status st, unsigned version, std::string_view type,
                                        std::string body) {
  http::response<http::string_body> res{st, version};
  res.set(http::field::server, std::string("crust/") + crust::version);
  res.set(http::field::content_type, type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace

http::response<http::string_body> status_server::state::answer(
    const http::request<http::string_body>& req) const {
  const auto v = req.version();
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    auto res = reply(http::status::method_not_allowed, v, "text/plain; charset=utf-8",
                     "only GET and HEAD\n");
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));
  http::response<http::string_body> res;
  if (target != "/status" && target != "/metrics" && target != "/" && target != "/index.html") {
    res = reply(http::status::not_found, v, "text/plain; charset=utf-8",
                "not found: try /, /status or /metrics\n");
  } else if (auto s = node.status(); !s) {
    res = reply(http::status::service_unavailable, v, "text/plain; charset=utf-8",
                "the node has stopped\n");
  } else if (target == "/status") {
    res = reply(http::status::ok, v, "application/json", status_json(*s));
  } else if (target == "/metrics") {
    res = reply(http::status::ok, v, "text/plain; version=0.0.4; charset=utf-8", metrics_text(*s));
  } else {
    res = reply(http::status::ok, v, "text/html; charset=utf-8", std::string(status_page_html()));
  }
  if (req.method() == http::verb::head) {
    const auto n = res.body().size();
    res.body().clear();
    res.content_length(n);
  }
  return res;
}

asio::awaitable<void> status_server::state::accept_loop() {
  for (;;) {
    auto [ec, s] = co_await acceptor.async_accept(as_tuple(use_awaitable));
    if (stopped) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      CRUST_LOG(warn, "status", "accept: " << ec.message());
      continue;  // EMFILE and the like: the next client may fare better
    }
    if (clients.size() >= opts.max_clients) {
      error_code ignored;
      s.close(ignored);  // busy: the client retries
      continue;
    }
    tasks.spawn(serve(std::move(s)), "status client", shared_from_this());
  }
}

asio::awaitable<void> status_server::state::serve(asio::ip::tcp::socket s) {
  beast::tcp_stream stream(std::move(s));
  auto me = clients.insert(clients.end(), &stream);
  struct forget {
    std::list<beast::tcp_stream*>& list;
    std::list<beast::tcp_stream*>::iterator it;
    ~forget() { list.erase(it); }
  } guard{clients, me};
  beast::flat_buffer buf(opts.max_request);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(opts.max_request));
    parser.body_limit(opts.max_request);
    stream.expires_after(opts.idle_timeout);
    auto [ec, n] = co_await http::async_read(stream, buf, parser, as_tuple(use_awaitable));
    if (ec) {
      // A request we cannot read gets a plain answer, then the door.
      std::optional<http::status> st;
      if (ec == http::error::header_limit || ec == http::error::buffer_overflow)
        st = http::status::request_header_fields_too_large;
      else if (ec == http::error::body_limit)
        st = http::status::payload_too_large;
      else if (ec.category() == http::make_error_code(http::error::bad_method).category() &&
               ec != http::error::end_of_stream && ec != http::error::partial_message)
        st = http::status::bad_request;
      if (st && !stopped) {
        auto res = reply(*st, 11, "text/plain; charset=utf-8",
                         std::string(http::obsolete_reason(*st)) + "\n");
        res.keep_alive(false);
        stream.expires_after(opts.idle_timeout);
        co_await http::async_write(stream, res, as_tuple(use_awaitable));
      }
      break;
    }
    const auto& req = parser.get();
    auto res = answer(req);
    res.keep_alive(req.keep_alive());
    stream.expires_after(opts.idle_timeout);
    auto [wec, wn] = co_await http::async_write(stream, res, as_tuple(use_awaitable));
    if (wec || !req.keep_alive() || stopped) break;
  }
  error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
  stream.close();
}

void status_server::state::close_all() {
  stopped = true;
  error_code ignored;
  acceptor.close(ignored);
  for (auto* c : clients) c->close();
  tasks.cancel_all();
}

result<status_server> status_server::start(asio::any_io_executor ex, service::watcher node,
                                           status_options o) {
  if (!o.allow_remote && !o.at.address().is_loopback()) return make_error_code(errc::not_allowed);
  auto st = std::make_shared<state>(ex, std::move(node), o);
  error_code ec;
  st->acceptor.open(o.at.protocol(), ec);
  if (!ec) st->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) st->acceptor.bind(o.at, ec);
  if (!ec) st->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return ec;
  st->tasks.spawn(st->accept_loop(), "status accept loop", st);
  CRUST_LOG(
      info, "status",
      "serving /status, /metrics and / on " << transport::to_string(st->acceptor.local_endpoint()));
  return status_server(std::move(st));
}

status_server::status_server(std::shared_ptr<state> st) : st_(std::move(st)) {}
status_server::status_server(status_server&&) noexcept = default;
status_server& status_server::operator=(status_server&& other) noexcept {
  if (this != &other) {
    if (st_) st_->close_all();
    st_ = std::move(other.st_);
  }
  return *this;
}
status_server::~status_server() {
  if (st_) st_->close_all();
}

asio::ip::tcp::endpoint status_server::local_endpoint() const {
  error_code ec;
  return st_->acceptor.local_endpoint(ec);
}

asio::awaitable<void> status_server::stop() {
  if (!st_) co_return;
  auto st = st_;
  st->close_all();
  co_await st->tasks.wait_all();
}

}  // namespace crust
