#!/usr/bin/env python3
"""Writes the JSON body of POST /attest/SgxEnclave for the Azure SDK vectors.

usage: make_body.py QUOTE RUNTIME_DATA OUT

As the Azure SDK sends it: the quote and the runtime data base64url-encoded
without padding, runtime data typed "Binary".
"""
import base64
import json
import sys


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def main() -> int:
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    quote_path, runtime_path, out_path = sys.argv[1:]
    with open(quote_path, "rb") as f:
        quote = f.read()
    with open(runtime_path, "rb") as f:
        runtime = f.read()
    body = {
        "quote": b64url(quote),
        "runtimeData": {"data": b64url(runtime), "dataType": "Binary"},
    }
    with open(out_path, "w", encoding="ascii") as f:
        json.dump(body, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
