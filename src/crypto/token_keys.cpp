#include "crypto/token_keys.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <utility>
#include <vector>

#include "common/base64url.hpp"
#include "common/json.hpp"
#include "common/logging.hpp"
#include "crypto/jwk.hpp"
#include "crypto/jws.hpp"
#include "crypto/openssl.hpp"

namespace licensing::crypto {
namespace {

using Clock = std::chrono::system_clock;

constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
constexpr std::size_t kMaxSidecarBytes = 4096;
constexpr std::size_t kMinHs256SecretBytes = 32;

// One ES256 key pair with its public JWK. Immutable once built, so it is shared between
// threads without a lock.
struct SigningKey {
  std::string kid;
  ossl::Pkey key;
  Clock::time_point created_at;
  nlohmann::json jwk;  // public members plus kid, alg and use
};
using SigningKeyPtr = std::shared_ptr<const SigningKey>;

KeyError key_error(ossl::FileError error) {
  switch (error) {
    case ossl::FileError::permissions:
      return KeyError::permissions;
    case ossl::FileError::too_large:
      return KeyError::invalid;
    case ossl::FileError::io:
    case ossl::FileError::not_found:
      return KeyError::io;
  }
  return KeyError::io;
}

std::filesystem::path pem_path(const std::filesystem::path& directory, std::string_view kid) {
  return directory / (std::string(kid) + ".pem");
}

// The key's creation time lives in a sidecar file "<kid>.json", {"created_at": <Unix seconds>},
// because file times change when a directory is copied or restored from a backup.
std::filesystem::path sidecar_path(const std::filesystem::path& directory, std::string_view kid) {
  return directory / (std::string(kid) + ".json");
}

Result<SigningKeyPtr, KeyError> make_signing_key(ossl::Pkey key, Clock::time_point created_at) {
  auto kid = detail::jwk_thumbprint(key.get());
  auto jwk = detail::public_jwk(key.get());
  if (!kid || !jwk) return fail(KeyError::invalid, "the key is not a P-256 key");

  (*jwk)["kid"] = *kid;
  (*jwk)["alg"] = "ES256";
  (*jwk)["use"] = "sig";
  return std::make_shared<const SigningKey>(SigningKey{*kid, std::move(key), created_at, std::move(*jwk)});
}

// Reads the sidecar; without one, falls back to the key file's modification time, so a
// key file copied in by an operator still loads.
Result<Clock::time_point, KeyError> read_created_at(const std::filesystem::path& directory, std::string_view kid) {
  const auto sidecar = sidecar_path(directory, kid);
  auto text = ossl::read_public_file(sidecar, kMaxSidecarBytes);
  if (!text && text.error().code != ossl::FileError::not_found) {
    return fail(key_error(text.error().code), text.error().detail);
  }

  if (!text) {
    struct stat status {};
    const auto pem = pem_path(directory, kid);
    if (::stat(pem.c_str(), &status) != 0) return fail(KeyError::io, "stat " + pem.string() + " failed");
    return Clock::time_point(std::chrono::seconds(status.st_mtim.tv_sec));
  }

  auto parsed = json::parse_strict(*text, 2);
  if (!parsed || !parsed->is_object() || !parsed->contains("created_at") || !(*parsed)["created_at"].is_number_integer()) {
    return fail(KeyError::invalid, sidecar.string() + " must be {\"created_at\": <Unix seconds>}");
  }
  return Clock::time_point(std::chrono::seconds((*parsed)["created_at"].get<std::int64_t>()));
}

// Loads "<kid>.pem": a private file, a P-256 key, and a kid equal to the key's thumbprint.
Result<SigningKeyPtr, KeyError> load_key(const std::filesystem::path& directory, std::string_view kid) {
  const auto path = pem_path(directory, kid);
  if (!detail::is_valid_kid(kid)) {
    return fail(KeyError::invalid, path.string() + ": the file name is not a valid kid");
  }

  auto pem = ossl::read_private_file(path, kMaxKeyFileBytes);
  if (!pem) return fail(key_error(pem.error().code), pem.error().detail);

  auto key = ossl::private_key_from_pem(pem->text());
  if (!key) return fail(KeyError::invalid, path.string() + ": " + key.error().detail);
  if (!ossl::is_p256(key->get())) return fail(KeyError::invalid, path.string() + " does not hold a P-256 key");

  auto created_at = read_created_at(directory, kid);
  if (!created_at) return std::unexpected(std::move(created_at.error()));

  auto loaded = make_signing_key(std::move(*key), *created_at);
  if (!loaded) return std::unexpected(std::move(loaded.error()));
  if ((*loaded)->kid != kid) {
    return fail(KeyError::invalid, path.string() + ": the file name does not match the key's JWK thumbprint " + (*loaded)->kid);
  }
  return loaded;
}

Result<std::vector<SigningKeyPtr>, KeyError> load_keys(const std::filesystem::path& directory) {
  std::vector<SigningKeyPtr> keys;
  std::error_code error;
  for (std::filesystem::directory_iterator entry(directory, error), end; !error && entry != end; entry.increment(error)) {
    // Temporary files ("<kid>.pem.tmp-...") and sidecars have other extensions.
    if (entry->path().extension() != ".pem") continue;

    auto key = load_key(directory, entry->path().stem().string());
    if (!key) return std::unexpected(std::move(key.error()));
    keys.push_back(std::move(*key));
  }
  if (error) return fail(KeyError::io, "listing " + directory.string() + " failed: " + error.message());

  std::sort(keys.begin(), keys.end(), [](const SigningKeyPtr& a, const SigningKeyPtr& b) {
    return std::tie(a->created_at, a->kid) < std::tie(b->created_at, b->kid);
  });
  return keys;
}

Result<SigningKeyPtr, KeyError> create_key(const std::filesystem::path& directory, Clock::time_point now) {
  ossl::Pkey key = ossl::generate_p256_key();
  if (!key) return fail(KeyError::invalid, "generating a P-256 key failed");
  auto pem = ossl::private_key_to_pem(key.get());
  if (!pem) return fail(KeyError::invalid, pem.error().detail);

  auto created = make_signing_key(std::move(key), now);
  if (!created) return std::unexpected(std::move(created.error()));
  const std::string& kid = (*created)->kid;

  // The sidecar first: once the key file is visible, its creation time is too.
  const nlohmann::json sidecar = {{"created_at", std::chrono::floor<std::chrono::seconds>(now.time_since_epoch()).count()}};
  if (auto written = ossl::write_file_atomically(sidecar_path(directory, kid), sidecar.dump() + "\n", 0600); !written) {
    return fail(key_error(written.error().code), written.error().detail);
  }
  if (auto written = ossl::write_file_atomically(pem_path(directory, kid), pem->view(), 0600); !written) {
    return fail(key_error(written.error().code), written.error().detail);
  }

  logging::info("token_key_created", {{"kid", kid}});
  return created;
}

void delete_key_files(const std::filesystem::path& directory, std::string_view kid) {
  std::error_code pem_error;
  std::error_code sidecar_error;
  std::filesystem::remove(pem_path(directory, kid), pem_error);
  std::filesystem::remove(sidecar_path(directory, kid), sidecar_error);
  if (pem_error || sidecar_error) {
    logging::warn("token_key_delete_failed",
                  {{"kid", kid}, {"error", (pem_error ? pem_error : sidecar_error).message()}});
    return;
  }
  logging::info("token_key_deleted", {{"kid", kid}});
}

class Es256TokenKeys final : public TokenKeys {
 public:
  explicit Es256TokenKeys(TokenKeysConfig config, std::vector<SigningKeyPtr> keys)
      : config_(std::move(config)), keys_(std::move(keys)) {}

  Result<std::string, TokenError> sign(const nlohmann::json& claims) const override {
    const SigningKeyPtr key = current();
    if (!key) return fail(TokenError::signing_failed, "no current signing key");

    auto input = detail::jwt_signing_input(detail::JwsAlgorithm::es256, key->kid, claims);
    if (!input) return std::unexpected(std::move(input.error()));
    auto signature = detail::sign_es256(key->key.get(), *input);
    if (!signature) return std::unexpected(std::move(signature.error()));
    return *input + "." + base64url::encode(*signature);
  }

  Result<nlohmann::json, TokenError> verify(std::string_view token, const VerifyOptions& options) const override {
    return detail::verify_jwt(token, detail::JwsAlgorithm::es256, options,
                              [this](const detail::DecodedJws& decoded) -> Result<void, TokenError> {
                                const SigningKeyPtr key = find(decoded.kid);
                                if (!key) return fail(TokenError::unknown_key, "kid " + decoded.kid + " is not in the key set");
                                return detail::verify_es256(key->key.get(), decoded.signing_input, decoded.signature);
                              });
  }

  nlohmann::json jwks() const override {
    const std::shared_lock lock(mutex_);
    nlohmann::json keys = nlohmann::json::array();
    for (auto key = keys_.rbegin(); key != keys_.rend(); ++key) keys.push_back((*key)->jwk);
    return {{"keys", std::move(keys)}};
  }

  Result<std::string, KeyError> rotate(Clock::time_point now) override {
    auto created = create_key(config_.key_directory, now);
    if (!created) return std::unexpected(std::move(created.error()));

    const std::unique_lock lock(mutex_);
    keys_.push_back(*created);
    prune(now);
    return (*created)->kid;
  }

  std::string current_kid() const override {
    const SigningKeyPtr key = current();
    return key ? key->kid : std::string();
  }

  bool rotation_due(Clock::time_point now) const override {
    const SigningKeyPtr key = current();
    return !key || now - key->created_at >= config_.rotation_period;
  }

  // Deletes retired keys past retention from memory and from disk, and never the current
  // key. A retired key is deleted when it is older than rotation_period + retention and its
  // successor has been current for at least `retention`. The second condition keeps a key
  // that stayed current too long (no rotation while the server was down), so the tokens it
  // signed just before it was replaced still verify. The caller holds the exclusive lock.
  void prune(Clock::time_point now) {
    const auto max_age = config_.rotation_period + config_.retention;
    std::vector<SigningKeyPtr> retained;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      const bool is_current = i + 1 == keys_.size();
      const bool too_old = now - keys_[i]->created_at > max_age;
      const bool retired_long_enough = !is_current && now - keys_[i + 1]->created_at >= config_.retention;
      if (!is_current && too_old && retired_long_enough) {
        delete_key_files(config_.key_directory, keys_[i]->kid);
        continue;
      }
      retained.push_back(keys_[i]);
    }
    keys_ = std::move(retained);
  }

 private:
  SigningKeyPtr current() const {
    const std::shared_lock lock(mutex_);
    return keys_.empty() ? nullptr : keys_.back();
  }

  SigningKeyPtr find(std::string_view kid) const {
    const std::shared_lock lock(mutex_);
    const auto found = std::find_if(keys_.begin(), keys_.end(), [&](const SigningKeyPtr& key) { return key->kid == kid; });
    return found == keys_.end() ? nullptr : *found;
  }

  const TokenKeysConfig config_;
  mutable std::shared_mutex mutex_;
  std::vector<SigningKeyPtr> keys_;  // oldest first; the last one is current
};

// HS256 compatibility mode: one configured secret signs and verifies; the JWKS is empty.
class Hs256TokenKeys final : public TokenKeys {
 public:
  Hs256TokenKeys(SecretBytes secret, std::string kid) : secret_(std::move(secret)), kid_(std::move(kid)) {}

  Result<std::string, TokenError> sign(const nlohmann::json& claims) const override {
    auto input = detail::jwt_signing_input(detail::JwsAlgorithm::hs256, kid_, claims);
    if (!input) return std::unexpected(std::move(input.error()));
    auto mac = detail::hmac_sha256(secret_.view(), *input);
    if (!mac) return std::unexpected(std::move(mac.error()));
    return *input + "." + base64url::encode(*mac);
  }

  Result<nlohmann::json, TokenError> verify(std::string_view token, const VerifyOptions& options) const override {
    return detail::verify_jwt(token, detail::JwsAlgorithm::hs256, options,
                              [this](const detail::DecodedJws& decoded) -> Result<void, TokenError> {
                                if (decoded.kid != kid_) {
                                  return fail(TokenError::unknown_key, "kid " + decoded.kid + " is not the HS256 key");
                                }
                                return detail::verify_hs256(secret_.view(), decoded.signing_input, decoded.signature);
                              });
  }

  nlohmann::json jwks() const override { return {{"keys", nlohmann::json::array()}}; }

  Result<std::string, KeyError> rotate(Clock::time_point /*now*/) override {
    return fail(KeyError::config, "an HS256 secret comes from the configuration; rotate it there and restart");
  }

  std::string current_kid() const override { return kid_; }

  bool rotation_due(Clock::time_point /*now*/) const override { return false; }

 private:
  const SecretBytes secret_;
  const std::string kid_;
};

Result<std::unique_ptr<TokenKeys>, KeyError> open_hs256(SecretBytes secret) {
  if (secret.size() < kMinHs256SecretBytes) {
    return fail(KeyError::config, "hs256_secret is " + std::to_string(secret.size()) + " bytes, the minimum is " +
                                      std::to_string(kMinHs256SecretBytes));
  }

  // The kid is derived with HMAC, so it names the secret without revealing a plain hash
  // of it that could be used to test guesses offline.
  auto mac = detail::hmac_sha256(secret.view(), "licensing-hs256-kid");
  if (!mac) return fail(KeyError::config, mac.error().detail);
  std::string kid = "hs256-" + base64url::encode(std::span(mac->data(), 12));
  return std::make_unique<Hs256TokenKeys>(std::move(secret), std::move(kid));
}

}  // namespace

std::string_view to_string(TokenError code) {
  switch (code) {
    case TokenError::too_large: return "too_large";
    case TokenError::malformed: return "malformed";
    case TokenError::unsupported_algorithm: return "unsupported_algorithm";
    case TokenError::forbidden_header: return "forbidden_header";
    case TokenError::unknown_key: return "unknown_key";
    case TokenError::bad_signature: return "bad_signature";
    case TokenError::expired: return "expired";
    case TokenError::not_yet_valid: return "not_yet_valid";
    case TokenError::issued_in_future: return "issued_in_future";
    case TokenError::wrong_issuer: return "wrong_issuer";
    case TokenError::wrong_audience: return "wrong_audience";
    case TokenError::missing_claim: return "missing_claim";
    case TokenError::invalid_claim: return "invalid_claim";
    case TokenError::signing_failed: return "signing_failed";
  }
  return "unknown";
}

std::string_view to_string(KeyError code) {
  switch (code) {
    case KeyError::io: return "io";
    case KeyError::invalid: return "invalid";
    case KeyError::permissions: return "permissions";
    case KeyError::config: return "config";
  }
  return "unknown";
}

Result<std::unique_ptr<TokenKeys>, KeyError> TokenKeys::open(TokenKeysConfig config, Clock::time_point now) {
  if (config.hs256_secret) return open_hs256(std::move(*config.hs256_secret));

  if (config.key_directory.empty()) return fail(KeyError::config, "key_directory is empty");
  if (config.rotation_period <= std::chrono::seconds::zero() || config.retention < std::chrono::seconds::zero()) {
    return fail(KeyError::config, "rotation_period must be positive and retention must not be negative, got " +
                                      std::to_string(config.rotation_period.count()) + " s and " +
                                      std::to_string(config.retention.count()) + " s");
  }

  if (auto directory = ossl::ensure_private_directory(config.key_directory); !directory) {
    return fail(key_error(directory.error().code), directory.error().detail);
  }
  auto keys = load_keys(config.key_directory);
  if (!keys) return std::unexpected(std::move(keys.error()));

  auto token_keys = std::make_unique<Es256TokenKeys>(std::move(config), std::move(*keys));
  token_keys->prune(now);
  if (token_keys->rotation_due(now)) {
    auto rotated = token_keys->rotate(now);
    if (!rotated) return std::unexpected(std::move(rotated.error()));
  }
  return std::unique_ptr<TokenKeys>(std::move(token_keys));
}

Result<nlohmann::json, TokenError> verify_with_jwks(std::string_view token, const nlohmann::json& jwks,
                                                    const VerifyOptions& options) {
  return detail::verify_jwt(
      token, detail::JwsAlgorithm::es256, options, [&jwks](const detail::DecodedJws& decoded) -> Result<void, TokenError> {
        if (!jwks.is_object() || !jwks.contains("keys") || !jwks["keys"].is_array()) {
          return fail(TokenError::unknown_key, "the JWKS has no \"keys\" array");
        }

        const nlohmann::json* match = nullptr;
        for (const auto& jwk : jwks["keys"]) {
          const auto kid = jwk.find("kid");
          if (!jwk.is_object() || kid == jwk.end() || !kid->is_string() || kid->get_ref<const std::string&>() != decoded.kid) {
            continue;
          }
          if (match != nullptr) return fail(TokenError::unknown_key, "kid " + decoded.kid + " appears twice in the JWKS");
          match = &jwk;
        }
        if (match == nullptr) return fail(TokenError::unknown_key, "kid " + decoded.kid + " is not in the JWKS");

        auto key = detail::public_key_from_jwk(*match);
        if (!key) return fail(TokenError::unknown_key, "JWK " + decoded.kid + " rejected: " + key.error().detail);
        return detail::verify_es256(key->get(), decoded.signing_input, decoded.signature);
      });
}

}  // namespace licensing::crypto
