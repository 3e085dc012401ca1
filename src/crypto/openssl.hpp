// RAII ownership for OpenSSL 3 objects, PEM and DER conversion, private file I/O and
// digests. Every OpenSSL object is owned by one of the pointer types below from the moment
// it is created. `release()` is called only after a setter has taken ownership.
//
// Functions that fail return an error value. They copy the OpenSSL error queue into the
// error detail and clear it, so a stale error never leaks into a later one.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/secret.hpp"

namespace licensing::crypto::ossl {

template <auto FreeFunction>
struct Deleter {
  template <typename T>
  void operator()(T* pointer) const {
    FreeFunction(pointer);
  }
};

using BigNum = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using EcdsaSig = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG_free>>;
using MdContext = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using ParamBuilder = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD_free>>;
using Params = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM_free>>;
using Pkey = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using PkeyContext = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using X509Cert = std::unique_ptr<X509, Deleter<X509_free>>;
using X509Req = std::unique_ptr<X509_REQ, Deleter<X509_REQ_free>>;
using X509Extension = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;
using X509NameOwner = std::unique_ptr<X509_NAME, Deleter<X509_NAME_free>>;
using X509Store = std::unique_ptr<X509_STORE, Deleter<X509_STORE_free>>;
using X509StoreContext = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX_free>>;
using GeneralName = std::unique_ptr<GENERAL_NAME, Deleter<GENERAL_NAME_free>>;
using GeneralNames = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES_free>>;
using Asn1Integer = std::unique_ptr<ASN1_INTEGER, Deleter<ASN1_INTEGER_free>>;
using Asn1OctetString = std::unique_ptr<ASN1_OCTET_STRING, Deleter<ASN1_OCTET_STRING_free>>;
using Asn1String = std::unique_ptr<ASN1_STRING, Deleter<ASN1_STRING_free>>;
using ExtendedKeyUsage = std::unique_ptr<EXTENDED_KEY_USAGE, Deleter<EXTENDED_KEY_USAGE_free>>;

void free_x509_stack(STACK_OF(X509) * stack);
using X509Stack = std::unique_ptr<STACK_OF(X509), Deleter<free_x509_stack>>;

// Returns the text of every queued OpenSSL error, "; "-separated, and empties the queue.
// Returns "no OpenSSL error queued" when the queue was empty.
std::string drain_errors();

// The failure of a conversion or key operation; the detail carries OpenSSL's text.
enum class CryptoError {
  invalid,  // the input does not parse or is not the expected kind of key or object
  failed,   // OpenSSL failed on valid input (allocation, randomness)
};

// --- digests and randomness ---

using Sha256Digest = std::array<std::uint8_t, 32>;
Sha256Digest sha256(std::span<const std::uint8_t> bytes);
Sha256Digest sha256(std::string_view bytes);
std::string to_hex(std::span<const std::uint8_t> bytes);

// Fills `out` from OpenSSL's CSPRNG; returns false (queue cleared) if it is not seeded.
bool random_bytes(std::span<std::uint8_t> out);

// --- keys ---

// Generates a fresh ECDSA P-256 key pair; null on failure (queue cleared).
Pkey generate_p256_key();

bool is_p256(const EVP_PKEY* key);
bool is_ed25519(const EVP_PKEY* key);

// Parses a PEM private key (PKCS#8 or SEC 1). Encrypted PEM is rejected without prompting.
Result<Pkey, CryptoError> private_key_from_pem(std::string_view pem);
// Serializes as unencrypted PKCS#8 PEM. The intermediate buffer is OpenSSL secure memory,
// which is wiped when freed.
Result<SecretBytes, CryptoError> private_key_to_pem(EVP_PKEY* key);
// Builds a P-256 public key from the affine coordinates; rejects a point not on the curve.
Result<Pkey, CryptoError> p256_public_key(std::span<const std::uint8_t> x, std::span<const std::uint8_t> y);
// The affine coordinates of a P-256 key, 32 bytes each, big-endian.
Result<std::pair<std::vector<std::uint8_t>, std::vector<std::uint8_t>>, CryptoError> p256_coordinates(
    const EVP_PKEY* key);

// --- certificates and requests ---

Result<X509Cert, CryptoError> certificate_from_pem(std::string_view pem);
Result<std::string, CryptoError> certificate_to_pem(X509* certificate);
Result<std::vector<std::uint8_t>, CryptoError> certificate_to_der(X509* certificate);
Result<X509Req, CryptoError> request_from_pem(std::string_view pem);
Result<std::string, CryptoError> request_to_pem(X509_REQ* request);
Result<std::string, CryptoError> public_key_to_pem(EVP_PKEY* key);

// --- files ---

enum class FileError {
  io,           // open, read, write, rename or mkdir failed
  permissions,  // a private file or directory with group or other permission bits
  not_found,
  too_large,
};

// Creates `directory` with mode 0700 (parents as needed) or, when it exists, checks that it
// is a directory without group or other write permission.
Result<void, FileError> ensure_private_directory(const std::filesystem::path& directory);

// Reads a private file: a regular file (a symlink is not followed), no permission bit for
// group or others, at most `max_bytes`. The contents are returned in wiping memory.
Result<SecretBytes, FileError> read_private_file(const std::filesystem::path& path, std::size_t max_bytes);

// Reads a regular file of at most `max_bytes`.
Result<std::string, FileError> read_public_file(const std::filesystem::path& path, std::size_t max_bytes);

// Writes `bytes` to a new temporary file beside `path`, opened with
// O_CREAT | O_EXCL | O_NOFOLLOW and `mode`, fsyncs it and renames it over `path`, then
// fsyncs the directory. A reader never sees a partly written file.
Result<void, FileError> write_file_atomically(const std::filesystem::path& path, std::span<const std::uint8_t> bytes,
                                              mode_t mode);
Result<void, FileError> write_file_atomically(const std::filesystem::path& path, std::string_view bytes, mode_t mode);

}  // namespace licensing::crypto::ossl
