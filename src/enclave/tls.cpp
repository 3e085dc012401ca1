#include "enclave/tls.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <stdexcept>

#include "common/logging.hpp"
#include "enclave/access.hpp"
#include "http/server.hpp"

namespace licensing::enclave {
namespace {

namespace ossl = crypto::ossl;
namespace ssl = boost::asio::ssl;

constexpr unsigned char session_id_context[] = "licensing-enclave";

// OpenSSL calls this before it picks the server certificate of each handshake.
int select_certificate(SSL* connection, void* argument) {
  const auto* credentials = static_cast<const ServerCredentials*>(argument);
  return credentials->apply(connection) ? 1 : 0;
}

// Returns whether the chain is acceptable; at depth 0 it also checks the owner URI.
bool verify_client(const std::string& owner, bool preverified, ssl::verify_context& context) {
  X509_STORE_CTX* store = context.native_handle();
  if (!preverified) {
    logging::warn("client_certificate_rejected",
                  {{"reason", X509_verify_cert_error_string(X509_STORE_CTX_get_error(store))},
                   {"depth", X509_STORE_CTX_get_error_depth(store)}});
    return false;
  }
  if (X509_STORE_CTX_get_error_depth(store) != 0) return true;

  auto checked = check_client_certificate(X509_STORE_CTX_get_current_cert(store), owner);
  if (!checked) {
    logging::warn("client_certificate_rejected", {{"reason", to_string(checked.error().code)}, {"detail", checked.error().detail}});
    return false;
  }
  return true;
}

}  // namespace

ServerCredentials::ServerCredentials(const Identity& identity) : current_(load(identity)) {}

void ServerCredentials::replace(const Identity& identity) {
  auto next = load(identity);
  const std::lock_guard lock(mutex_);
  current_ = std::move(next);
}

std::shared_ptr<const ServerCredentials::Current> ServerCredentials::load(const Identity& identity) {
  auto current = std::make_shared<Current>();
  X509_up_ref(identity.leaf.get());
  current->leaf.reset(identity.leaf.get());
  EVP_PKEY_up_ref(identity.key.get());
  current->key.reset(identity.key.get());

  current->intermediates.reset(sk_X509_new_null());
  ossl::Bio bio(BIO_new_mem_buf(identity.chain_pem.data(), static_cast<int>(identity.chain_pem.size())));
  if (!current->intermediates || !bio) throw std::runtime_error("allocating the certificate chain failed");
  bool first = true;
  while (ossl::X509Cert certificate{PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)}) {
    if (first) {
      first = false;
      continue;
    }
    if (sk_X509_push(current->intermediates.get(), certificate.get()) <= 0) throw std::runtime_error("building the chain failed");
    static_cast<void>(certificate.release());
  }
  ERR_clear_error();
  return current;
}

bool ServerCredentials::apply(SSL* connection) const {
  std::shared_ptr<const Current> current;
  {
    const std::lock_guard lock(mutex_);
    current = current_;
  }
  // SSL_use_cert_and_key takes its own references; override replaces what the context set.
  if (SSL_use_cert_and_key(connection, current->leaf.get(), current->key.get(), current->intermediates.get(), 1) != 1) {
    logging::error("tls_certificate_failed", {{"error", ossl::drain_errors()}});
    return false;
  }
  return true;
}

std::shared_ptr<ssl::context> make_enclave_tls_context(const Config& config, const IdentityPaths& paths,
                                                       const ServerCredentials& credentials) {
  auto context = http::make_server_tls_context(paths.chain.string(), paths.key.string());
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_cert_cb(native, select_certificate, const_cast<ServerCredentials*>(&credentials));

  boost::system::error_code ec;
  context->load_verify_file(config.ca_bundle_file.string(), ec);
  if (ec) throw std::runtime_error("loading the CA bundle " + config.ca_bundle_file.string() + " failed: " + ec.message());

  // Tell clients which CA their certificate must come from.
  if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.ca_bundle_file.c_str())) {
    SSL_CTX_set_client_CA_list(native, names);
  }
  ERR_clear_error();
  if (SSL_CTX_set_session_id_context(native, session_id_context, sizeof session_id_context - 1) != 1) {
    throw std::runtime_error("setting the TLS session id context failed: " + ossl::drain_errors());
  }

  ssl::verify_mode mode = ssl::verify_peer;
  if (config.require_client_cert) mode |= ssl::verify_fail_if_no_peer_cert;
  context->set_verify_mode(mode);
  context->set_verify_callback(
      [owner = config.owner](bool preverified, ssl::verify_context& verify) { return verify_client(owner, preverified, verify); });
  return context;
}

}  // namespace licensing::enclave
