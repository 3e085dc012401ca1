#include "crypto/openssl.hpp"

#include <fcntl.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <system_error>
#include <utility>

namespace licensing::crypto::ossl {
namespace {

// Owns a file descriptor.
class UniqueFd {
 public:
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&&) = delete;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  // Closes now and reports whether close succeeded (it can report a deferred write error).
  bool close() {
    const int fd = std::exchange(fd_, -1);
    return fd < 0 || ::close(fd) == 0;
  }

 private:
  int fd_;
};

std::string format_mode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof(text), "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string errno_text(int error) { return std::error_code(error, std::generic_category()).message(); }

template <typename Code>
std::unexpected<Error<Code>> fail_openssl(Code code, std::string_view what) {
  return fail(code, std::string(what) + ": " + drain_errors());
}

// The PEM passphrase callback: there is never a passphrase, and OpenSSL must not prompt.
int no_passphrase(char* /*buffer*/, int /*size*/, int /*rwflag*/, void* /*user*/) { return -1; }

Bio memory_bio(std::string_view bytes) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return nullptr;
  return Bio(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())));
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  if (length <= 0 || data == nullptr) return {};
  return std::string(data, static_cast<std::size_t>(length));
}

Result<std::string, FileError> read_all(int fd, std::size_t max_bytes, const std::filesystem::path& path) {
  // The buffer may hold key material, so it is wiped on every return path.
  std::string contents;
  char buffer[4096];
  auto stop = [&](Result<std::string, FileError> result) {
    OPENSSL_cleanse(buffer, sizeof(buffer));
    if (!result) wipe_string(contents);
    return result;
  };
  while (true) {
    const ssize_t count = ::read(fd, buffer, sizeof(buffer));
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) return stop(fail(FileError::io, "read " + path.string() + " failed: " + errno_text(errno)));
    if (count == 0) break;
    if (contents.size() + static_cast<std::size_t>(count) > max_bytes) {
      return stop(fail(FileError::too_large, path.string() + " is larger than " + std::to_string(max_bytes) + " bytes"));
    }
    contents.append(buffer, static_cast<std::size_t>(count));
  }
  return stop(std::move(contents));
}

Result<UniqueFd, FileError> open_regular_file(const std::filesystem::path& path, struct stat& status) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    const int error = errno;
    if (error == ENOENT) return fail(FileError::not_found, path.string() + " does not exist");
    if (error == ELOOP) return fail(FileError::io, path.string() + " is a symbolic link, expected a regular file");
    return fail(FileError::io, "open " + path.string() + " failed: " + errno_text(error));
  }
  if (::fstat(fd.get(), &status) != 0) return fail(FileError::io, "stat " + path.string() + " failed: " + errno_text(errno));
  if (!S_ISREG(status.st_mode)) return fail(FileError::io, path.string() + " is not a regular file");
  return fd;
}

}  // namespace

void free_x509_stack(STACK_OF(X509) * stack) { sk_X509_pop_free(stack, X509_free); }

std::string drain_errors() {
  std::string text;
  unsigned long code = 0;
  while ((code = ERR_get_error()) != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "no OpenSSL error queued" : text;
}

Sha256Digest sha256(std::span<const std::uint8_t> bytes) {
  Sha256Digest digest{};
  unsigned int length = 0;
  // EVP_Digest fails only when SHA-256 itself is unavailable (no default provider). Nothing
  // in the server can work then, and returning a made-up digest would be worse than stopping.
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) std::abort();
  return digest;
}

Sha256Digest sha256(std::string_view bytes) {
  return sha256(std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

std::string to_hex(std::span<const std::uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const std::uint8_t byte : bytes) {
    hex.push_back(kDigits[byte >> 4]);
    hex.push_back(kDigits[byte & 0x0f]);
  }
  return hex;
}

bool random_bytes(std::span<std::uint8_t> out) {
  if (out.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return false;
  if (RAND_bytes(out.data(), static_cast<int>(out.size())) != 1) {
    ERR_clear_error();
    return false;
  }
  return true;
}

Pkey generate_p256_key() {
  Pkey key(EVP_EC_gen("P-256"));
  if (!key) ERR_clear_error();
  return key;
}

bool is_p256(const EVP_PKEY* key) {
  if (key == nullptr || EVP_PKEY_is_a(key, "EC") != 1) return false;

  char name[64] = {};
  std::size_t length = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof(name), &length) != 1) {
    // A key with explicit curve parameters has no group name; it is not accepted as P-256.
    ERR_clear_error();
    return false;
  }
  int nid = OBJ_sn2nid(name);
  if (nid == NID_undef) nid = EC_curve_nist2nid(name);
  return nid == NID_X9_62_prime256v1;
}

bool is_ed25519(const EVP_PKEY* key) { return key != nullptr && EVP_PKEY_is_a(key, "ED25519") == 1; }

Result<Pkey, CryptoError> private_key_from_pem(std::string_view pem) {
  Bio bio = memory_bio(pem);
  if (!bio) return fail_openssl(CryptoError::failed, "allocating a memory BIO failed");

  Pkey key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (!key) return fail_openssl(CryptoError::invalid, "no unencrypted PEM private key found");
  return key;
}

Result<SecretBytes, CryptoError> private_key_to_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_secmem()));
  if (!bio) return fail_openssl(CryptoError::failed, "allocating a secure memory BIO failed");
  if (PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return fail_openssl(CryptoError::failed, "writing the private key as PKCS#8 PEM failed");
  }

  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  if (length <= 0 || data == nullptr) return fail_openssl(CryptoError::failed, "the PKCS#8 PEM output is empty");
  return SecretBytes(std::span(reinterpret_cast<const std::uint8_t*>(data), static_cast<std::size_t>(length)));
}

Result<std::string, CryptoError> public_key_to_pem(EVP_PKEY* key) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio) return fail_openssl(CryptoError::failed, "allocating a memory BIO failed");
  if (PEM_write_bio_PUBKEY(bio.get(), key) != 1) return fail_openssl(CryptoError::failed, "writing the public key failed");
  return bio_contents(bio.get());
}

Result<Pkey, CryptoError> p256_public_key(std::span<const std::uint8_t> x, std::span<const std::uint8_t> y) {
  if (x.size() != 32 || y.size() != 32) {
    return fail(CryptoError::invalid, "P-256 coordinates must be 32 bytes each, got " + std::to_string(x.size()) +
                                          " and " + std::to_string(y.size()));
  }

  // SEC 1, section 2.3.3: the uncompressed point is 0x04 || X || Y.
  std::array<std::uint8_t, 65> point{};
  point[0] = 0x04;
  std::copy(x.begin(), x.end(), point.begin() + 1);
  std::copy(y.begin(), y.end(), point.begin() + 33);

  ParamBuilder builder(OSSL_PARAM_BLD_new());
  if (!builder || OSSL_PARAM_BLD_push_utf8_string(builder.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(builder.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()) != 1) {
    return fail_openssl(CryptoError::failed, "building EC key parameters failed");
  }
  Params params(OSSL_PARAM_BLD_to_param(builder.get()));
  PkeyContext context(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
  if (!params || !context || EVP_PKEY_fromdata_init(context.get()) != 1) {
    return fail_openssl(CryptoError::failed, "preparing an EC key import failed");
  }

  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(context.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    return fail_openssl(CryptoError::invalid, "the point is not a valid P-256 public key");
  }
  Pkey key(raw);

  // The import decodes the point; the explicit check also rejects the point at infinity
  // and a point outside the prime-order subgroup.
  PkeyContext check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return fail_openssl(CryptoError::invalid, "the point is not on the P-256 curve");
  }
  return key;
}

Result<std::pair<std::vector<std::uint8_t>, std::vector<std::uint8_t>>, CryptoError> p256_coordinates(
    const EVP_PKEY* key) {
  if (!is_p256(key)) return fail(CryptoError::invalid, "the key is not a P-256 EC key");

  BIGNUM* raw_x = nullptr;
  BIGNUM* raw_y = nullptr;
  const bool got_x = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &raw_x) == 1;
  BigNum x(raw_x);
  const bool got_y = EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &raw_y) == 1;
  BigNum y(raw_y);
  if (!got_x || !got_y) return fail_openssl(CryptoError::failed, "reading the EC public point failed");

  std::vector<std::uint8_t> x_bytes(32);
  std::vector<std::uint8_t> y_bytes(32);
  if (BN_bn2binpad(x.get(), x_bytes.data(), 32) != 32 || BN_bn2binpad(y.get(), y_bytes.data(), 32) != 32) {
    return fail_openssl(CryptoError::failed, "an EC coordinate does not fit in 32 bytes");
  }
  return std::pair(std::move(x_bytes), std::move(y_bytes));
}

Result<X509Cert, CryptoError> certificate_from_pem(std::string_view pem) {
  Bio bio = memory_bio(pem);
  if (!bio) return fail_openssl(CryptoError::failed, "allocating a memory BIO failed");
  X509Cert certificate(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
  if (!certificate) return fail_openssl(CryptoError::invalid, "no PEM certificate found");
  return certificate;
}

Result<std::string, CryptoError> certificate_to_pem(X509* certificate) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio) return fail_openssl(CryptoError::failed, "allocating a memory BIO failed");
  if (PEM_write_bio_X509(bio.get(), certificate) != 1) return fail_openssl(CryptoError::failed, "writing PEM failed");
  return bio_contents(bio.get());
}

Result<std::vector<std::uint8_t>, CryptoError> certificate_to_der(X509* certificate) {
  const int length = i2d_X509(certificate, nullptr);
  if (length <= 0) return fail_openssl(CryptoError::failed, "DER-encoding the certificate failed");
  std::vector<std::uint8_t> der(static_cast<std::size_t>(length));
  unsigned char* cursor = der.data();
  if (i2d_X509(certificate, &cursor) != length) return fail_openssl(CryptoError::failed, "DER-encoding the certificate failed");
  return der;
}

Result<X509Req, CryptoError> request_from_pem(std::string_view pem) {
  Bio bio = memory_bio(pem);
  if (!bio) return fail_openssl(CryptoError::failed, "allocating a memory BIO failed");
  X509Req request(PEM_read_bio_X509_REQ(bio.get(), nullptr, no_passphrase, nullptr));
  if (!request) return fail_openssl(CryptoError::invalid, "no PEM certificate request found");
  return request;
}

Result<std::string, CryptoError> request_to_pem(X509_REQ* request) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio) return fail_openssl(CryptoError::failed, "allocating a memory BIO failed");
  if (PEM_write_bio_X509_REQ(bio.get(), request) != 1) return fail_openssl(CryptoError::failed, "writing PEM failed");
  return bio_contents(bio.get());
}

Result<void, FileError> ensure_private_directory(const std::filesystem::path& directory) {
  std::error_code error;
  if (directory.has_parent_path()) {
    std::filesystem::create_directories(directory.parent_path(), error);
    if (error) return fail(FileError::io, "creating " + directory.parent_path().string() + " failed: " + error.message());
  }
  if (::mkdir(directory.c_str(), 0700) != 0 && errno != EEXIST) {
    return fail(FileError::io, "creating " + directory.string() + " failed: " + errno_text(errno));
  }

  struct stat status {};
  if (::lstat(directory.c_str(), &status) != 0) {
    return fail(FileError::io, "stat " + directory.string() + " failed: " + errno_text(errno));
  }
  if (!S_ISDIR(status.st_mode)) return fail(FileError::io, directory.string() + " is not a directory");
  if ((status.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return fail(FileError::permissions, directory.string() + " is writable by group or others (mode " +
                                            format_mode(status.st_mode) + "), expected 0700");
  }
  return {};
}

Result<SecretBytes, FileError> read_private_file(const std::filesystem::path& path, std::size_t max_bytes) {
  struct stat status {};
  auto fd = open_regular_file(path, status);
  if (!fd) return std::unexpected(std::move(fd.error()));

  if ((status.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    return fail(FileError::permissions, path.string() + " has mode " + format_mode(status.st_mode) +
                                            ", expected no access for group or others (0600)");
  }

  auto contents = read_all(fd->get(), max_bytes, path);
  if (!contents) return std::unexpected(std::move(contents.error()));
  SecretBytes secret{std::string_view(*contents)};
  wipe_string(*contents);
  return secret;
}

Result<std::string, FileError> read_public_file(const std::filesystem::path& path, std::size_t max_bytes) {
  struct stat status {};
  auto fd = open_regular_file(path, status);
  if (!fd) return std::unexpected(std::move(fd.error()));
  return read_all(fd->get(), max_bytes, path);
}

Result<void, FileError> write_file_atomically(const std::filesystem::path& path, std::span<const std::uint8_t> bytes,
                                              mode_t mode) {
  std::array<std::uint8_t, 8> suffix{};
  if (!random_bytes(suffix)) return fail(FileError::io, "the random number generator failed");
  const std::filesystem::path temporary = path.string() + ".tmp-" + to_hex(suffix);

  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (fd.get() < 0) return fail(FileError::io, "creating " + temporary.string() + " failed: " + errno_text(errno));

  auto remove_temporary = [&](std::string detail) {
    ::unlink(temporary.c_str());
    return fail(FileError::io, std::move(detail));
  };

  // The umask may have cleared bits of `mode`; it never adds any, so the file was never
  // more open than `mode`.
  if (::fchmod(fd.get(), mode) != 0) return remove_temporary("chmod " + temporary.string() + " failed: " + errno_text(errno));

  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t count = ::write(fd.get(), bytes.data() + written, bytes.size() - written);
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) return remove_temporary("write " + temporary.string() + " failed: " + errno_text(errno));
    written += static_cast<std::size_t>(count);
  }
  if (::fsync(fd.get()) != 0) return remove_temporary("fsync " + temporary.string() + " failed: " + errno_text(errno));
  if (!fd.close()) return remove_temporary("close " + temporary.string() + " failed: " + errno_text(errno));

  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    return remove_temporary("rename to " + path.string() + " failed: " + errno_text(errno));
  }

  // Persist the directory entry too, so a crash cannot lose a file that was reported written.
  const std::filesystem::path directory = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  UniqueFd directory_fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (directory_fd.get() < 0 || ::fsync(directory_fd.get()) != 0) {
    return fail(FileError::io, "fsync " + directory.string() + " failed: " + errno_text(errno));
  }
  return {};
}

Result<void, FileError> write_file_atomically(const std::filesystem::path& path, std::string_view bytes, mode_t mode) {
  return write_file_atomically(path, std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), mode);
}

}  // namespace licensing::crypto::ossl
