#include "gateway/enclaves.hpp"

#include <fmt/format.h>

#include <regex>

#include "common/base64url.hpp"
#include "common/logging.hpp"
#include "gateway/responses.hpp"

namespace licensing::gateway {
namespace {

using boost::asio::awaitable;
using http::Request;
using http::Response;
namespace beast_http = boost::beast::http;

constexpr std::size_t kMaxJsonDepth = 4;
constexpr std::size_t kMaxCsrBytes = 8 * 1024;
constexpr std::size_t kMaxCredentialBytes = 128;

// The TPM's failure, named so that an operator knows what to repair.
Response tpm_problem(std::string_view reason) {
  if (reason == "tpm_unreachable") {
    return problem(503, "tpm-unreachable", "TPM unreachable", "the TPM cannot be reached; attestation resumes when it can");
  }
  if (reason == "tpm_lockout") {
    return problem(503, "tpm-lockout", "TPM in lockout",
                   "the TPM is in dictionary-attack lockout; attestation resumes when the lockout ends or is cleared");
  }
  if (reason == "pcr_mismatch") {
    return problem(503, "pcr-mismatch", "Measurement log inconsistent",
                   "the PCR does not match the measurement log, so no quote is made until an operator investigates");
  }
  return problem(503, "tpm-failed", "TPM failed", "the TPM rejected the quote");
}

Response not_found() { return problem(404, "enclave-not-found", "Enclave not found", "no enclave with this id"); }

// Idempotency-Key: at most one header, 1 to 64 characters of [A-Za-z0-9_-].
std::expected<std::string, Response> idempotency_key(const Request& request) {
  const auto count = request.headers.count("Idempotency-Key");
  if (count == 0) return std::string();
  const auto value = std::string(request.headers["Idempotency-Key"]);
  static const std::regex allowed("[A-Za-z0-9_-]{1,64}");
  if (count > 1 || !std::regex_match(value, allowed)) {
    return std::unexpected(problem(400, "invalid-request", "Invalid request",
                                   "Idempotency-Key must be one header of 1 to 64 characters [A-Za-z0-9_-]"));
  }
  return value;
}

}  // namespace

nlohmann::json enclave_json(const licensing::v1::Enclave& enclave) {
  nlohmann::json body = {{"id", enclave.id()},
                         {"state", enclave.state()},
                         {"endpoint", enclave.endpoint()},
                         {"created_at", rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(enclave.created_at())))}};
  if (!enclave.failure_reason().empty()) body["failure_reason"] = enclave.failure_reason();
  return body;
}

Response enclave_problem(const Error<CoreError>& error) {
  switch (error.code) {
    case CoreError::not_found:
      return not_found();
    case CoreError::precondition:
      return problem(409, "enclave-conflict", "Conflict", error.detail);
    case CoreError::rejected:
      return problem(400, "invalid-request", "Invalid request", error.detail);
    case CoreError::unauthenticated:
      return problem(401, "invalid-credential", "Invalid credential", "the credential is invalid, used or expired");
    case CoreError::exhausted:
      return with_retry_after(problem(503, "capacity-exhausted", "No capacity", error.detail), std::chrono::seconds(30));
    case CoreError::unavailable:
    case CoreError::failed:
      break;
  }
  return unavailable("the provisioning service");
}

struct EnclavesApi::Impl {
  EnclavesDependencies deps;

  void count(const std::string& operation, const std::string& outcome) {
    deps.metrics.increment("licensing_enclave_requests_total", {{"operation", operation}, {"outcome", outcome}});
  }

  // The authenticated caller and the enclave id from the path; a malformed id is a 404,
  // the same response as an unknown or foreign one.
  std::expected<std::pair<VerifiedToken, std::string>, Response> caller_and_id(Request& request) {
    auto token = deps.authenticator.authenticate(request);
    if (!token) return std::unexpected(token.error());
    const auto id = request.path_params["id"];
    if (!is_uuid(id)) return std::unexpected(not_found());
    return std::pair{*token, id};
  }

  awaitable<Response> create(Request& request) {
    auto token = deps.authenticator.authenticate(request);
    if (!token) co_return token.error();
    auto key = idempotency_key(request);
    if (!key) co_return key.error();

    auto enclave = deps.core.provision_enclave(token->subject, *key);
    if (!enclave) {
      count("create", "error");
      co_return enclave_problem(enclave.error());
    }
    count("create", enclave->state());
    logging::info("enclave_requested", {{"user_id", token->subject}, {"enclave_id", enclave->id()}, {"state", enclave->state()}});
    auto response = json_response(201, enclave_json(*enclave));
    response.headers.emplace_back("Location", "/v1/enclaves/" + enclave->id());
    co_return response;
  }

  awaitable<Response> list(Request& request) {
    auto token = deps.authenticator.authenticate(request);
    if (!token) co_return token.error();
    auto enclaves = deps.core.list_enclaves(token->subject);
    if (!enclaves) co_return enclave_problem(enclaves.error());
    nlohmann::json items = nlohmann::json::array();
    for (const auto& enclave : *enclaves) items.push_back(enclave_json(enclave));
    co_return json_response(200, {{"enclaves", items}});
  }

  awaitable<Response> show(Request& request) {
    auto caller = caller_and_id(request);
    if (!caller) co_return caller.error();
    auto enclave = deps.core.get_enclave(caller->first.subject, caller->second);
    if (!enclave) co_return enclave_problem(enclave.error());
    co_return json_response(200, enclave_json(*enclave));
  }

  awaitable<Response> remove(Request& request) {
    auto caller = caller_and_id(request);
    if (!caller) co_return caller.error();
    auto enclave = deps.core.delete_enclave(caller->first.subject, caller->second);
    if (!enclave) {
      count("delete", "error");
      co_return enclave_problem(enclave.error());
    }
    count("delete", enclave->state());
    logging::info("enclave_deleted", {{"user_id", caller->first.subject}, {"enclave_id", enclave->id()}});
    co_return json_response(200, enclave_json(*enclave));
  }

  awaitable<Response> token(Request& request) {
    auto caller = caller_and_id(request);
    if (!caller) co_return caller.error();
    auto minted = deps.core.mint_enclave_token(caller->first.subject, caller->second, caller->first.session_id);
    if (!minted) co_return enclave_problem(minted.error());
    count("token", "issued");
    co_return json_response(200, {{"access_token", minted->token}, {"token_type", "Bearer"}, {"expires_in", minted->expires_in}});
  }

  awaitable<Response> client_certificate(Request& request) {
    auto caller = caller_and_id(request);
    if (!caller) co_return caller.error();
    auto body = read_json_object(request, kMaxJsonDepth);
    if (!body) co_return body.error();
    auto members = read_string_members(*body, {"csr_pem"});
    if (!members) co_return members.error();
    if ((*members)[0].size() > kMaxCsrBytes) {
      co_return problem(400, "invalid-request", "Invalid request", "csr_pem is longer than 8 KiB");
    }

    // The certificate names the user, not the enclave, but the caller must own this one.
    auto enclave = deps.core.get_enclave(caller->first.subject, caller->second);
    if (!enclave) co_return enclave_problem(enclave.error());
    auto issued = deps.core.issue_client_certificate(caller->first.subject, (*members)[0]);
    if (!issued) co_return enclave_problem(issued.error());
    count("client_certificate", "issued");
    co_return json_response(200, {{"certificate_chain_pem", issued->certificate_chain_pem()},
                                  {"not_after", issued->not_after()}});
  }

  // GET /v1/enclaves/{id}/attestation?nonce=: the TPM quote that binds the enclave's
  // current certificate, as the attestation document of docs/attestation.md.
  awaitable<Response> attestation(Request& request) {
    auto caller = caller_and_id(request);
    if (!caller) co_return caller.error();
    const auto nonce_text = request.query.find("nonce");
    std::optional<std::vector<std::uint8_t>> nonce;
    if (nonce_text != request.query.end()) nonce = base64url::decode(nonce_text->second);
    if (!nonce || nonce->size() < 16 || nonce->size() > 64) {
      co_return problem(400, "invalid-request", "Invalid request",
                        "nonce must be 16 to 64 random bytes in base64url without padding");
    }

    auto evidence = deps.core.get_attestation(caller->first.subject, caller->second,
                                              std::string(nonce->begin(), nonce->end()));
    if (!evidence) {
      const auto& detail = evidence.error().detail;
      const auto reason = detail.substr(0, detail.find(':'));
      if (evidence.error().code == CoreError::unavailable &&
          (reason == "tpm_unreachable" || reason == "tpm_lockout" || reason == "pcr_mismatch" || reason == "tpm_failed")) {
        count("attestation", reason);
        deps.metrics.increment("licensing_attestation_failures_total", {{"reason", reason}});
        co_return with_retry_after(tpm_problem(reason), std::chrono::seconds(reason == "tpm_lockout" ? 60 : 5));
      }
      count("attestation", "error");
      co_return enclave_problem(evidence.error());
    }
    count("attestation", "quoted");
    Response response;
    response.status = 200;
    response.body = std::move(*evidence);
    response.headers.emplace_back("Cache-Control", "no-store");
    co_return response;
  }

  // GET /v1/attestation/key: public, so that operators can compare it with the fingerprint
  // licensing-core prints before they pin it.
  awaitable<Response> attestation_key(Request&) {
    auto key = deps.core.attestation_key();
    if (!key) co_return enclave_problem(key.error());
    nlohmann::json body = {{"public_key_pem", key->public_key_pem()},
                           {"public_area", key->public_area()},
                           {"name", key->name()},
                           {"fingerprint", key->fingerprint()}};
    if (!key->ek_certificate_pem().empty()) body["ek_certificate_pem"] = key->ek_certificate_pem();
    co_return json_response(200, body);
  }

  // POST /v1/enclave-certificates: the one request an enclave makes. It carries only the
  // enclave's own single-use credential, never a user token.
  awaitable<Response> enclave_certificate(Request& request) {
    const auto header = std::string(request.headers[beast_http::field::authorization]);
    const auto space = header.find(' ');
    const auto scheme = lowercase(header.substr(0, space == std::string::npos ? 0 : space));
    const std::string credential(space == std::string::npos ? std::string_view() : trim(std::string_view(header).substr(space + 1)));
    const auto rejected = [] {
      auto response = problem(401, "invalid-credential", "Invalid credential", "the credential is invalid, used or expired");
      response.headers.emplace_back("WWW-Authenticate", "Bootstrap");
      return response;
    };
    if (request.headers.count(beast_http::field::authorization) != 1 || (scheme != "bootstrap" && scheme != "renewal") ||
        credential.empty() || credential.size() > kMaxCredentialBytes) {
      count("enclave_certificate", "rejected");
      co_return rejected();
    }

    auto body = read_json_object(request, kMaxJsonDepth);
    if (!body) co_return body.error();
    auto members = read_string_members(*body, {"enclave_id", "csr_pem"});
    if (!members) co_return members.error();
    if (!is_uuid((*members)[0]) || (*members)[1].size() > kMaxCsrBytes) {
      co_return problem(400, "invalid-request", "Invalid request", "enclave_id must be a UUID and csr_pem at most 8 KiB");
    }

    auto signed_certificate = deps.core.sign_enclave_csr((*members)[0], credential, (*members)[1], scheme);
    if (!signed_certificate) {
      count("enclave_certificate", "error");
      if (signed_certificate.error().code == CoreError::unauthenticated || signed_certificate.error().code == CoreError::not_found) {
        logging::warn("enclave_credential_rejected", {{"enclave_id", (*members)[0]}, {"client", request.client_address}});
        co_return rejected();
      }
      co_return enclave_problem(signed_certificate.error());
    }
    count("enclave_certificate", "issued");
    co_return json_response(200, {{"certificate_chain_pem", signed_certificate->certificate_chain_pem()},
                                  {"renewal_credential", signed_certificate->renewal_credential()},
                                  {"not_after", signed_certificate->not_after()}});
  }
};

EnclavesApi::EnclavesApi(EnclavesDependencies dependencies) : impl_(std::make_shared<Impl>(Impl{dependencies})) {
  impl_->deps.metrics.describe("licensing_enclave_requests_total", "Enclave requests by operation and outcome");
  impl_->deps.metrics.describe("licensing_attestation_failures_total", "Attestations refused because of the TPM, by reason");
}

void EnclavesApi::register_routes(http::Router& router) {
  auto impl = impl_;
  using beast_http::verb;
  router.add(verb::post, "/v1/enclaves", [impl](Request& request) { return impl->create(request); });
  router.add(verb::get, "/v1/enclaves", [impl](Request& request) { return impl->list(request); });
  router.add(verb::get, "/v1/enclaves/{id}", [impl](Request& request) { return impl->show(request); });
  router.add(verb::delete_, "/v1/enclaves/{id}", [impl](Request& request) { return impl->remove(request); });
  router.add(verb::post, "/v1/enclaves/{id}/token", [impl](Request& request) { return impl->token(request); });
  router.add(verb::post, "/v1/enclaves/{id}/client-certificate",
             [impl](Request& request) { return impl->client_certificate(request); });
  router.add(verb::get, "/v1/enclaves/{id}/attestation", [impl](Request& request) { return impl->attestation(request); });
  router.add(verb::get, "/v1/attestation/key", [impl](Request& request) { return impl->attestation_key(request); });
  router.add(verb::post, "/v1/enclave-certificates", [impl](Request& request) { return impl->enclave_certificate(request); });
}

}  // namespace licensing::gateway
