#include "core/kubernetes/cert_manager_issuer.hpp"

#include <fmt/core.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <ctime>

#include "common/logging.hpp"
#include "core/kubernetes/provisioner.hpp"
#include "core/kubernetes/wait.hpp"
#include "crypto/openssl.hpp"

namespace licensing::core::kubernetes {
namespace {

using json = nlohmann::json;

std::string encode_base64(std::string_view data) {
  std::string encoded(4 * ((data.size() + 2) / 3), '\0');
  const int length = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(encoded.data()),
                                     reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  encoded.resize(static_cast<std::size_t>(length));
  return encoded;
}

std::optional<std::string> decode_base64(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string decoded(text.size() / 4 * 3, '\0');
  const int length = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                                     reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (length < 0) return std::nullopt;
  std::size_t padding = 0;
  if (!text.empty() && text.back() == '=') ++padding;
  if (text.size() > 1 && text[text.size() - 2] == '=') ++padding;
  decoded.resize(static_cast<std::size_t>(length) - padding);
  return decoded;
}

std::string asn1_text(const ASN1_STRING* value) {
  return {reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)), static_cast<std::size_t>(ASN1_STRING_length(value))};
}

// The text form of an iPAddress SAN (4 or 16 bytes), as inet_ntop writes it.
std::string ip_text(const ASN1_OCTET_STRING* value) {
  const int length = ASN1_STRING_length(value);
  int family = AF_INET6;
  if (length == 4) {
    family = AF_INET;
  } else if (length != 16) {
    return "(an IP address of " + std::to_string(length) + " bytes)";
  }
  std::array<char, INET6_ADDRSTRLEN> text{};
  if (inet_ntop(family, ASN1_STRING_get0_data(value), text.data(), text.size()) == nullptr) return {};
  return text.data();
}

bool contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// Returns the condition `type` of a CertificateRequest, or null.
json find_condition(const json& object, std::string_view type) {
  if (!object.is_object() || !object.contains("status")) return nullptr;
  for (const auto& condition : object["status"].value("conditions", json::array())) {
    if (condition.value("type", "") == type) return condition;
  }
  return nullptr;
}

// A failed request's reason and message, or nothing while it may still succeed.
std::optional<std::string> failure_of(const json& object) {
  for (std::string_view type : {"Denied", "InvalidRequest"}) {
    const json condition = find_condition(object, type);
    if (!condition.is_null() && condition.value("status", "") == "True") {
      return fmt::format("{}: {}", type, condition.value("message", "no message"));
    }
  }
  const json ready = find_condition(object, "Ready");
  if (!ready.is_null() && ready.value("status", "") == "False" && ready.value("reason", "") == "Failed") {
    return fmt::format("Failed: {}", ready.value("message", "no message"));
  }
  return std::nullopt;
}

// The last state cert-manager reported, for a timeout message.
std::string last_state(const json& object) {
  const json ready = find_condition(object, "Ready");
  if (ready.is_null()) return "no Ready condition yet";
  return fmt::format("Ready={} reason {}: {}", ready.value("status", "?"), ready.value("reason", "none"),
                     ready.value("message", "no message"));
}

Result<crypto::IssuedCertificate, IssuerError> to_issued(const json& object, const std::string& csr_pem) {
  const auto& status = object.value("status", json::object());
  const auto leaf_pem = decode_base64(status.value("certificate", ""));
  const auto ca_pem = decode_base64(status.value("ca", ""));
  if (!leaf_pem || leaf_pem->empty()) return fail(IssuerError::signing_failed, "status.certificate is missing or not base64");

  auto leaf = crypto::ossl::certificate_from_pem(*leaf_pem);
  if (!leaf) return fail(IssuerError::signing_failed, "status.certificate is not a PEM certificate");
  auto request = crypto::ossl::request_from_pem(csr_pem);
  if (!request) return fail(IssuerError::invalid_csr, "the CSR does not parse");
  // The certificate must certify the key of this CSR, or the enclave could not use it.
  if (EVP_PKEY_eq(X509_get0_pubkey(leaf->get()), X509_REQ_get0_pubkey(request->get())) != 1) {
    ERR_clear_error();
    return fail(IssuerError::signing_failed, "the issued certificate is for another key than the CSR's");
  }

  crypto::IssuedCertificate issued;
  issued.certificate_pem = *leaf_pem;
  issued.chain_pem = *leaf_pem;
  if (!issued.chain_pem.ends_with('\n')) issued.chain_pem += '\n';
  if (ca_pem && !ca_pem->empty() && leaf_pem->find(*ca_pem) == std::string::npos) issued.chain_pem += *ca_pem;

  const ASN1_INTEGER* serial = X509_get0_serialNumber(leaf->get());
  crypto::ossl::BigNum number(ASN1_INTEGER_to_BN(serial, nullptr));
  if (number) {
    char* hex = BN_bn2hex(number.get());
    if (hex != nullptr) issued.serial_hex = hex;
    OPENSSL_free(hex);
    std::transform(issued.serial_hex.begin(), issued.serial_hex.end(), issued.serial_hex.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  std::tm not_after{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(leaf->get()), &not_after) != 1) {
    ERR_clear_error();
    return fail(IssuerError::signing_failed, "the issued certificate's notAfter does not parse");
  }
  issued.not_after = std::chrono::system_clock::from_time_t(timegm(&not_after));
  return issued;
}

}  // namespace

Result<void, IssuerError> check_csr_names(const EnclaveCertificateRequest& request) {
  auto parsed = crypto::ossl::request_from_pem(request.csr_pem);
  if (!parsed) return fail(IssuerError::invalid_csr, "the CSR does not parse");
  auto allowed = [&](const std::string& name) { return contains(request.dns_names, name) || contains(request.ip_addresses, name); };

  // Subject: nothing but one CN that names this enclave.
  const X509_NAME* subject = X509_REQ_get_subject_name(parsed->get());
  for (int index = 0; index < X509_NAME_entry_count(subject); ++index) {
    const X509_NAME_ENTRY* entry = X509_NAME_get_entry(subject, index);
    const int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry));
    const std::string value = asn1_text(X509_NAME_ENTRY_get_data(entry));
    if (nid != NID_commonName || !allowed(value)) {
      return fail(IssuerError::invalid_csr, fmt::format("the CSR subject may only be CN={}, not {}={}",
                                                        request.dns_names.empty() ? "" : request.dns_names.front(),
                                                        OBJ_nid2sn(nid), value));
    }
  }

  // subjectAltName: DNS names and IP addresses of the request, nothing else.
  std::vector<std::string> requested_dns_names;
  STACK_OF(X509_EXTENSION)* extensions = X509_REQ_get_extensions(parsed->get());
  crypto::ossl::GeneralNames names(
      extensions != nullptr ? static_cast<GENERAL_NAMES*>(X509V3_get_d2i(extensions, NID_subject_alt_name, nullptr, nullptr))
                            : nullptr);
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  for (int index = 0; names && index < sk_GENERAL_NAME_num(names.get()); ++index) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), index);
    std::string value;
    if (name->type == GEN_DNS) {
      value = asn1_text(name->d.dNSName);
      if (!contains(request.dns_names, value)) return fail(IssuerError::invalid_csr, "the CSR asks for DNS name " + value);
      requested_dns_names.push_back(value);
    } else if (name->type == GEN_IPADD) {
      value = ip_text(name->d.iPAddress);
      if (!contains(request.ip_addresses, value)) return fail(IssuerError::invalid_csr, "the CSR asks for IP address " + value);
    } else {
      return fail(IssuerError::invalid_csr, "the CSR asks for a subjectAltName other than a DNS name or IP address");
    }
  }
  ERR_clear_error();

  // cert-manager signs only the names the CSR requests, and clients check them, so every
  // DNS name the core chose must be there.
  for (const auto& dns_name : request.dns_names) {
    if (!contains(requested_dns_names, dns_name)) {
      return fail(IssuerError::invalid_csr, fmt::format("the CSR must name DNS:{} in its subjectAltName", dns_name));
    }
  }
  return {};
}

CertManagerIssuer::CertManagerIssuer(std::shared_ptr<Client> client, CertManagerIssuerConfig config)
    : client_(std::move(client)), config_(std::move(config)) {}

std::string CertManagerIssuer::collection_path() const {
  return fmt::format("/apis/cert-manager.io/v1/namespaces/{}/certificaterequests", config_.namespace_name);
}

void CertManagerIssuer::delete_request(const std::string& name) {
  auto deleted = client_->request("DELETE", collection_path() + "/" + name);
  if (!deleted || (deleted->status != 200 && deleted->status != 202 && deleted->status != 404)) {
    logging::error("certificate_request_not_deleted",
                   {{"name", name}, {"detail", !deleted ? deleted.error().detail : fmt::format("status {}", deleted->status)}});
  }
}

Result<crypto::IssuedCertificate, IssuerError> CertManagerIssuer::issue(const EnclaveCertificateRequest& request) {
  const auto names = resource_names(request.enclave_id);
  if (!names) return fail(IssuerError::invalid_request, "the enclave id is not a lowercase UUID");
  if (auto checked = check_csr_names(request); !checked) return std::unexpected(checked.error());

  // CertificateRequests are immutable, so each signing gets a new name.
  std::array<std::uint8_t, 4> suffix{};
  if (!crypto::ossl::random_bytes(suffix)) return fail(IssuerError::signing_failed, "the random number generator failed");
  const std::string name = names->pod + "-" + crypto::ossl::to_hex(suffix);
  const json manifest = {
      {"apiVersion", "cert-manager.io/v1"},
      {"kind", "CertificateRequest"},
      {"metadata",
       {{"name", name},
        {"namespace", config_.namespace_name},
        {"labels", {{std::string(kManagedByLabel), kManagedByValue}, {std::string(kEnclaveIdLabel), request.enclave_id}}}}},
      {"spec",
       {{"request", encode_base64(request.csr_pem)},
        {"isCA", false},
        {"duration", fmt::format("{}s", request.lifetime.count())},
        {"usages", json::array({"digital signature", "key encipherment", "server auth"})},
        {"issuerRef", {{"name", config_.issuer_name}, {"kind", "Issuer"}, {"group", "cert-manager.io"}}}}},
  };

  auto created = client_->request("POST", collection_path(), manifest);
  if (!created) return fail(IssuerError::unavailable, "creating the CertificateRequest failed: " + created.error().detail);
  // 409 means a retried POST reached the API server twice: the name is this call's own.
  if (created->status != 201 && created->status != 200 && created->status != 409) {
    const std::string message = created->body.is_object() ? created->body.value("message", "") : "";
    return fail(created->status == 422 || created->status == 400 ? IssuerError::invalid_request : IssuerError::unavailable,
                fmt::format("creating CertificateRequest {} returned status {}: {}", name, created->status, message));
  }

  json last = created->body;
  const auto deadline = std::chrono::steady_clock::now() + config_.timeout;
  auto waited = wait_for_object(*client_, collection_path(), name, deadline, [&last](const json& object) {
    if (!object.is_null()) last = object;
    return object.is_null() || has_true_condition(object, "Ready") || failure_of(object).has_value();
  });
  delete_request(name);

  if (!waited) {
    if (waited.error().code == ApiError::timed_out) {
      logging::error("certificate_request_timed_out", {{"enclave_id", request.enclave_id}, {"name", name}});
      return fail(IssuerError::timed_out,
                  fmt::format("CertificateRequest {} was not signed within {} s ({}); it was deleted. Check that "
                              "Issuer {} in namespace {} exists and is Ready",
                              name, std::chrono::duration_cast<std::chrono::seconds>(config_.timeout).count(),
                              last_state(last), config_.issuer_name, config_.namespace_name));
    }
    return fail(IssuerError::unavailable, fmt::format("waiting for CertificateRequest {} failed: {}", name, waited.error().detail));
  }
  if (waited->is_null()) return fail(IssuerError::signing_failed, fmt::format("CertificateRequest {} was deleted before it was signed", name));
  if (auto failure = failure_of(*waited)) {
    return fail(IssuerError::denied, fmt::format("CertificateRequest {} was not signed: {}", name, *failure));
  }
  auto issued = to_issued(*waited, request.csr_pem);
  if (issued) logging::info("certificate_request_signed", {{"enclave_id", request.enclave_id}, {"name", name}});
  return issued;
}

}  // namespace licensing::core::kubernetes
