// File transfer over Crust, with a progress bar, the throughput, a
// SHA-256 check at the end, and resumption after a dropped connection.
//
//   crust-send-file receive --dir DIR [--address A] [--port P] [--key FILE] [--once]
//   crust-send-file send FILE IP:PORT --peer KEY [--key FILE] [--retry-for SECONDS]
//                   [--limit MIB_PER_S]
//
// The receiver prints {"event":"listening","endpoint":...,"key":...}; the
// sender dials it by key. Progress goes to stderr (a bar on a terminal,
// a line per tenth otherwise); results are JSON lines on stdout.
//
// The transfer is four kinds of message (every integer big-endian):
//   offer   1 | u64 size | 32-byte SHA-256 | name (at most 255 bytes)
//   resume  2 | u64 offset       receiver: "send from here"
//   chunk   3 | u64 offset | data (at most 256 KiB)
//   done    4 | u8 ok | text     receiver, once the whole file hashed
// The receiver keeps what it has in DIR/NAME.part, with the offer beside
// it in DIR/NAME.part.offer: a new offer of the same file resumes where
// the part ends (rounded down to a whole chunk). The sender, when the
// connection drops, dials again until --retry-for runs out.
#include <crust/base/race.hpp>
#include <crust/service.hpp>
#include <transports/endpoint.hpp>

#include <openssl/evp.h>
#include <unistd.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using crust::byte;
using crust::bytes;

namespace {

constexpr std::size_t chunk_size = 256 * 1024;
enum kind : byte { offer = 1, resume = 2, chunk = 3, done = 4 };

// --- the records ---
void put_u64(bytes& b, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) b.push_back(static_cast<byte>(v >> (8 * i)));
}
std::optional<std::uint64_t> get_u64(const bytes& b, std::size_t at) {
  if (b.size() < at + 8) return std::nullopt;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | b[at + i];
  return v;
}
using digest = std::array<byte, 32>;
std::string hex(const digest& d) {
  std::ostringstream o;
  for (auto x : d) o << std::hex << std::setw(2) << std::setfill('0') << int(x);
  return o.str();
}

// SHA-256 of a file's first `n` bytes (all of it by default); nullopt if
// it cannot be read.
std::optional<digest> hash_file(const fs::path& p, std::uint64_t n = UINT64_MAX) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return std::nullopt;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (n > 0 && in) {
    in.read(buf.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(buf.size(), n)));
    const auto got = static_cast<std::size_t>(in.gcount());
    if (got == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), got);
    n -= got;
  }
  digest d{};
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), d.data(), &len);
  return d;
}

// --- progress ---
class progress {
 public:
  progress(std::uint64_t total, std::uint64_t from) : total_(total), from_(from), at_(from) {}
  void update(std::uint64_t at) {
    at_ = at;
    const auto now = std::chrono::steady_clock::now();
    const int tenth = total_ ? static_cast<int>(at_ * 10 / total_) : 10;
    if (tty_) {
      if (now - shown_ < std::chrono::milliseconds(100) && at_ < total_) return;
    } else if (tenth == last_tenth_ && at_ < total_) {
      return;
    }
    shown_ = now;
    last_tenth_ = tenth;
    const double secs = std::chrono::duration<double>(now - started_).count();
    const double rate = secs > 0 ? double(at_ - from_) / secs / (1 << 20) : 0;
    const int pct = total_ ? static_cast<int>(at_ * 100 / total_) : 100;
    std::ostringstream line;
    line << "[" << std::string(pct / 5, '#') << std::string(20 - pct / 5, ' ') << "] "
         << std::setw(3) << pct << "% " << (at_ >> 20) << "/" << (total_ >> 20) << " MiB, "
         << std::fixed << std::setprecision(1) << rate << " MiB/s";
    std::cerr << (tty_ ? "\r" : "") << line.str() << (tty_ ? "" : "\n") << std::flush;
  }
  void finish() {
    if (tty_) std::cerr << "\n";
  }
  double mib_per_s() const {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    return secs > 0 ? double(at_ - from_) / secs / (1 << 20) : 0;
  }

 private:
  std::uint64_t total_, from_, at_;
  bool tty_ = ::isatty(STDERR_FILENO) == 1;
  int last_tenth_ = -1;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now(), shown_{};
};

// The next message from `peer`, skipping other events; nullopt when the
// peer is lost, the node stops, or `limit` passes.
asio::awaitable<std::optional<bytes>> next_from(crust::service& node, const crust::public_id& peer,
                                                crust::duration limit) {
  const auto deadline = crust::clock::now() + limit;
  for (;;) {
    const auto left = deadline - crust::clock::now();
    if (left <= crust::duration::zero()) co_return std::nullopt;
    auto ev = co_await crust::with_timeout(node.next_event(), left);
    if (!ev) co_return std::nullopt;
    if (auto* m = std::get_if<crust::events::new_message>(&*ev); m && m->peer == peer)
      co_return std::move(m->payload);
    if (auto* l = std::get_if<crust::events::lost_peer>(&*ev); l && l->peer == peer)
      co_return std::nullopt;
  }
}

// --- the sender ---
// Sleeps as long as it takes to keep `sent` bytes since `since` at or
// under `limit` MiB/s (0: no limit).
asio::awaitable<void> pace(std::uint64_t sent, std::chrono::steady_clock::time_point since,
                           double limit) {
  if (limit <= 0) co_return;
  const auto due = since + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(double(sent) / (limit * (1 << 20))));
  asio::steady_timer t(co_await asio::this_coro::executor, due);
  co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
}

asio::awaitable<int> send(crust::service& node, fs::path file, crust::service::endpoint to,
                          crust::peer_key key, double retry_for, double limit) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  auto sha = hash_file(file);
  if (ec || !sha) {
    std::cerr << "crust-send-file: cannot read " << file << "\n";
    co_return 1;
  }
  const auto name = file.filename().string().substr(0, 255);
  std::ifstream in(file, std::ios::binary);
  const auto give_up = crust::clock::now() + std::chrono::duration_cast<crust::duration>(
                                                 std::chrono::duration<double>(retry_for));
  int connects = 0, resumes = 0;
  std::uint64_t first_offset = 0;
  double rate = 0;
  while (crust::clock::now() < give_up) {
    auto peer = co_await node.connect(to, key);
    if (!peer) {
      std::cerr << "crust-send-file: " << peer.error().message() << "; trying again\n";
      auto wait = co_await crust::with_timeout(node.next_event(), std::chrono::milliseconds(500));
      (void)wait;
      continue;
    }
    ++connects;
    bytes o{offer};
    put_u64(o, size);
    o.insert(o.end(), sha->begin(), sha->end());
    o.insert(o.end(), name.begin(), name.end());
    if (!node.send(peer->id, std::move(o))) continue;
    auto answer = co_await next_from(node, peer->id, crust::seconds(30));
    if (!answer || answer->empty()) continue;
    if ((*answer)[0] == done) {  // it had the whole file already
      std::cout << "{\"event\":\"sent\",\"bytes\":0,\"ok\":" << ((*answer)[1] ? "true" : "false")
                << "}" << std::endl;
      co_return (*answer)[1] ? 0 : 1;
    }
    auto from = (*answer)[0] == resume ? get_u64(*answer, 1) : std::nullopt;
    if (!from || *from > size) {
      std::cerr << "crust-send-file: the receiver's answer makes no sense\n";
      co_return 1;
    }
    if (connects == 1) first_offset = *from;
    if (connects > 1 || *from > 0) {
      ++resumes;
      std::cerr << "crust-send-file: resuming at byte " << *from << "\n";
    }
    progress bar(size, *from);
    bool lost = false;
    std::vector<char> buf(chunk_size);
    in.clear();
    in.seekg(static_cast<std::streamoff>(*from));
    const auto began = std::chrono::steady_clock::now();
    for (std::uint64_t at = *from; at < size && !lost;) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, size - at));
      in.read(buf.data(), static_cast<std::streamsize>(n));
      bytes c{chunk};
      put_u64(c, at);
      c.insert(c.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      lost = !node.send(peer->id, std::move(c));
      at += n;
      // Wait for the socket every 4 chunks: the queue stays near 1 MiB,
      // far below where back-pressure would drop anything.
      if (!lost && (at / chunk_size) % 4 == 0) lost = !(co_await node.flush(peer->id));
      bar.update(at);
      co_await pace(at - *from, began, limit);
    }
    bar.finish();
    rate = bar.mib_per_s();
    if (lost) continue;
    auto verdict = co_await next_from(node, peer->id, crust::seconds(120));
    if (!verdict || verdict->size() < 2 || (*verdict)[0] != done) continue;
    const bool ok = (*verdict)[1] != 0;
    std::cout << "{\"event\":\"sent\",\"name\":\"" << name << "\",\"bytes\":" << size
              << ",\"sha256\":\"" << hex(*sha) << "\",\"ok\":" << (ok ? "true" : "false")
              << ",\"connections\":" << connects << ",\"resumes\":" << resumes
              << ",\"first_offset\":" << first_offset << ",\"mib_per_s\":" << rate << "}"
              << std::endl;
    co_return ok ? 0 : 1;
  }
  std::cerr << "crust-send-file: gave up after " << retry_for << " s\n";
  co_return 1;
}

// --- the receiver ---
struct incoming {
  std::uint64_t size = 0;
  digest sha{};
  std::string name;
  std::uint64_t at = 0, resumed_from = 0;
  std::fstream out;
  std::optional<progress> bar;
};

// The offer file beside a part: size and hash, so a part is resumed
// only for the same file.
bytes offer_key(const incoming& f) {
  bytes b;
  put_u64(b, f.size);
  b.insert(b.end(), f.sha.begin(), f.sha.end());
  return b;
}

asio::awaitable<int> receive(crust::service& node, fs::path dir, bool once) {
  std::map<crust::public_id, incoming> files;
  for (;;) {
    auto ev = co_await node.next_event();
    if (!ev) co_return 0;
    auto* m = std::get_if<crust::events::new_message>(&*ev);
    if (!m || m->payload.empty()) continue;
    const auto& p = m->payload;
    if (p[0] == offer && p.size() >= 1 + 8 + 32) {
      incoming f;
      f.size = *get_u64(p, 1);
      std::copy_n(p.begin() + 9, 32, f.sha.begin());
      f.name = fs::path(std::string(p.begin() + 41, p.end())).filename().string();
      if (f.name.empty() || f.name == "." || f.name == "..") continue;
      const auto part = dir / (f.name + ".part"), meta = dir / (f.name + ".part.offer");
      std::ifstream old(meta, std::ios::binary);
      bytes seen((std::istreambuf_iterator<char>(old)), std::istreambuf_iterator<char>());
      std::error_code ec;
      const auto have = fs::exists(part, ec) ? fs::file_size(part, ec) : 0;
      if (seen == offer_key(f) && !ec)
        f.at = std::min<std::uint64_t>(have / chunk_size * chunk_size, f.size);
      if (f.at == 0) {
        std::ofstream(meta, std::ios::binary | std::ios::trunc)
            .write(reinterpret_cast<const char*>(offer_key(f).data()), 40);
        std::ofstream(part, std::ios::binary | std::ios::trunc);
      }
      fs::resize_file(part, f.at, ec);
      f.resumed_from = f.at;
      f.out.open(part, std::ios::binary | std::ios::in | std::ios::out);
      f.bar.emplace(f.size, f.at);
      bytes r{resume};
      put_u64(r, f.at);
      (void)node.send(m->peer, std::move(r));
      files[m->peer] = std::move(f);
      continue;
    }
    auto it = files.find(m->peer);
    if (it == files.end() || p[0] != chunk) continue;
    auto& f = it->second;
    const auto at = get_u64(p, 1);
    if (!at || *at != f.at || f.at + (p.size() - 9) > f.size) continue;  // not the next chunk
    f.out.seekp(static_cast<std::streamoff>(*at));
    f.out.write(reinterpret_cast<const char*>(p.data() + 9),
                static_cast<std::streamsize>(p.size() - 9));
    f.at += p.size() - 9;
    f.bar->update(f.at);
    if (f.at < f.size) continue;
    f.out.close();
    f.bar->finish();
    const auto part = dir / (f.name + ".part");
    const auto got = hash_file(part);
    const bool ok = got && *got == f.sha;
    std::error_code ec;
    if (ok) {
      fs::rename(part, dir / f.name, ec);
      fs::remove(dir / (f.name + ".part.offer"), ec);
    } else {
      fs::remove(part, ec);  // start again from nothing
    }
    bytes d{done, static_cast<byte>(ok ? 1 : 0)};
    const std::string text = ok ? "verified" : "SHA-256 mismatch";
    d.insert(d.end(), text.begin(), text.end());
    (void)node.send(m->peer, std::move(d));
    (void)co_await node.flush(m->peer);
    std::cout << "{\"event\":\"received\",\"name\":\"" << f.name << "\",\"bytes\":" << f.size
              << ",\"sha256\":\"" << hex(got.value_or(digest{}))
              << "\",\"ok\":" << (ok ? "true" : "false") << ",\"resumed_from\":" << f.resumed_from
              << "}" << std::endl;
    files.erase(it);
    if (once && ok) co_return 0;
  }
}

asio::awaitable<int> listen_and_receive(crust::service& node, fs::path dir, bool once) {
  auto at = co_await node.start();
  if (!at) {
    std::cerr << "crust-send-file: cannot listen: " << at.error().message() << "\n";
    co_return 1;
  }
  std::cout << "{\"event\":\"listening\",\"endpoint\":\"" << at->address().to_string() << ":"
            << at->port() << "\",\"key\":\"" << node.id().public_key().to_string() << "\"}"
            << std::endl;
  co_return co_await receive(node, std::move(dir), once);
}

int usage() {
  std::cerr << "usage: crust-send-file receive --dir DIR [--address A] [--port P] [--key FILE] "
               "[--once]\n"
               "       crust-send-file send FILE IP:PORT --peer KEY [--key FILE] [--retry-for S] "
               "[--limit MIB_PER_S]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  std::string dir = ".", key_file, peer_hex, address = "0.0.0.0";
  int port = 0;
  double retry_for = 60, limit = 0;
  bool once = false;
  std::vector<std::string> rest;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--dir")
      dir = value();
    else if (a == "--port")
      port = std::atoi(value().c_str());
    else if (a == "--address")
      address = value();
    else if (a == "--key")
      key_file = value();
    else if (a == "--peer")
      peer_hex = value();
    else if (a == "--retry-for")
      retry_for = std::atof(value().c_str());
    else if (a == "--limit")
      limit = std::atof(value().c_str());
    else if (a == "--once")
      once = true;
    else
      rest.push_back(a);
  }
  if (key_file.empty()) key_file = mode == "send" ? "sender.key" : "receiver.key";
  auto id = crust::identity::load_or_create(key_file);
  if (!id) {
    std::cerr << "crust-send-file: " << key_file << ": " << id.error().message() << "\n";
    return 1;
  }
  crust::config cfg;
  cfg.listen_address = address;  // loopback: no port mapping is asked for
  cfg.tcp_acceptor_port = static_cast<std::uint16_t>(port);
  cfg.enable_lan_discovery = false;
  asio::io_context io;
  crust::service node(io.get_executor(), cfg, *id);
  int rc = 1;
  std::optional<asio::awaitable<int>> job;
  if (mode == "receive") {
    std::error_code ec;
    fs::create_directories(dir, ec);
    job = listen_and_receive(node, dir, once);
  } else if (mode == "send" && rest.size() == 2) {
    auto to = crust::transport::parse_endpoint(rest[1]);
    auto key = crust::peer_key::parse(peer_hex);
    if (!to || !key) return usage();
    job = send(node, rest[0], *to, *key, retry_for, limit);
  } else {
    return usage();
  }
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        rc = co_await std::move(*job);
        co_await node.stop();
        signals.cancel();
      },
      [&](std::exception_ptr e) {
        if (e) rc = 3;
      });
  signals.async_wait([&](auto ec, int) {
    if (!ec) io.stop();
  });
  io.run();
  return rc;
}
