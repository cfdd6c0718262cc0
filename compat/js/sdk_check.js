#!/usr/bin/env node
// Drive Microsoft's @azure/attestation 1.0.0 SDK against an Aver service.
//
// Usage: node sdk_check.js BASE_URL CA_PEM COMMAND [ARGS...] [--options]
//
// Same commands and JSON output shape as ../python/sdk_check.py (minus
// gen-signer). Token validation is ON for every call: signature against
// /certs, exp/nbf, and issuer == BASE_URL. Prints one JSON object on stdout;
// exits 1 with {"ok": false, exception, status, error_code, ...} on failure.
//
// The CA is trusted through NODE_EXTRA_CA_CERTS, which Node only reads at
// start-up: when it is not already CA_PEM, the script re-runs itself with it.
// The bearer token sent is $AVER_SDK_BEARER (default "aver-sdk-compat").
"use strict";

const fs = require("fs");
const crypto = require("crypto");
const path = require("path");
const { spawnSync } = require("child_process");

const USAGE = `usage: sdk_check.js BASE_URL CA_PEM COMMAND [ARGS...]
commands:
  metadata | signers
  attest-sgx QUOTE | attest-oe REPORT
      [--runtime-binary FILE] [--runtime-json FILE] [--inittime-json FILE]
      [--draft-policy FILE] [--sdk-retries]
  policy-get TYPE | policy-set TYPE POLICY_FILE [--key K --cert C]
  policy-reset TYPE [--key K --cert C] | policy-certs
  policy-cert-add CERT --key K --cert C | policy-cert-remove CERT --key K --cert C
any command: --issuer URL  expected token issuer (default BASE_URL)`;

const POSITIONAL = {
  metadata: [],
  signers: [],
  "attest-sgx": ["evidence"],
  "attest-oe": ["evidence"],
  "policy-get": ["type"],
  "policy-set": ["type", "policy"],
  "policy-reset": ["type"],
  "policy-certs": [],
  "policy-cert-add": ["target"],
  "policy-cert-remove": ["target"],
};
const VALUE_FLAGS = ["issuer", "runtime-binary", "runtime-json", "inittime-json", "draft-policy", "key", "cert"];

function usage(msg) {
  process.stderr.write((msg ? msg + "\n" : "") + USAGE + "\n");
  process.exit(2);
}

function parseArgs(argv) {
  const args = { rest: [], flags: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const name = a.slice(2);
      if (VALUE_FLAGS.includes(name)) {
        if (i + 1 >= argv.length) usage(`${a} needs a value`);
        args.flags[name] = argv[++i];
      } else if (name === "sdk-retries") {
        args.flags[name] = true;
      } else {
        usage(`unknown option ${a}`);
      }
    } else {
      args.rest.push(a);
    }
  }
  if (args.rest.length < 3) usage();
  [args.base, args.ca, args.command] = args.rest.splice(0, 3);
  const want = POSITIONAL[args.command];
  if (!want) usage(`unknown command ${args.command}`);
  if (args.rest.length !== want.length) usage(`${args.command} takes ${want.join(" ") || "no arguments"}`);
  want.forEach((name, i) => (args[name] = args.rest[i]));
  return args;
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");

function decodeJwt(raw) {
  const parts = String(raw).split(".");
  const out = { raw, segments: parts.length };
  try {
    out.header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8"));
  } catch (e) {
    out.header_error = String(e);
  }
  try {
    const body = parts.length > 1 ? Buffer.from(parts[1], "base64url").toString("utf8") : "";
    out.body = body ? JSON.parse(body) : null;
  } catch (e) {
    out.body_error = String(e);
  }
  out.signature_empty = parts.length < 3 || parts[2] === "";
  return out;
}

function certInfo(pem) {
  const cert = new crypto.X509Certificate(pem);
  const key = cert.publicKey;
  const details = key.asymmetricKeyDetails || {};
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject);
  return {
    subject: cert.subject,
    subject_cn: cn ? cn[1] : null,
    key_type: key.asymmetricKeyType === "rsa" ? "RSA" : key.asymmetricKeyType === "ec" ? "EC" : key.asymmetricKeyType,
    key_bits: details.modulusLength || null,
    sha1_hex_upper: crypto.createHash("sha1").update(cert.raw).digest("hex").toUpperCase(),
    der_b64: cert.raw.toString("base64"),
    not_after: cert.validTo,
  };
}

function jsonable(v) {
  if (v === undefined || v === null) return null;
  if (v instanceof Uint8Array) return { b64url: b64url(v) };
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(jsonable);
  if (typeof v === "object") {
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = jsonable(x);
    return o;
  }
  return v;
}

class Recorder {
  constructor() {
    this.exchanges = [];
  }
  onResponse = (raw) => {
    const req = raw.request;
    let body = req.body;
    if (body instanceof Uint8Array) body = Buffer.from(body).toString("utf8");
    this.exchanges.push({
      method: req.method,
      url: req.url,
      content_type: req.headers.get("content-type") || null,
      authorization: req.headers.get("authorization") || null,
      body: typeof body === "string" ? body : body === undefined ? null : String(body),
      status: raw.status,
      response_content_type: raw.headers.get("content-type") || null,
    });
  };
}

function tokenInfo(token) {
  const info = decodeJwt(token.serialize());
  info.algorithm = token.algorithm;
  info.key_id = token.keyId;
  return info;
}

function attestationResult(r) {
  const names = [
    "issuer",
    "uniqueId",
    "nonce",
    "version",
    "runTimeClaims",
    "initTimeClaims",
    "policyClaims",
    "verifierType",
    "policySigner",
    "policyHash",
    "isDebuggable",
    "productId",
    "mrEnclave",
    "mrSigner",
    "svn",
    "enclaveHeldData",
    "sgxCollateral",
  ];
  const out = {};
  const errors = {};
  for (const n of names) {
    try {
      out[n] = jsonable(r[n]);
    } catch (e) {
      errors[n] = `${e.name}: ${e.message}`;
    }
  }
  return [out, errors];
}

function policyResult(r) {
  if (!r) return null;
  return {
    policy_resolution: r.policyResolution ?? null,
    // Deserialized as bytes; print it as the b64url text on the wire.
    policy_token_hash: r.policyTokenHash instanceof Uint8Array ? b64url(r.policyTokenHash) : r.policyTokenHash ?? null,
    policy_signer: r.policySigner
      ? {
          key_id: r.policySigner.keyId ?? null,
          certificates: r.policySigner.certificates,
          certificate: r.policySigner.certificates.length ? certInfo(r.policySigner.certificates[0]) : null,
        }
      : null,
  };
}

const RECORDER = new Recorder();

async function run(args) {
  const { AttestationClient, AttestationAdministrationClient, createAttestationPolicyToken } = require("@azure/attestation");
  const bearer = process.env.AVER_SDK_BEARER || "aver-sdk-compat";
  const scopesSeen = [];
  const credential = {
    // @azure/core-auth TokenCredential shape.
    getToken: async (scopes, _options) => {
      scopesSeen.push(...[].concat(scopes));
      return { token: bearer, expiresOnTimestamp: Date.now() + 3600 * 1000 };
    },
  };
  const validation = {};
  const validationOptions = {
    validateToken: true,
    validateExpirationTime: true,
    validateNotBeforeTime: true,
    validateIssuer: true,
    expectedIssuer: args.flags.issuer || args.base,
    timeValidationSlack: 1,
    validateAttestationToken: (token, signer) => {
      validation.validation_callback_called = true;
      validation.validated_alg = token.algorithm;
      validation.signer_kid = signer ? signer.keyId ?? null : null;
      if (signer && signer.certificates && signer.certificates.length) {
        validation.signer_certificate = certInfo(signer.certificates[0]);
      }
      return undefined;
    },
  };
  const clientOptions = { validationOptions };
  if (!args.flags["sdk-retries"]) clientOptions.retryOptions = { maxRetries: 0 };
  const rec = RECORDER;
  // Validation options go on every call too: AttestationClient 1.0.0 ignores its
  // third constructor argument (clientOptions) when a credential is passed.
  const op = { onResponse: rec.onResponse, validationOptions };
  const out = { ok: true, sdk: "js", command: args.command };
  const cmd = args.command;
  const readText = (p) => fs.readFileSync(p, "utf8");

  if (["metadata", "signers", "attest-sgx", "attest-oe"].includes(cmd)) {
    // NB: with a credential, 1.0.0 drops clientOptions (so retryOptions too):
    // attestation calls always run with core-rest-pipeline's default retries.
    const client = new AttestationClient(args.base, credential, clientOptions);
    if (cmd === "metadata") {
      out.metadata = await client.getOpenIdMetadata(op);
    } else if (cmd === "signers") {
      const signers = await client.getAttestationSigners(op);
      out.signers = signers.map((s) => ({
        key_id: s.keyId ?? null,
        certificates: s.certificates,
        parsed: s.certificates.map(certInfo),
      }));
    } else {
      const evidence = fs.readFileSync(args.evidence);
      const o = { ...op };
      if (args.flags["runtime-binary"]) o.runTimeData = fs.readFileSync(args.flags["runtime-binary"]);
      if (args.flags["runtime-json"]) o.runTimeJson = fs.readFileSync(args.flags["runtime-json"]);
      if (args.flags["inittime-json"]) o.initTimeJson = fs.readFileSync(args.flags["inittime-json"]);
      if (args.flags["draft-policy"]) o.draftPolicyForAttestation = readText(args.flags["draft-policy"]);
      const resp =
        cmd === "attest-sgx" ? await client.attestSgxEnclave(evidence, o) : await client.attestOpenEnclave(evidence, o);
      [out.result, out.result_property_errors] = attestationResult(resp.body);
      out.token = tokenInfo(resp.token);
      out.signers_kids = (await client._signingKeys()).map((s) => s.keyId ?? null);
    }
  } else {
    const admin = new AttestationAdministrationClient(args.base, credential, clientOptions);
    const key = args.flags.key ? readText(args.flags.key) : undefined;
    const cert = args.flags.cert ? readText(args.flags.cert) : undefined;
    const signing = key || cert ? { privateKey: key, certificate: cert } : {};
    if (cmd === "policy-get") {
      const resp = await admin.getPolicy(args.type, op);
      out.policy = resp.body;
      out.token = tokenInfo(resp.token);
      const stored = out.token.body ? out.token.body["x-ms-policy"] : undefined;
      out.stored_jws = typeof stored === "string" ? decodeJwt(stored) : stored ?? null;
    } else if (cmd === "policy-set") {
      const text = readText(args.policy);
      const expected = createAttestationPolicyToken(text, key, cert).serialize();
      const resp = await admin.setPolicy(args.type, text, { ...op, ...signing });
      out.policy_result = policyResult(resp.body);
      out.token = tokenInfo(resp.token);
      out.expected_jws = expected;
      out.expected_token_hash = b64url(crypto.createHash("sha256").update(expected, "ascii").digest());
    } else if (cmd === "policy-reset") {
      const resp = await admin.resetPolicy(args.type, { ...op, ...signing });
      out.policy_result = policyResult(resp.body);
      out.token = tokenInfo(resp.token);
    } else if (cmd === "policy-certs") {
      const resp = await admin.getPolicyManagementCertificates(op);
      out.certificates = resp.body.map((s) => s.certificates.map(certInfo));
      out.token = tokenInfo(resp.token);
    } else if (cmd === "policy-cert-add" || cmd === "policy-cert-remove") {
      const target = readText(args.target);
      const resp =
        cmd === "policy-cert-add"
          ? await admin.addPolicyManagementCertificate(target, key, cert, op)
          : await admin.removePolicyManagementCertificate(target, key, cert, op);
      out.certificate_result = {
        certificate_thumbprint: resp.body.certificateThumbprint ?? null,
        certificate_resolution: resp.body.certificateResolution ?? null,
      };
      out.target_certificate = certInfo(target);
      out.token = tokenInfo(resp.token);
    }
    out.signers_kids = (await admin.signingKeys()).map((s) => s.keyId ?? null);
  }
  out.validation = validation;
  out.wire = rec.exchanges;
  out.credential_scopes = scopesSeen;
  return out;
}

function errorJson(e, command, elapsed) {
  const out = {
    ok: false,
    sdk: "js",
    command,
    exception: (e && (e.name || (e.constructor && e.constructor.name))) || typeof e,
    message: String((e && e.message) || e).slice(0, 2000),
    elapsed_ms: elapsed,
  };
  if (e && e.statusCode !== undefined) out.status = e.statusCode;
  if (e && e.code !== undefined) out.error_code = e.code;
  const resp = e && e.response;
  if (resp) {
    if (out.status === undefined) out.status = resp.status;
    try {
      out.response_content_type = resp.headers.get("content-type") || null;
      out.x_ms_error_code = resp.headers.get("x-ms-error-code") || null;
      out.response_body = (resp.bodyAsText || "").slice(0, 2000);
    } catch (_) {
      /* ignore */
    }
  }
  out.wire = RECORDER.exchanges;
  out.stack = String((e && e.stack) || "").slice(0, 4000);
  return out;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  // Trust the service's self-signed certificate: Node reads NODE_EXTRA_CA_CERTS at start-up only.
  const ca = path.resolve(args.ca);
  if (process.env.NODE_EXTRA_CA_CERTS !== ca && process.env.AVER_SDK_REEXEC !== "1") {
    const r = spawnSync(process.execPath, [__filename, ...process.argv.slice(2)], {
      stdio: "inherit",
      env: { ...process.env, NODE_EXTRA_CA_CERTS: ca, AVER_SDK_REEXEC: "1" },
    });
    process.exit(r.status === null ? 1 : r.status);
  }
  const start = process.hrtime.bigint();
  const elapsed = () => Number((process.hrtime.bigint() - start) / 1000000n);
  try {
    const out = await run(args);
    out.elapsed_ms = elapsed();
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exitCode = 0;
  } catch (e) {
    process.stdout.write(JSON.stringify(errorJson(e, args.command, elapsed())) + "\n");
    process.exitCode = 1;
  }
}

main();
