// Validates Kubernetes and cert-manager objects against their upstream schemas.
//
// Usage: node tests/k8s/schema/validate.mjs FILE...
//
// Each FILE contains YAML (one or more documents separated by "---") or JSON (one object or an
// array of objects). A file whose name ends in .json is read as JSON, one ending in .jsonl
// as JSON lines (one object per non-empty line), and any other as YAML.
// Empty YAML documents and `kind: List` wrappers are skipped and unwrapped respectively.
// Every object is validated against the model for its apiVersion and kind from the npm
// packages kubernetes-models (the core API) and @kubernetes-models/cert-manager, pinned in
// package.json and package-lock.json beside this file.
//
// Output: one line per object, `ok   FILE#N apiVersion kind namespace/name` or
// `FAIL FILE#N apiVersion kind namespace/name: ERRORS`, where N counts objects in the file
// from 1. A last line `N passed, N failed` sums them up.
// Exit status: 0 when every object is valid; 1 when any object is invalid, has an unknown
// apiVersion/kind, or a file holds no object or cannot be read or parsed; 2 on bad usage or
// when the npm packages are not installed (run `npm ci` in this directory).
//
// What is not checked: fields that the schema does not name are accepted, because the
// upstream schemas allow additional properties; admission rules (Pod Security, quotas,
// immutable fields) and references between objects need a cluster.

import { readFile } from "node:fs/promises";
import { basename, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const schemaDirectory = dirname(fileURLToPath(import.meta.url));

async function loadPackages() {
  try {
    const yaml = await import("yaml");
    const core = await import("kubernetes-models");
    const certManager = await import("@kubernetes-models/cert-manager");
    return { yaml, models: [core, certManager] };
  } catch (error) {
    process.stderr.write(
      `validate.mjs: the npm packages are not installed (${error.message}); ` + `run \`npm ci\` in ${schemaDirectory}\n`,
    );
    process.exit(2);
  }
}

// Maps "apiVersion kind" to its model class, found by walking every namespace the packages export.
function modelRegistry(modules) {
  const registry = new Map();
  const visited = new Set();
  const visit = (namespace) => {
    if (namespace === null || typeof namespace !== "object" || visited.has(namespace)) return;
    visited.add(namespace);
    for (const value of Object.values(namespace)) {
      if (typeof value === "function" && typeof value.apiVersion === "string" && typeof value.kind === "string") {
        registry.set(`${value.apiVersion} ${value.kind}`, value);
      } else {
        visit(value);
      }
    }
  };
  modules.forEach(visit);
  return registry;
}

// Returns the objects in a file's text, in order, and throws when the text does not parse.
function parseObjects(yaml, file, text) {
  let values;
  if (file.endsWith(".jsonl")) {
    values = text.split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line));
  } else if (file.endsWith(".json")) {
    const parsed = JSON.parse(text);
    values = Array.isArray(parsed) ? parsed : [parsed];
  } else {
    values = [];
    for (const document of yaml.parseAllDocuments(text)) {
      if (document.errors.length > 0) throw new Error(document.errors[0].message);
      const value = document.toJS();
      if (value !== null && value !== undefined) values.push(value);
    }
  }
  const objects = [];
  for (const value of values) {
    if (value !== null && typeof value === "object" && value.kind === "List" && Array.isArray(value.items)) {
      objects.push(...value.items);
    } else {
      objects.push(value);
    }
  }
  return objects;
}

function describe(object) {
  if (object === null || typeof object !== "object" || Array.isArray(object)) return "(not an object)";
  const metadata = object.metadata ?? {};
  const name = metadata.namespace ? `${metadata.namespace}/${metadata.name}` : `${metadata.name}`;
  return `${object.apiVersion} ${object.kind} ${name}`;
}

// Returns the validation errors of one object as text, or null when it is valid.
function check(registry, object) {
  if (object === null || typeof object !== "object" || Array.isArray(object)) return "expected an object";
  if (typeof object.apiVersion !== "string" || typeof object.kind !== "string") {
    return "missing apiVersion or kind";
  }
  const Model = registry.get(`${object.apiVersion} ${object.kind}`);
  if (Model === undefined) return `unknown apiVersion/kind ${object.apiVersion} ${object.kind}: no schema to validate against`;
  try {
    new Model(object).validate();
    return null;
  } catch (error) {
    if (Array.isArray(error.errors)) {
      return error.errors.map((e) => `${e.instancePath || "/"} ${e.message}`).join("; ");
    }
    return error.message;
  }
}

async function main(files) {
  if (files.length === 0 || files.includes("--help") || files.includes("-h")) {
    process.stderr.write("usage: node validate.mjs FILE...  (YAML documents or JSON objects/arrays)\n");
    return 2;
  }
  const { yaml, models } = await loadPackages();
  const registry = modelRegistry(models);

  let passed = 0;
  let failed = 0;
  for (const file of files) {
    let objects;
    try {
      objects = parseObjects(yaml, file, await readFile(file, "utf8"));
    } catch (error) {
      console.log(`FAIL ${file}: cannot read or parse: ${error.message}`);
      failed += 1;
      continue;
    }
    if (objects.length === 0) {
      console.log(`FAIL ${file}: no object in the file`);
      failed += 1;
      continue;
    }
    objects.forEach((object, index) => {
      const label = `${basename(file)}#${index + 1} ${describe(object)}`;
      const errors = check(registry, object);
      if (errors === null) {
        console.log(`ok   ${label}`);
        passed += 1;
      } else {
        console.log(`FAIL ${label}: ${errors}`);
        failed += 1;
      }
    });
  }
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
