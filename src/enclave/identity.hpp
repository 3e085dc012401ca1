// The enclave's TLS identity: a P-256 key made in the private directory, which never leaves
// it, and the certificate chain that licensing-core issues for a CSR over that key.
//
// Files in the private directory, all mode 0600:
//   private-key.pem         the key (PKCS#8)
//   cert-chain.pem          the leaf, then the issuing CA
//   renewal-credential      the single-use credential for the next renewal
//   private-key.next.pem    a new key while its CSR is in flight
//   cert-chain.next.pem     a received chain before it replaces cert-chain.pem
// A crash during enrollment leaves the ".next" files behind; load_stored() completes the
// switch when the new chain was stored, and discards the new key otherwise.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "client/https_client.hpp"
#include "common/error.hpp"
#include "common/secret.hpp"
#include "crypto/openssl.hpp"
#include "enclave/config.hpp"

namespace licensing::enclave {

enum class IdentityError {
  io,                // reading or writing a file in the private directory failed
  no_credential,     // the bootstrap or renewal credential file is missing or empty
  unreachable,       // the CSR endpoint could not be reached or returned 429 or 5xx, so a retry may help
  rejected,          // the CSR endpoint returned another non-200 status: it rejected the credential or CSR
  invalid_response,  // a 200 response whose body is not the documented JSON
  untrusted,         // a chain that does not verify against the CA bundle now, does not name
                     // this enclave, or whose leaf key is not ours
  crypto,            // making the key or the CSR failed
};

std::string_view to_string(IdentityError code);

struct IdentityPaths {
  explicit IdentityPaths(const std::filesystem::path& directory);
  std::filesystem::path key;
  std::filesystem::path chain;
  std::filesystem::path renewal_credential;
  std::filesystem::path next_key;
  std::filesystem::path next_chain;
};

struct Identity {
  crypto::ossl::Pkey key;
  crypto::ossl::X509Cert leaf;
  std::string chain_pem;  // the leaf, then the intermediates, as stored
  std::chrono::system_clock::time_point not_before;
  std::chrono::system_clock::time_point not_after;
};

// Sends one HTTPS request (client::send in production).
using Transport = std::function<Result<client::HttpResponse, client::HttpError>(const client::HttpRequest&)>;
using TimeSource = std::function<std::chrono::system_clock::time_point()>;

// The DNS name that an enclave's certificate must carry.
std::string enclave_dns_name(std::string_view enclave_id);

class IdentityManager {
 public:
  IdentityManager(Config config, Transport transport, TimeSource now);

  // Finishes or discards an interrupted enrollment, then loads the stored key and chain.
  // Returns nullopt when none is stored, and fails with `untrusted` when the stored chain
  // is not valid now (expired, say) or does not belong to the stored key.
  Result<std::optional<Identity>, IdentityError> load_stored();

  // Makes a new key and requests its certificate with the bootstrap credential
  // ("Authorization: Bootstrap ..."). On success it stores the key, the chain and the new
  // renewal credential, and deletes the bootstrap file.
  Result<Identity, IdentityError> enroll();

  // The same with the stored renewal credential ("Authorization: Renewal ...").
  Result<Identity, IdentityError> renew();

  // Checks that `chain_pem` starts with a leaf for `key`, that the chain verifies against
  // the CA bundle at the current time for serverAuth, and that the leaf names this
  // enclave's DNS name.
  Result<Identity, IdentityError> verify(crypto::ossl::Pkey key, std::string chain_pem) const;

  // When renewal is due: not_before plus the configured fraction of the lifetime.
  std::chrono::system_clock::time_point renewal_time(const Identity& identity) const;

  const IdentityPaths& paths() const { return paths_; }

 private:
  enum class CredentialKind { bootstrap, renewal };
  Result<Identity, IdentityError> request(CredentialKind kind);
  Result<void, IdentityError> recover();
  Result<void, IdentityError> commit(const Identity& identity, const SecretBytes& renewal_credential);

  const Config config_;
  const IdentityPaths paths_;
  const Transport transport_;
  const TimeSource now_;
};

// Calls `attempt` until it succeeds, fails with an error other than `unreachable`, or
// `budget` has passed since the first call. It waits 1 s, 2 s, 4 s, ... (at most 10 s)
// between attempts through `sleep`, and logs each failed attempt.
Result<Identity, IdentityError> with_retries(const std::function<Result<Identity, IdentityError>()>& attempt,
                                             std::chrono::seconds budget,
                                             const std::function<void(std::chrono::seconds)>& sleep,
                                             const TimeSource& now);

}  // namespace licensing::enclave
