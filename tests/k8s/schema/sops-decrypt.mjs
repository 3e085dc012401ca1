// Decrypts a sops file with the npm package sops-age, an implementation independent of
// deploy/secrets/encrypt, and prints the decrypted document as JSON on standard output.
//
// Usage: node tests/k8s/schema/sops-decrypt.mjs AGE_IDENTITY_FILE SOPS_FILE
//
// The identity file is the output of age-keygen. The key is read from the file, not the
// command line, so it never appears in a process list. Exit status 1 when decryption fails
// (wrong key, a changed ciphertext or a value moved to another path), 2 on bad usage.
// sops-age 4.0.2 does not check the sops MAC, so tests check it themselves.

import { readFile } from "node:fs/promises";

const [identityFile, sopsFile] = process.argv.slice(2);
if (identityFile === undefined || sopsFile === undefined) {
  process.stderr.write("usage: node sops-decrypt.mjs AGE_IDENTITY_FILE SOPS_FILE\n");
  process.exit(2);
}

const { decryptSops } = await import("sops-age");
const secretKey = (await readFile(identityFile, "utf8")).match(/AGE-SECRET-KEY-1[0-9A-Z]+/)?.[0];
if (secretKey === undefined) {
  process.stderr.write(`sops-decrypt: no AGE-SECRET-KEY-1 line in ${identityFile}\n`);
  process.exit(2);
}

try {
  const document = await decryptSops(await readFile(sopsFile, "utf8"), { secretKey, fileType: "yaml" });
  process.stdout.write(JSON.stringify(document) + "\n");
} catch (error) {
  process.stderr.write(`sops-decrypt: cannot decrypt ${sopsFile}: ${error.message}\n`);
  process.exit(1);
}
