// A software TPM (swtpm 0.7, TPM 2.0 mode) run as a child process on 127.0.0.1, and its
// one-time manufacturing with swtpm_setup (EK, EK certificate from a local CA, platform
// certificate, locked NV).
//
// swtpm runs in the foreground of the child, never with --daemon, so the pid stays ours
// and a relative path cannot resolve against another working directory. Every path given
// to swtpm is made absolute first.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>

#include "tpm/tpm_context.hpp"

namespace licensing::tpm {

struct SwtpmSetupOptions {
  // The TPM state directory (created with mode 0700 if missing).
  std::filesystem::path state_directory;
  // The local CA that plays the TPM manufacturer: its keys and certificates, and the
  // swtpm_setup and swtpm_localca configuration files written for this run. Empty means
  // "<state_directory>/localca". Several TPMs may share one CA directory.
  std::filesystem::path ca_directory;
  // The longest swtpm_setup may run before it is killed.
  std::chrono::seconds timeout{60};
};

// Runs `swtpm_setup --tpm2 --create-ek-cert --create-platform-cert --lock-nvram` with an
// SHA-256 PCR bank. It leaves an RSA 2048 EK at 0x81010001 and its certificate in NV index
// 0x01C00002. Fails with process_failed (the detail names swtpm_setup's log file) when
// swtpm_setup exits with an error.
TpmResult<void> provision_swtpm(const SwtpmSetupOptions& options);

struct SwtpmOptions {
  std::filesystem::path state_directory;
  // The longest wait for swtpm to accept connections on its server port.
  std::chrono::milliseconds start_timeout{5000};
};

// One running swtpm. The destructor stops it (SIGTERM, then SIGKILL after 5 s).
// TPM2_Startup(CLEAR) is sent by swtpm itself (--flags not-need-init,startup-clear).
class SwtpmProcess {
 public:
  // Starts swtpm on a free loopback port P and its control channel on P + 1 (where the
  // swtpm TCTI looks for it), and waits until P accepts connections. A port taken between
  // choosing and binding makes swtpm exit; start then retries with new ports, at most 5 times.
  static TpmResult<SwtpmProcess> start(const SwtpmOptions& options);

  SwtpmProcess(SwtpmProcess&& other) noexcept;
  SwtpmProcess& operator=(SwtpmProcess&& other) noexcept;
  SwtpmProcess(const SwtpmProcess&) = delete;
  SwtpmProcess& operator=(const SwtpmProcess&) = delete;
  ~SwtpmProcess();

  // "swtpm:host=127.0.0.1,port=<server port>", for TpmContext::open.
  std::string tcti_config() const;
  std::uint16_t server_port() const { return server_port_; }
  std::uint16_t control_port() const { return control_port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // Reaps swtpm when it has exited (a zombie still answers kill(pid, 0)), and returns true
  // then; the object is no longer running() afterwards.
  bool exited();

  // Sends CMD_INIT on the control channel: the TPM is reinitialized as after a power
  // cycle, loses PCRs, sessions and transient objects, and waits for TPM2_Startup.
  // Connections on the server port stay open.
  TpmResult<void> power_cycle();

  // Stops swtpm and waits for it. swtpm writes its permanent state to the state directory
  // as it changes, so a later start() on the same directory continues with the same seeds,
  // keys and NV; PCRs start again from zero after its TPM2_Startup(CLEAR).
  void stop();

 private:
  SwtpmProcess() = default;

  pid_t pid_ = -1;
  std::uint16_t server_port_ = 0;
  std::uint16_t control_port_ = 0;
};

}  // namespace licensing::tpm
