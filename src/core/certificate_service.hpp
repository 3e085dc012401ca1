// gRPC CertificateService: the built-in CA signs server certificates from CSRs.
#pragma once

#include "crypto/ca.hpp"
#include "licensing.grpc.pb.h"

namespace licensing::core {

class CertificateServiceImpl final : public licensing::v1::CertificateService::Service {
 public:
  explicit CertificateServiceImpl(crypto::CertificateAuthority& authority) : authority_(authority) {}

  grpc::Status IssueServerCertificate(grpc::ServerContext* context,
                                      const licensing::v1::IssueServerCertificateRequest* request,
                                      licensing::v1::IssueServerCertificateResponse* response) override;
  grpc::Status GetCaBundle(grpc::ServerContext* context, const licensing::v1::GetCaBundleRequest* request,
                           licensing::v1::GetCaBundleResponse* response) override;

 private:
  crypto::CertificateAuthority& authority_;
};

}  // namespace licensing::core
