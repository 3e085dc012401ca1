#include "http/server.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <stdexcept>

namespace licensing::http {
namespace {

// TLS 1.2 suites: ECDHE key exchange with an AEAD cipher only (RFC 9325 section 4.2).
// TLS 1.3 suites are all AEAD with ephemeral key exchange.
constexpr const char* tls12_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* tls13_ciphersuites = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* groups = "X25519:P-256:P-384";

// Throws with the oldest queued OpenSSL error, and clears the queue so that a stale error
// does not appear in a later message.
[[noreturn]] void throw_openssl(const std::string& what) {
  char reason[256] = "no OpenSSL error queued";
  if (const unsigned long code = ERR_get_error(); code != 0) ERR_error_string_n(code, reason, sizeof reason);
  ERR_clear_error();
  throw std::runtime_error("TLS context: " + what + ": " + reason);
}

}  // namespace

std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const std::string& certificate_chain_file,
                                                                   const std::string& private_key_file) {
  auto context = std::make_shared<boost::asio::ssl::context>(boost::asio::ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();

  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1) throw_openssl("setting TLS 1.2 as the minimum failed");

  // No compression (CRIME), no renegotiation, the server's cipher order.
  SSL_CTX_set_options(native, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);

  // No session resumption at all: no tickets (so there is no ticket key to rotate) and no
  // server-side session cache.
  SSL_CTX_set_options(native, SSL_OP_NO_TICKET);
  if (SSL_CTX_set_num_tickets(native, 0) != 1) throw_openssl("disabling TLS 1.3 session tickets failed");
  SSL_CTX_set_session_cache_mode(native, SSL_SESS_CACHE_OFF);

  if (SSL_CTX_set_cipher_list(native, tls12_ciphers) != 1) throw_openssl("setting the TLS 1.2 cipher list failed");
  if (SSL_CTX_set_ciphersuites(native, tls13_ciphersuites) != 1) throw_openssl("setting the TLS 1.3 cipher suites failed");
  if (SSL_CTX_set1_groups_list(native, groups) != 1) throw_openssl("setting the key exchange groups failed");

  if (SSL_CTX_use_certificate_chain_file(native, certificate_chain_file.c_str()) != 1) {
    throw_openssl("loading the certificate chain from " + certificate_chain_file + " failed");
  }
  if (SSL_CTX_use_PrivateKey_file(native, private_key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw_openssl("loading the private key from " + private_key_file + " failed");
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    throw_openssl("the private key in " + private_key_file + " does not match the certificate in " + certificate_chain_file);
  }
  return context;
}

}  // namespace licensing::http
