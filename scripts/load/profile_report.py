#!/usr/bin/env python3
"""Summarises `callgrind_annotate --inclusive=yes` output for scripts/profile.sh.

usage: profile_report.py ANNOTATE_OUTPUT REQUESTS ALG

Prints instructions (Ir) per attestation, the cryptographic floor's share
(aws-lc's ECDSA verification, twice per quote, and the token signature:
RSA for RS256, ECDSA for ES256, each the largest inclusive cost among the
functions that name it, so nested wrappers are not counted twice), and
the functions with the largest inclusive cost per attestation. Inclusive
costs nest (a caller includes its callees), so the lines do not add up.
"""
import re
import sys

LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)$")
TOTAL = re.compile(r"^\s*([\d,]+)\s+\(100\.0%\)\s+PROGRAM TOTALS")

# aws-lc's entry points (C symbols, stable across aws-lc-rs versions).
VERIFY = ("ECDSA_do_verify", "ecdsa_do_verify_no_self_test")
SIGN = {
    "RS256": ("RSA_sign", "rsa_sign_no_self_test", "RSA_sign_pss_mgf1"),
    "ES256": ("ECDSA_do_sign", "ecdsa_do_sign", "ecdsa_sign_with_nonce_for_known_answer_test"),
}


def name_of(location: str) -> str:
    # "file:function [object]" -> "function"; aws-lc-sys prefixes its C
    # symbols with its version ("aws_lc_0_47_0_ECDSA_do_verify").
    loc = re.sub(r"\s+\[[^\]]*\]$", "", location)
    fn = loc.split(":", 1)[1] if ":" in loc and not loc.startswith("<") else loc
    return re.sub(r"^aws_lc_\d+_\d+_\d+_", "", fn)


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, requests, alg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    total = None
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = TOTAL.match(line)
            if m:
                total = int(m.group(1).replace(",", ""))
                continue
            m = LINE.match(line)
            if m:
                rows.append((int(m.group(1).replace(",", "")), name_of(m.group(2))))
    if total is None:
        print("profile_report.py: no PROGRAM TOTALS in the annotation", file=sys.stderr)
        return 1

    def largest(names):
        costs = [ir for ir, fn in rows if any(fn == n or fn.endswith("::" + n) for n in names)]
        return max(costs, default=0)

    verify = largest(VERIFY)
    sign = largest(SIGN[alg])
    per = total / requests
    floor = (verify + sign) / requests
    print(f"PROFILE alg={alg} requests={requests} ir_per_attestation={per:,.0f}")
    if floor:
        print(
            f"PROFILE floor_ir={floor:,.0f} (ECDSA verify x2 {verify / requests:,.0f}, "
            f"{alg} sign {sign / requests:,.0f}) ratio={per / floor:.2f}"
        )
    else:
        print("PROFILE the floor's aws-lc functions were not found (symbols stripped?)")
    print(f"{'Ir/attestation':>16}  {'share':>6}  function (inclusive)")
    seen = set()
    shown = 0
    for ir, fn in sorted(rows, key=lambda r: -r[0]):
        short = fn if len(fn) <= 150 else fn[:147] + "..."
        if short in seen:
            continue
        seen.add(short)
        print(f"{ir / requests:>16,.0f}  {100 * ir / total:>5.1f}%  {short}")
        shown += 1
        if shown >= 80:
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
