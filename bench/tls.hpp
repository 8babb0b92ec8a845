// The TLS 1.3 baseline: a server and a client context from the same
// OpenSSL that Crust uses, restricted to TLS 1.3 and one cipher suite, with
// a fresh self-signed Ed25519 certificate that the client pins (it verifies
// the server's CertificateVerify signature, as a real client would). Only
// the benchmarks include this (asio/ssl is heavy).
#pragma once

#include <boost/asio/ssl.hpp>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <stdexcept>
#include <string>

namespace bench {

struct tls_contexts {
  boost::asio::ssl::context server{boost::asio::ssl::context::tls_server};
  boost::asio::ssl::context client{boost::asio::ssl::context::tls_client};
};

// `suite`: an OpenSSL TLS 1.3 cipher suite name, e.g.
// "TLS_CHACHA20_POLY1305_SHA256" or "TLS_AES_256_GCM_SHA384".
inline std::unique_ptr<tls_contexts> make_tls(const std::string& suite) {
  auto fail = [](const char* what) { throw std::runtime_error(std::string("tls: ") + what); };
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
      EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"), EVP_PKEY_free);
  if (!key) fail("keygen");
  std::unique_ptr<X509, decltype(&X509_free)> cert(X509_new(), X509_free);
  if (!cert) fail("X509_new");
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
  X509_set_pubkey(cert.get(), key.get());
  // A name of its own: a store that trusts two of these (bench_connect's
  // dialler) finds each by its subject.
  unsigned char r[8];
  RAND_bytes(r, sizeof r);
  std::string cn = "crust-bench-";
  for (unsigned char b : r) cn += "0123456789abcdef"[b >> 4], cn += "0123456789abcdef"[b & 15];
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  if (X509_sign(cert.get(), key.get(), nullptr) <= 0) fail("X509_sign");

  auto t = std::make_unique<tls_contexts>();
  for (auto* c : {&t->server, &t->client}) {
    SSL_CTX* ctx = c->native_handle();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, suite.c_str()) != 1)
      fail("cipher suite");
    // No session tickets: every connection is a full handshake, as Crust's are.
    SSL_CTX_set_num_tickets(ctx, 0);
  }
  if (SSL_CTX_use_certificate(t->server.native_handle(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(t->server.native_handle(), key.get()) != 1)
    fail("server key");
  if (X509_STORE_add_cert(SSL_CTX_get_cert_store(t->client.native_handle()), cert.get()) != 1)
    fail("client trust");
  t->client.set_verify_mode(boost::asio::ssl::verify_peer);
  return t;
}

}  // namespace bench
