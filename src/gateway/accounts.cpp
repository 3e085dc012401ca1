#include "gateway/accounts.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <cctype>
#include <expected>

#include "common/base64url.hpp"
#include "common/json.hpp"
#include "common/logging.hpp"
#include "common/secret.hpp"
#include "common/username.hpp"
#include "gateway/enclaves.hpp"
#include "gateway/pool_await.hpp"
#include "gateway/responses.hpp"

namespace licensing::gateway {
namespace {

using boost::asio::awaitable;
using http::Request;
using http::Response;
namespace beast_http = boost::beast::http;

constexpr std::size_t kMaxRefreshTokenBytes = 128;

std::string_view describe(UsernameError code) {
  switch (code) {
    case UsernameError::invalid_utf8: return "the username is not well-formed UTF-8 or contains NUL";
    case UsernameError::too_short: return "the username is shorter than 3 characters";
    case UsernameError::too_long: return "the username is longer than 32 characters";
    case UsernameError::disallowed_character: return "the username may contain only letters, digits, '.', '_' and '-'";
    case UsernameError::misplaced_separator: return "'.', '_' and '-' may not start or end a username or follow each other";
    case UsernameError::mixed_script: return "the username mixes letters from different scripts";
    case UsernameError::normalization_failed: return "the username could not be normalized";
  }
  return "the username is invalid";
}

std::string_view describe(crypto::PasswordError code, const crypto::PasswordPolicy& policy) {
  static thread_local std::string text;
  switch (code) {
    case crypto::PasswordError::empty: return "the password is empty";
    case crypto::PasswordError::too_long:
      text = fmt::format("the password is longer than {} bytes", policy.max_bytes);
      return text;
    case crypto::PasswordError::contains_nul: return "the password contains a NUL byte";
    case crypto::PasswordError::invalid_utf8: return "the password is not well-formed UTF-8";
    default:
      text = fmt::format("the password must be {} to {} bytes of UTF-8", policy.min_bytes, policy.max_bytes);
      return text;
  }
}

// 256 random bits, base64url: the opaque refresh token. Only its SHA-256 is stored.
std::string new_refresh_token() {
  std::array<std::uint8_t, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) throw std::runtime_error("RAND_bytes failed");
  auto token = base64url::encode(bytes);
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return token;
}

nlohmann::json user_json(const store::User& user) {
  return {{"id", user.id}, {"username", user.username}, {"created_at", rfc3339(user.created_at)}};
}

struct LoginWork {
  Result<crypto::PasswordCheck, crypto::PasswordError> check = fail(crypto::PasswordError::hashing_failed);
  std::optional<std::string> new_hash;
};

}  // namespace

struct AccountsApi::Impl {
  AccountsConfig config;
  AccountsDependencies deps;

  std::chrono::system_clock::time_point now() const { return deps.clock(); }

  void count(const std::string& name, const std::string& outcome) { deps.metrics.increment(name, {{"outcome", outcome}}); }

  // Starts a session: a new refresh-token family and an access token bound to it.
  std::expected<nlohmann::json, Response> start_session(const std::string& user_id, const std::string& family_id) {
    const auto issued_at = now();
    auto refresh_token = new_refresh_token();
    store::RefreshToken record{sha256_hex(refresh_token), family_id, user_id, issued_at,
                               issued_at + config.refresh_token_lifetime};
    if (auto stored = deps.store.insert_refresh_token(record); !stored) {
      wipe_string(refresh_token);
      return std::unexpected(unavailable("the database"));
    }
    auto access = deps.core.mint_access_token(user_id, family_id);
    if (!access) {
      wipe_string(refresh_token);
      return std::unexpected(unavailable("the token service"));
    }
    nlohmann::json body = {{"access_token", access->token}, {"refresh_token", refresh_token},
                           {"token_type", "Bearer"},        {"expires_in", access->expires_in}};
    wipe_string(refresh_token);
    return body;
  }

  awaitable<Response> signup(Request& request, bool prototype) {
    auto creation = create_user(request);
    auto response = co_await std::move(creation);
    if (!prototype) co_return response;
    if (response.status != 201) co_return prototype_error(std::move(response));
    auto body = nlohmann::json::parse(response.body);
    body["success"] = true;
    body["message"] = "user created";
    response.body = body.dump();
    co_return response;
  }

  awaitable<Response> create_user(Request& request) {
    auto body = read_json_object(request, config.max_json_depth);
    if (!body) co_return body.error();
    auto members = read_string_members(*body, {"username", "password"});
    if (!members) co_return members.error();
    auto password = std::make_shared<SecretBytes>((*members)[1]);
    wipe_string((*members)[1]);

    auto name = normalize_username((*members)[0]);
    if (!name) {
      count("licensing_signups_total", "invalid_username");
      co_return problem(400, "invalid-username", "Invalid username", describe(name.error().code));
    }
    if (auto policy = crypto::check_password_policy(password->text(), config.password_policy); !policy) {
      count("licensing_signups_total", "invalid_password");
      co_return problem(400, "invalid-password", "Invalid password", describe(policy.error().code, config.password_policy));
    }

    auto existing = deps.store.find_user_by_key(name->key);
    if (!existing) co_return unavailable("the database");
    if (existing->has_value()) {
      count("licensing_signups_total", "username_taken");
      co_return problem(409, "username-taken", "Username taken", "this username, or one that looks the same, is taken");
    }

    // Signups are limited per client address, because each one costs a hash and stores a row.
    const auto signup_decision = deps.signups_per_address.acquire(request.client_address, std::chrono::steady_clock::now());
    if (!signup_decision.allowed) {
      count("licensing_signups_total", "rate_limited_address");
      co_return with_retry_after(problem(429, "too-many-signups", "Too many signups",
                                         "too many accounts created from this address; retry later"),
                                 signup_decision.retry_after);
    }
    deps.signups_per_address.release(request.client_address, false, std::chrono::steady_clock::now());

    const auto params = config.argon2;
    // Awaited values are named: GCC 12 destroys temporaries in a co_await expression twice.
    std::function<Result<std::string, crypto::PasswordError>()> hashing = [password, params] {
      return crypto::hash_password(password->text(), params);
    };
    auto hashing_done = run_on_pool(deps.hashing_pool, std::move(hashing));
    auto hash = co_await std::move(hashing_done);
    if (!hash) {
      count("licensing_signups_total", "overloaded");
      deps.metrics.increment("licensing_hashing_pool_rejections_total");
      co_return with_retry_after(problem(503, "overloaded", "Overloaded", "too many password operations in progress"),
                                 config.overload_retry_after);
    }
    if (!*hash) {
      logging::error("password_hashing_failed", {{"detail", hash->error().detail}});
      co_return unavailable("password hashing");
    }

    store::User user{new_uuid(), name->display, name->key, std::move(**hash), now()};
    if (auto created = deps.store.create_user(user); !created) {
      if (created.error().code == store::StoreError::conflict) {
        count("licensing_signups_total", "username_taken");
        co_return problem(409, "username-taken", "Username taken", "this username, or one that looks the same, is taken");
      }
      logging::error("user_create_failed", {{"detail", created.error().detail}});
      co_return unavailable("the database");
    }

    count("licensing_signups_total", "created");
    logging::info("user_created", {{"user_id", user.id}, {"client", request.client_address}});
    auto response = json_response(201, user_json(user));
    response.headers.emplace_back("Location", "/v1/users/me");
    co_return response;
  }

  awaitable<Response> login(Request& request) {
    auto body = read_json_object(request, config.max_json_depth);
    if (!body) co_return body.error();
    auto members = read_string_members(*body, {"username", "password"});
    if (!members) co_return members.error();
    auto password = std::make_shared<SecretBytes>((*members)[1]);
    wipe_string((*members)[1]);

    // The minimum length applies to new passwords only: imported users may have shorter ones.
    crypto::PasswordPolicy login_policy = config.password_policy;
    login_policy.min_bytes = 1;
    if (auto policy = crypto::check_password_policy(password->text(), login_policy); !policy) {
      count("licensing_logins_total", "invalid_password");
      co_return problem(400, "invalid-password", "Invalid password", describe(policy.error().code, login_policy));
    }

    // A name that cannot be normalized belongs to no user; it still costs a hash and
    // counts against its own limit, so its response matches a wrong password's.
    auto name = normalize_username((*members)[0]);
    const std::string limit_key = name ? name->key : "invalid:" + sha256_hex((*members)[0]);
    // The limiter measures its window on the monotonic clock.
    const auto started = std::chrono::steady_clock::now();

    const auto user_decision = deps.failures_per_user.acquire(limit_key, started);
    if (!user_decision.allowed) {
      count("licensing_logins_total", "rate_limited_user");
      co_return with_retry_after(problem(429, "too-many-attempts", "Too many attempts",
                                         "too many failed logins for this account; retry later"),
                                 user_decision.retry_after);
    }
    const auto address_decision = deps.failures_per_address.acquire(request.client_address, started);
    if (!address_decision.allowed) {
      deps.failures_per_user.cancel(limit_key);
      count("licensing_logins_total", "rate_limited_address");
      co_return with_retry_after(problem(429, "too-many-attempts", "Too many attempts",
                                         "too many failed logins from this address; retry later"),
                                 address_decision.retry_after);
    }

    std::optional<store::User> user;
    if (name) {
      auto found = deps.store.find_user_by_key(name->key);
      if (!found) {
        deps.failures_per_user.cancel(limit_key);
        deps.failures_per_address.cancel(request.client_address);
        co_return unavailable("the database");
      }
      user = std::move(*found);
    }

    const auto params = config.argon2;
    const std::string stored_hash = user ? user->password_hash : crypto::dummy_hash(params);
    const bool known_user = user.has_value();
    std::function<LoginWork()> checking = [password, stored_hash, params, known_user] {
      LoginWork result;
      result.check = crypto::verify_password(password->text(), stored_hash, params);
      if (known_user && result.check && result.check->matches && result.check->needs_rehash) {
        if (auto rehashed = crypto::hash_password(password->text(), params)) result.new_hash = std::move(*rehashed);
      }
      return result;
    };
    auto checking_done = run_on_pool(deps.hashing_pool, std::move(checking));
    auto work = co_await std::move(checking_done);
    if (!work) {
      deps.failures_per_user.cancel(limit_key);
      deps.failures_per_address.cancel(request.client_address);
      count("licensing_logins_total", "overloaded");
      deps.metrics.increment("licensing_hashing_pool_rejections_total");
      co_return with_retry_after(problem(503, "overloaded", "Overloaded", "too many password operations in progress"),
                                 config.overload_retry_after);
    }

    const bool matched = known_user && work->check && work->check->matches;
    if (!matched) {
      if (!work->check) logging::warn("password_check_failed", {{"user_id", user ? user->id : ""}, {"detail", work->check.error().detail}});
      deps.failures_per_user.release(limit_key, false, std::chrono::steady_clock::now());
      deps.failures_per_address.release(request.client_address, false, std::chrono::steady_clock::now());
      count("licensing_logins_total", "invalid_credentials");
      logging::info("login_failed", {{"client", request.client_address}});
      co_return problem(401, "invalid-credentials", "Invalid credentials", "the username or password is incorrect");
    }

    // Success clears this account's failures. The address keeps its count: one good
    // password must not reset a spray of guesses at other accounts.
    deps.failures_per_user.release(limit_key, true, std::chrono::steady_clock::now());
    deps.failures_per_address.cancel(request.client_address);

    if (work->new_hash) {
      auto updated = deps.store.update_password_hash(user->id, user->password_hash, *work->new_hash);
      logging::info("password_rehashed", {{"user_id", user->id}, {"stored", updated.has_value()}});
    }

    auto session = start_session(user->id, new_uuid());
    if (!session) co_return session.error();
    count("licensing_logins_total", "success");
    logging::info("login_succeeded", {{"user_id", user->id}, {"client", request.client_address}});
    co_return json_response(200, *session);
  }

  // POST /login, the original prototype's flow: log in, then provision the user's
  // enclave (or reuse it) and respond with the members the prototype's clients read.
  awaitable<Response> prototype_login(Request& request) {
    auto logging_in = login(request);
    auto response = co_await std::move(logging_in);
    if (response.status != 200) co_return prototype_error(std::move(response));

    const auto session = nlohmann::json::parse(response.body);
    auto verdict = deps.core.verify_access_token(session["access_token"].get<std::string>());
    if (!verdict || !verdict->valid) co_return prototype_error(unavailable("the token service"));
    const auto user_id = verdict->token.subject;

    // The user's live enclave is reused, whichever request created it.
    auto existing = deps.core.list_enclaves(user_id);
    if (!existing) co_return prototype_error(enclave_problem(existing.error()));
    Result<licensing::v1::Enclave, CoreError> enclave = fail(CoreError::not_found);
    for (const auto& candidate : *existing) {
      const auto& state = candidate.state();
      if (state == "ready" || state == "starting" || state == "requested") {
        enclave = candidate;
        break;
      }
    }
    if (!enclave) enclave = deps.core.provision_enclave(user_id, "prototype-login");
    if (!enclave) co_return prototype_error(enclave_problem(enclave.error()));

    // Provisioning may return while the instance still starts, so wait for it, bounded.
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor);
    for (int attempt = 0; attempt < 120 && enclave->state() != "ready"; ++attempt) {
      if (enclave->state() == "failed" || enclave->state() == "deleting" || enclave->state() == "deleted") break;
      timer.expires_after(std::chrono::milliseconds(500));
      auto waiting = timer.async_wait(boost::asio::use_awaitable);
      co_await std::move(waiting);
      auto current = deps.core.get_enclave(user_id, enclave->id());
      if (!current) co_return prototype_error(enclave_problem(current.error()));
      enclave = std::move(current);
    }
    if (enclave->state() != "ready") {
      co_return prototype_error(problem(503, "enclave-not-ready", "Enclave not ready",
                                        fmt::format("the enclave is {}; retry later", enclave->state())));
    }

    auto token = deps.core.mint_enclave_token(user_id, enclave->id(), verdict->token.session_id);
    if (!token) co_return prototype_error(enclave_problem(token.error()));
    co_return json_response(200, {{"success", true},
                                  {"message", "login successful"},
                                  {"enclaveName", enclave->id()},
                                  {"accessPoint", enclave->endpoint()},
                                  {"token", token->token}});
  }

  awaitable<Response> refresh(Request& request) {
    auto body = read_json_object(request, config.max_json_depth);
    if (!body) co_return body.error();
    auto members = read_string_members(*body, {"refresh_token"});
    if (!members) co_return members.error();
    std::string presented = std::move((*members)[0]);
    const auto rejected = [] {
      return problem(401, "invalid-refresh-token", "Invalid refresh token", "the refresh token is invalid, expired or revoked");
    };
    if (presented.empty() || presented.size() > kMaxRefreshTokenBytes) co_return rejected();

    const auto token_hash = sha256_hex(presented);
    wipe_string(presented);
    auto used = deps.store.use_refresh_token(token_hash, now());
    if (!used) co_return unavailable("the database");

    switch (used->outcome) {
      case store::RefreshOutcome::rotated:
        break;
      case store::RefreshOutcome::reused:
        count("licensing_refreshes_total", "reused");
        logging::warn("refresh_token_reused", {{"family_id", used->token->family_id}, {"user_id", used->token->user_id},
                                               {"client", request.client_address}});
        co_return rejected();
      case store::RefreshOutcome::revoked:
        count("licensing_refreshes_total", "revoked");
        co_return rejected();
      case store::RefreshOutcome::expired:
        count("licensing_refreshes_total", "expired");
        co_return rejected();
      case store::RefreshOutcome::unknown:
        count("licensing_refreshes_total", "unknown");
        co_return rejected();
    }

    auto session = start_session(used->token->user_id, used->token->family_id);
    if (!session) co_return session.error();
    count("licensing_refreshes_total", "rotated");
    co_return json_response(200, *session);
  }

  awaitable<Response> logout(Request& request) {
    auto token = deps.authenticator.authenticate(request);
    if (!token) co_return token.error();
    if (auto revoked = deps.store.revoke_family(token->session_id, now()); !revoked) co_return unavailable("the database");
    logging::info("session_ended", {{"user_id", token->subject}, {"family_id", token->session_id}});
    Response response;
    response.status = 204;
    response.content_type.clear();
    co_return response;
  }

  awaitable<Response> me(Request& request) {
    auto token = deps.authenticator.authenticate(request);
    if (!token) co_return token.error();
    auto user = deps.store.find_user_by_id(token->subject);
    if (!user) co_return unavailable("the database");
    // A deleted user's token is still signed correctly; it no longer names anyone.
    if (!user->has_value()) co_return invalid_token();
    co_return json_response(200, user_json(**user));
  }

  awaitable<Response> jwks(Request&) {
    auto document = deps.core.jwks_json();
    if (!document) co_return unavailable("the token service");
    Response response;
    response.body = std::move(*document);
    response.headers.emplace_back("Cache-Control", "public, max-age=60");
    co_return response;
  }
};

AccountsApi::AccountsApi(AccountsConfig config, AccountsDependencies dependencies)
    : impl_(std::make_shared<Impl>(Impl{std::move(config), std::move(dependencies)})) {
  auto& metrics = impl_->deps.metrics;
  metrics.describe("licensing_signups_total", "Signup requests by outcome");
  metrics.describe("licensing_logins_total", "Login requests by outcome");
  metrics.describe("licensing_refreshes_total", "Refresh-token uses by outcome");
  metrics.describe("licensing_hashing_pool_rejections_total", "Password operations refused because the pool was full");
}

void AccountsApi::register_routes(http::Router& router) {
  auto impl = impl_;
  using beast_http::verb;
  router.add(verb::post, "/v1/users", [impl](Request& request) { return impl->signup(request, false); });
  router.add(verb::post, "/signup", [impl](Request& request) { return impl->signup(request, true); });
  router.add(verb::post, "/v1/sessions", [impl](Request& request) { return impl->login(request); });
  router.add(verb::post, "/login", [impl](Request& request) { return impl->prototype_login(request); });
  router.add(verb::post, "/v1/sessions/refresh", [impl](Request& request) { return impl->refresh(request); });
  router.add(verb::delete_, "/v1/sessions/current", [impl](Request& request) { return impl->logout(request); });
  router.add(verb::get, "/v1/users/me", [impl](Request& request) { return impl->me(request); });
  router.add(verb::get, "/.well-known/jwks.json", [impl](Request& request) { return impl->jwks(request); });
}

}  // namespace licensing::gateway
