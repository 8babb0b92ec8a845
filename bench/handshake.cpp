// Handshakes per second per core, against the bound the same OpenSSL sets.
//
// One thread runs both sides of Crust's handshake (Noise XK with the
// identity proofs: crust/secure/handshake.hpp), message by message in
// memory, as fast as it can. Each handshake needs, over both sides:
//   2 X25519 key generations (the ephemerals),
//   6 X25519 shared secrets (es, ee, se on each side),
//   2 Ed25519 signatures and 2 Ed25519 verifications (the identity proofs).
// The bound is 1 / (2 t_keygen + 6 t_dh + 2 t_sign + 2 t_verify), where each
// t is the time of that one OpenSSL operation measured here, in the same
// run, through EVP with its keys already loaded (the cheapest way to call
// it). Both are measured in interleaved rounds; medians reported. Because
// one core does both ends, "handshakes per second per core" counts a
// handshake once although both of its ends ran.
//   bench_handshake [repetitions] [out.json] [--quick]
#include "crust/secure/handshake.hpp"
#include "bench/common.hpp"
#include "crust/secure/identity.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>

using namespace crust;
using steady = std::chrono::steady_clock;

namespace {

double seconds_per_round = 0.5;

// Calls f() repeatedly for about seconds_per_round; returns seconds per call.
double time_per_call(const std::function<void()>& f) {
  std::uint64_t n = 0;
  const auto t0 = steady::now();
  auto until = t0 + std::chrono::duration<double>(seconds_per_round);
  steady::time_point now;
  do {
    for (int i = 0; i < 16; ++i) f();
    n += 16;
    now = steady::now();
  } while (now < until);
  return std::chrono::duration<double>(now - t0).count() / static_cast<double>(n);
}

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(what);
}

using pkey = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

struct openssl_ops {
  double keygen, dh, sign, verify;  // seconds per operation
};

openssl_ops measure_openssl() {
  pkey a(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"), EVP_PKEY_free);
  pkey b(EVP_PKEY_Q_keygen(nullptr, nullptr, "X25519"), EVP_PKEY_free);
  pkey ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free);
  check(a && b && ed, "keygen");
  openssl_ops r{};
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> kctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "X25519", nullptr), EVP_PKEY_CTX_free);
  check(kctx && EVP_PKEY_keygen_init(kctx.get()) == 1, "keygen init");
  r.keygen = time_per_call([&] {
    EVP_PKEY* k = nullptr;
    check(EVP_PKEY_keygen(kctx.get(), &k) == 1, "keygen");
    EVP_PKEY_free(k);
  });
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> dctx(
      EVP_PKEY_CTX_new(a.get(), nullptr), EVP_PKEY_CTX_free);
  check(dctx && EVP_PKEY_derive_init(dctx.get()) == 1 &&
            EVP_PKEY_derive_set_peer(dctx.get(), b.get()) == 1,
        "derive init");
  r.dh = time_per_call([&] {
    unsigned char out[32];
    std::size_t len = sizeof out;
    check(EVP_PKEY_derive(dctx.get(), out, &len) == 1, "derive");
  });
  unsigned char msg[100];
  RAND_bytes(msg, sizeof msg);
  unsigned char sig[64];
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> mctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  r.sign = time_per_call([&] {
    std::size_t len = sizeof sig;
    check(EVP_DigestSignInit(mctx.get(), nullptr, nullptr, nullptr, ed.get()) == 1 &&
              EVP_DigestSign(mctx.get(), sig, &len, msg, sizeof msg) == 1,
          "sign");
  });
  r.verify = time_per_call([&] {
    check(EVP_DigestVerifyInit(mctx.get(), nullptr, nullptr, nullptr, ed.get()) == 1 &&
              EVP_DigestVerify(mctx.get(), sig, sizeof sig, msg, sizeof msg) == 1,
          "verify");
  });
  return r;
}

// One whole handshake, both ends, in memory.
void one_handshake(const identity& client, const identity& server) {
  auto i = secure::handshake::initiator(client, "bench", server.public_key());
  auto r = secure::handshake::responder(server, "bench", false);
  auto si = i.start();
  auto sr = r.start();
  check(si && sr, "start");
  // Alternate: whoever has bytes to send hands them to the other.
  bool to_responder = true;
  bytes msg = si->send;
  for (int step = 0; step < 3; ++step) {
    auto next = to_responder ? r.receive(msg) : i.receive(msg);
    check(next.has_value(), "receive");
    msg = next->send;
    to_responder = !to_responder;
    if (msg.empty()) break;
  }
  auto a = i.finish();
  auto b = r.finish();
  check(a && b, "finish");
}

}  // namespace

int main(int argc, char** argv) {
  const auto cl = bench::parse_command_line(argc, argv);
  const auto& args = cl.args;
  const bool quick = cl.quick;
  const int reps = args.size() > 0 ? std::max(1, std::atoi(args[0].c_str())) : 5;
  const std::string json_out = args.size() > 1 ? args[1] : "";
  if (quick) seconds_per_round = 0.05;

  const auto client = identity::generate();
  const auto server = identity::generate();
  std::vector<double> hs_rate, bound_rate, keygen, dh, sign, verify;
  for (int rep = 0; rep < reps; ++rep) {  // interleaved: the bound, then the handshakes
    auto ops = measure_openssl();
    keygen.push_back(1 / ops.keygen);
    dh.push_back(1 / ops.dh);
    sign.push_back(1 / ops.sign);
    verify.push_back(1 / ops.verify);
    bound_rate.push_back(1 / (2 * ops.keygen + 6 * ops.dh + 2 * ops.sign + 2 * ops.verify));
    hs_rate.push_back(1 / time_per_call([&] { one_handshake(client, server); }));
  }
  const double h = bench::median(hs_rate), b = bench::median(bound_rate);
  std::printf(
      "| OpenSSL X25519 keygen/s | X25519 DH/s | Ed25519 sign/s | Ed25519 verify/s | "
      "bound handshakes/s | Crust handshakes/s | Crust / bound |\n");
  std::printf("|---:|---:|---:|---:|---:|---:|---:|\n");
  std::printf("| %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f |\n", bench::median(keygen),
              bench::median(dh), bench::median(sign), bench::median(verify), b, h, h / b);
  bench::write_json(
      json_out,
      {{"benchmark", "handshake"},
       {"repetitions", reps},
       {"ops_per_handshake",
        {{"x25519_keygen", 2}, {"x25519_dh", 6}, {"ed25519_sign", 2}, {"ed25519_verify", 2}}},
       {"x25519_keygen_per_s", bench::median(keygen)},
       {"x25519_dh_per_s", bench::median(dh)},
       {"ed25519_sign_per_s", bench::median(sign)},
       {"ed25519_verify_per_s", bench::median(verify)},
       {"bound_handshakes_per_s", b},
       {"crust_handshakes_per_s", h},
       {"ratio_bound", h / b},
       {"samples", {{"crust", bench::to_json(hs_rate)}, {"bound", bench::to_json(bound_rate)}}}});
  return 0;
}
