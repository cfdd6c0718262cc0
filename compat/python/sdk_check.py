#!/usr/bin/env python3
"""Drive Microsoft's `azure-security-attestation` 1.0.0 SDK against an Aver service.

Usage:
    sdk_check.py BASE_URL CA_PEM COMMAND [ARGS...]

Every call is made through the SDK's public API with token validation ON
(signature against /certs by kid, exp/nbf, and issuer == BASE_URL). The
result is printed as one JSON object on stdout. On failure the JSON has
"ok": false, the exception class, the HTTP status and the service's error
code, and the exit status is 1 (2 for a usage error).

Commands:
    metadata                                 get_open_id_metadata
    signers                                  get_signing_certificates
    attest-sgx QUOTE [options]               attest_sgx_enclave
    attest-oe REPORT [options]               attest_open_enclave
        --runtime-binary FILE   runtime_data=bytes (dataType Binary)
        --runtime-json FILE     runtime_json=bytes (dataType JSON)
        --inittime-json FILE    inittime_json=bytes (the SDK sends no data: its bug)
        --draft-policy FILE     draft_policy=text (unsecured token expected)
        --sdk-retries           keep azure-core's default retry policy
                                (default here: retry_total=0)
    Any command: --issuer URL   expected token issuer (default BASE_URL)
    gen-signer OUT_PREFIX                    RSA-2048 key + self-signed cert:
                                             OUT_PREFIX.key.pem, OUT_PREFIX.cert.pem
    policy-get TYPE                          get_policy
    policy-set TYPE POLICY_FILE [--key K --cert C]   set_policy
    policy-reset TYPE [--key K --cert C]     reset_policy
    policy-certs                             get_policy_management_certificates
    policy-cert-add CERT --key K --cert C    add_policy_management_certificate
    policy-cert-remove CERT --key K --cert C remove_policy_management_certificate

The bearer token sent is $AVER_SDK_BEARER (default "aver-sdk-compat").
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import sys
import time
import traceback


def b64url(data):
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jsonable(value):
    """Converts SDK model values into JSON-friendly values."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return {"b64url": b64url(bytes(value))}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):  # enums
        return value.value
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "__dict__"):
        return {k: jsonable(v) for k, v in vars(value).items() if not k.startswith("__")}
    return repr(value)


def decode_jwt(raw):
    parts = raw.split(".")
    out = {"raw": raw, "segments": len(parts)}
    try:
        out["header"] = json.loads(b64url_decode(parts[0]))
    except Exception as e:  # noqa: BLE001
        out["header_error"] = repr(e)
    try:
        body = b64url_decode(parts[1]) if len(parts) > 1 else b""
        out["body"] = json.loads(body) if body else None
    except Exception as e:  # noqa: BLE001
        out["body_error"] = repr(e)
    out["signature_empty"] = len(parts) < 3 or parts[2] == ""
    return out


def cert_info(pem):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_type, key_bits = "RSA", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type, key_bits = "EC", key.curve.key_size
    else:
        key_type, key_bits = type(key).__name__, None
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    der = cert.public_bytes(serialization.Encoding.DER)
    return {
        "subject": cert.subject.rfc4514_string(),
        "subject_cn": cns[0].value if cns else None,
        "key_type": key_type,
        "key_bits": key_bits,
        "sha1_hex_upper": hashlib.sha1(der).hexdigest().upper(),
        "der_b64": base64.b64encode(der).decode("ascii"),
        "not_after": cert.not_valid_after_utc.isoformat()
        if hasattr(cert, "not_valid_after_utc")
        else cert.not_valid_after.isoformat(),
    }


class StaticCredential(object):
    """The smallest TokenCredential azure-core accepts."""

    def __init__(self, token):
        self._token = token
        self.scopes_seen = []

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        self.scopes_seen.extend(scopes)
        return AccessToken(self._token, int(time.time()) + 3600)


class Recorder(object):
    """azure-core raw request/response hooks: what really went over the wire."""

    def __init__(self):
        self.exchanges = []

    def on_request(self, pipeline_request):
        req = pipeline_request.http_request
        body = req.body
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        self.exchanges.append(
            {
                "method": req.method,
                "url": req.url,
                "content_type": req.headers.get("Content-Type"),
                "authorization": req.headers.get("Authorization"),
                "body": body,
            }
        )

    def on_response(self, pipeline_response):
        resp = pipeline_response.http_response
        entry = {"status": resp.status_code, "response_content_type": resp.headers.get("Content-Type")}
        if self.exchanges and "status" not in self.exchanges[-1]:
            self.exchanges[-1].update(entry)
        else:
            self.exchanges.append(entry)


RECORDER = Recorder()


def client_kwargs(args, issuer):
    kwargs = {
        "connection_verify": args.ca,
        # Token validation, all on: signature (kid in /certs), exp, nbf, issuer.
        "validate_token": True,
        "validate_signature": True,
        "validate_expiration": True,
        "validate_not_before": True,
        "validate_issuer": True,
        "issuer": issuer,
    }
    if not getattr(args, "sdk_retries", False):
        kwargs["retry_total"] = 0
    return kwargs


def validation_capture(out):
    def callback(token, signer):
        out["validation_callback_called"] = True
        out["validated_alg"] = token.algorithm
        if signer is not None:
            out["signer_kid"] = signer.key_id
            out["signer_certificate"] = cert_info(signer.certificates[0])
        else:
            out["signer_kid"] = None

    return callback


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def read_text(path):
    with open(path, "r", encoding="utf-8") as f:
        return f.read()


def attestation_result(result):
    fields = [
        "issuer",
        "unique_id",
        "nonce",
        "version",
        "runtime_claims",
        "inittime_claims",
        "policy_claims",
        "verifier_type",
        "policy_signer",
        "policy_hash",
        "is_debuggable",
        "product_id",
        "mr_enclave",
        "mr_signer",
        "svn",
        "enclave_held_data",
        "sgx_collateral",
    ]
    out, errors = {}, {}
    for name in fields:
        try:
            value = getattr(result, name)
            if name == "policy_signer" and value is not None:
                value = {"key_id": value.key_id, "certificates": value.certificates}
            out[name] = jsonable(value)
        except Exception as e:  # noqa: BLE001 - SDK property bugs are findings
            errors[name] = "%s: %s" % (type(e).__name__, e)
    return out, errors


def policy_result(result):
    if result is None:
        return None
    signer = result.policy_signer
    return {
        "policy_resolution": jsonable(result.policy_resolution),
        # msrest models it as base64 bytes; print it as the b64url text on the wire.
        "policy_token_hash": b64url(result.policy_token_hash)
        if isinstance(result.policy_token_hash, (bytes, bytearray))
        else result.policy_token_hash,
        "policy_signer": None
        if signer is None
        else {
            "key_id": signer.key_id,
            "certificates": signer.certificates,
            "certificate": cert_info(signer.certificates[0]) if signer.certificates else None,
        },
    }


def token_info(token):
    info = decode_jwt(token.to_jwt_string())
    info["algorithm"] = token.algorithm
    info["key_id"] = token.key_id
    info["key_url"] = token.key_url
    info["type"] = token.type
    return info


def run(args):
    from azure.security.attestation import (
        AttestationAdministrationClient,
        AttestationClient,
    )
    from azure.security.attestation import AttestationPolicyToken

    base = args.base
    issuer = args.issuer or base
    cred = StaticCredential(os.environ.get("AVER_SDK_BEARER", "aver-sdk-compat"))
    rec = RECORDER
    hooks = {"raw_request_hook": rec.on_request, "raw_response_hook": rec.on_response}
    out = {"ok": True, "sdk": "python", "command": args.command}
    validation = {}
    call_opts = dict(hooks)
    call_opts["validation_callback"] = validation_capture(validation)

    cmd = args.command
    if cmd in ("metadata", "signers", "attest-sgx", "attest-oe"):
        client = AttestationClient(base, cred, **client_kwargs(args, issuer))
        if cmd == "metadata":
            out["metadata"] = client.get_open_id_metadata(**hooks)
        elif cmd == "signers":
            signers = client.get_signing_certificates(**hooks)
            out["signers"] = [
                {
                    "key_id": s.key_id,
                    "certificates": s.certificates,
                    "parsed": [cert_info(c) for c in s.certificates],
                }
                for s in signers
            ]
        else:
            evidence = read_bytes(args.evidence)
            kw = dict(call_opts)
            if args.runtime_binary:
                kw["runtime_data"] = read_bytes(args.runtime_binary)
            if args.runtime_json:
                kw["runtime_json"] = read_bytes(args.runtime_json)
            if args.inittime_json:
                kw["inittime_json"] = read_bytes(args.inittime_json)
            if args.draft_policy:
                kw["draft_policy"] = read_text(args.draft_policy)
            if cmd == "attest-sgx":
                result, token = client.attest_sgx_enclave(evidence, **kw)
            else:
                result, token = client.attest_open_enclave(evidence, **kw)
            out["result"], out["result_property_errors"] = attestation_result(result)
            out["token"] = token_info(token)
            out["signers_kids"] = [s.key_id for s in client._get_signers()]
    else:
        admin = AttestationAdministrationClient(base, cred, **client_kwargs(args, issuer))
        key = read_text(args.key) if getattr(args, "key", None) else None
        cert = read_text(args.cert) if getattr(args, "cert", None) else None
        signing = {}
        if key or cert:
            signing = {"signing_key": key, "signing_certificate": cert}
        if cmd == "policy-get":
            policy, token = admin.get_policy(args.type, **call_opts)
            out["policy"] = policy
            out["token"] = token_info(token)
            stored = out["token"].get("body", {}).get("x-ms-policy")
            out["stored_jws"] = decode_jwt(stored) if isinstance(stored, str) else stored
        elif cmd == "policy-set":
            text = read_text(args.policy)
            expected_jws = AttestationPolicyToken(text, **signing).to_jwt_string()
            result, token = admin.set_policy(args.type, text, **dict(call_opts, **signing))
            out["policy_result"] = policy_result(result)
            out["token"] = token_info(token)
            out["expected_jws"] = expected_jws
            out["expected_token_hash"] = b64url(hashlib.sha256(expected_jws.encode("ascii")).digest())
        elif cmd == "policy-reset":
            result, token = admin.reset_policy(args.type, **dict(call_opts, **signing))
            out["policy_result"] = policy_result(result)
            out["token"] = token_info(token)
        elif cmd == "policy-certs":
            certs, token = admin.get_policy_management_certificates(**call_opts)
            out["certificates"] = [[cert_info(c) for c in chain] for chain in certs]
            out["token"] = token_info(token)
        elif cmd in ("policy-cert-add", "policy-cert-remove"):
            target = read_text(args.target)
            op = (
                admin.add_policy_management_certificate
                if cmd == "policy-cert-add"
                else admin.remove_policy_management_certificate
            )
            result, token = op(target, **dict(call_opts, **signing))
            out["certificate_result"] = {
                "certificate_thumbprint": result.certificate_thumbprint,
                "certificate_resolution": jsonable(result.certificate_resolution),
            }
            out["target_certificate"] = cert_info(target)
            out["token"] = token_info(token)
        else:
            raise SystemExit("unknown command %s" % cmd)
        out["signers_kids"] = [s.key_id for s in admin._get_signers()]

    out["validation"] = validation
    out["wire"] = rec.exchanges
    out["credential_scopes"] = cred.scopes_seen
    return out


def gen_signer(prefix):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, u"Aver SDK compat policy signer")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    with open(prefix + ".key.pem", "w") as f:
        f.write(key_pem)
    with open(prefix + ".cert.pem", "w") as f:
        f.write(cert_pem)
    return {
        "ok": True,
        "sdk": "python",
        "command": "gen-signer",
        "key": prefix + ".key.pem",
        "cert": prefix + ".cert.pem",
        "certificate": cert_info(cert_pem),
    }


def error_json(exc, command, elapsed):
    out = {
        "ok": False,
        "sdk": "python",
        "command": command,
        "exception": type(exc).__name__,
        "exception_module": type(exc).__module__,
        "message": str(exc)[:2000],
        "elapsed_ms": elapsed,
    }
    response = getattr(exc, "response", None)
    if response is not None:
        out["status"] = getattr(response, "status_code", None)
        try:
            out["response_content_type"] = response.headers.get("Content-Type")
            out["x_ms_error_code"] = response.headers.get("x-ms-error-code")
            out["response_body"] = response.text()[:2000]
        except Exception:  # noqa: BLE001
            pass
    if getattr(exc, "status_code", None) is not None:
        out["status"] = exc.status_code
    err = getattr(exc, "error", None)
    if err is not None:
        out["error_code"] = getattr(err, "code", None)
        out["error_message"] = getattr(err, "message", None)
    out["wire"] = RECORDER.exchanges
    out["traceback"] = traceback.format_exc()[-4000:]
    return out


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("base")
    p.add_argument("ca")
    p.add_argument("command")
    p.add_argument("rest", nargs="*")
    p.add_argument("--runtime-binary")
    p.add_argument("--runtime-json")
    p.add_argument("--inittime-json")
    p.add_argument("--draft-policy")
    p.add_argument("--key")
    p.add_argument("--cert")
    p.add_argument("--sdk-retries", action="store_true")
    p.add_argument("--issuer", help="expected token issuer (default: BASE_URL)")
    args = p.parse_intermixed_args(argv)

    positional = {
        "attest-sgx": ["evidence"],
        "attest-oe": ["evidence"],
        "gen-signer": ["prefix"],
        "policy-get": ["type"],
        "policy-set": ["type", "policy"],
        "policy-reset": ["type"],
        "policy-cert-add": ["target"],
        "policy-cert-remove": ["target"],
    }.get(args.command, [])
    if len(args.rest) != len(positional):
        p.error("%s takes %s" % (args.command, " ".join(x.upper() for x in positional) or "no arguments"))
    for name, value in zip(positional, args.rest):
        setattr(args, name, value)

    start = time.monotonic()
    try:
        if args.command == "gen-signer":
            out = gen_signer(args.prefix)
        else:
            out = run(args)
        out["elapsed_ms"] = int((time.monotonic() - start) * 1000)
        print(json.dumps(out, default=jsonable))
        return 0
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001
        elapsed = int((time.monotonic() - start) * 1000)
        print(json.dumps(error_json(exc, args.command, elapsed), default=jsonable))
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
