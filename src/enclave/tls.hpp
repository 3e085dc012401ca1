// The enclave's TLS server context. It starts from the http module's hardened settings
// (TLS 1.2 and 1.3, ECDHE AEAD suites, no resumption) and adds:
//  - client certificates verified against the CA bundle. With require_client_cert they
//    are mandatory; otherwise one is checked only when the client presents it.
//  - the owner check: a client certificate whose subjectAltName URI is not
//    urn:licensing:user:<owner> fails the handshake (no HTTP status is sent).
//  - a certificate callback that serves the current identity, so a renewed certificate
//    applies to new handshakes while open connections keep the one they began with.
#pragma once

#include <utility>  // Boost 1.74's asio headers need it first with GCC 12.

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <mutex>
#include <string>

#include "crypto/openssl.hpp"
#include "enclave/config.hpp"
#include "enclave/identity.hpp"

namespace licensing::enclave {

// The certificate and key that new handshakes present. Thread-safe.
class ServerCredentials {
 public:
  // Takes the leaf, the rest of the chain and the key from `identity`.
  explicit ServerCredentials(const Identity& identity);
  void replace(const Identity& identity);

  // Installs the current credentials on a connection; returns false on failure.
  bool apply(SSL* connection) const;

 private:
  struct Current {
    crypto::ossl::X509Cert leaf;
    crypto::ossl::X509Stack intermediates;
    crypto::ossl::Pkey key;
  };
  static std::shared_ptr<const Current> load(const Identity& identity);

  mutable std::mutex mutex_;
  std::shared_ptr<const Current> current_;  // guarded by mutex_
};

// Builds the server context from the stored identity files and the CA bundle. The context
// keeps a pointer to `credentials`, which must outlive it. Throws std::runtime_error on a
// file or OpenSSL failure (start-up only).
std::shared_ptr<boost::asio::ssl::context> make_enclave_tls_context(const Config& config, const IdentityPaths& paths,
                                                                     const ServerCredentials& credentials);

}  // namespace licensing::enclave
