#!/usr/bin/env bash
# Where an attestation's CPU goes: `aver serve` under valgrind's callgrind,
# driven over HTTPS keep-alive with the same request as scripts/load.sh
# (the real Azure SDK SGX quote, binary runtime data, default policy).
#
# Callgrind counts instructions, not seconds: the counts are repeatable
# whatever else the machine is doing, so a profile taken on a busy 2-core
# machine still says what fraction of an attestation each stage costs.
# Collection is switched on after start-up and a warm-up (so key loading,
# the first PCK chain verification and lazy statics are not counted), for
# exactly PROFILE_REQUESTS attestations.
#
# Prints instructions per attestation, the cryptographic floor's share of
# them (the inclusive cost of aws-lc's ECDSA verification and of the token
# signature, counted in the same profile), and the top functions by
# inclusive cost; keeps the raw profile in PROFILE_OUT for
# `callgrind_annotate` or kcachegrind.
#
# Environment (all optional):
#   CARGO_TARGET_DIR   where `cargo build --release -p aver` puts target/release/aver
#   AVER_BIN           use this aver binary instead of building one
#   AVER_VECTORS       shared vectors directory [<repo>/../shared/vectors]
#   PROFILE_REQUESTS   attestations profiled [200]
#   PROFILE_ALG        RS256 (default) or ES256
#   PROFILE_OUT        where the callgrind profile is written [./callgrind.aver.out]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VECTORS=${AVER_VECTORS:-$ROOT/../shared/vectors}
REQUESTS=${PROFILE_REQUESTS:-200}
ALG=${PROFILE_ALG:-RS256}
OUT=${PROFILE_OUT:-$PWD/callgrind.aver.out}

die() { echo "profile.sh: $*" >&2; exit 1; }
[[ $REQUESTS =~ ^[0-9]+$ ]] && ((REQUESTS >= 1)) || die "PROFILE_REQUESTS must be a positive whole number"
[[ $ALG == RS256 || $ALG == ES256 ]] || die "PROFILE_ALG must be RS256 or ES256"
for cmd in valgrind callgrind_control callgrind_annotate curl python3; do
  command -v "$cmd" >/dev/null || die "$cmd is required (apt-get install valgrind curl python3)"
done

QUOTE="$VECTORS/azure-sdk/sgx_quote.bin"
RUNTIME="$VECTORS/azure-sdk/runtime_data.bin"
[[ -f $QUOTE && -f $RUNTIME ]] || die "Azure SDK vectors not found under $VECTORS (set AVER_VECTORS)"

if [[ -n ${AVER_BIN:-} ]]; then
  BIN=$AVER_BIN
else
  echo "profile.sh: cargo build --release -p aver (CARGO_TARGET_DIR=$TARGET_DIR)" >&2
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p aver)
  BIN="$TARGET_DIR/release/aver"
fi
[[ -x $BIN ]] || die "no aver binary at $BIN"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/aver-profile.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$ROOT/scripts/load/make_body.py" "$QUOTE" "$RUNTIME" "$WORK/attest.json"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
BASE="https://127.0.0.1:$PORT"
ATTEST_URL="$BASE/attest/SgxEnclave?api-version=2022-08-01"

# The data directory is prepared (keys generated, the provider switched to
# ES256) before valgrind starts, so start-up under valgrind is short.
"$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/prep.log" 2>&1 &
prep=$!
for _ in $(seq 300); do curl -ksf --max-time 2 "$BASE/health" >/dev/null 2>&1 && break; sleep 0.1; done
if [[ $ALG == ES256 ]]; then
  "$BIN" provider configure default --token-signing-alg ES256 --data-dir "$WORK/data" >/dev/null
  "$BIN" keys rotate --publish-delay 0 --data-dir "$WORK/data" >/dev/null
fi
kill "$prep"; wait "$prep" 2>/dev/null || true

AVER_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg.out" \
  "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1200); do
  curl -ksf --max-time 5 "$BASE/health" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "aver serve exited"; }
  sleep 0.5
done
curl -ksf --max-time 5 "$BASE/health" >/dev/null || die "no /health from the server under valgrind"

# One keep-alive connection (curl reuses it across the URLs of one
# command line): the TLS handshake is paid once, as under load.sh.
attest_n() {
  local n=$1 args=()
  for _ in $(seq "$n"); do
    # --next resets the options: each URL carries its own.
    args+=(-ks --max-time 600 -o /dev/null -w '%{http_code}\n' -H 'Content-Type: application/json' --data-binary "@$WORK/attest.json" "$ATTEST_URL" --next)
  done
  curl "${args[@]}" -ks -o /dev/null "$BASE/health"
}
# Warm-up: caches filled, the token alg checked.
attest_n 5 >"$WORK/warm.codes"
grep -qv '^200$' "$WORK/warm.codes" && { cat "$WORK/warm.codes" >&2; tail -5 "$WORK/server.log" >&2; die "warm-up attestations failed"; }
token=$(curl -ks --max-time 60 -H 'Content-Type: application/json' --data-binary "@$WORK/attest.json" "$ATTEST_URL")
alg=$(python3 -c 'import sys,json,base64; t=json.loads(sys.argv[1])["token"].split(".")[0]; print(json.loads(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))["alg"])' "$token")
[[ $alg == "$ALG" ]] || die "the token is signed with $alg, not $ALG"

callgrind_control -z "$SERVER_PID" >/dev/null
callgrind_control -i on "$SERVER_PID" >/dev/null
attest_n "$REQUESTS" >"$WORK/codes"
callgrind_control -i off "$SERVER_PID" >/dev/null
callgrind_control -d "$SERVER_PID" >/dev/null
ok=$(grep -c '^200$' "$WORK/codes" || true)
[[ $ok == "$REQUESTS" ]] || die "only $ok of $REQUESTS attestations returned 200"

# callgrind_control -d writes a numbered dump ("cg.out.1"); the server's
# own dump at exit (collection off by then) stays in the work directory.
DUMP=$(ls -t "$WORK"/cg.out.* 2>/dev/null | head -1)
[[ -n $DUMP ]] || die "callgrind wrote no dump"
mv "$DUMP" "$OUT"
callgrind_annotate --inclusive=yes --threshold=100 "$OUT" >"$WORK/incl.txt"
python3 "$ROOT/scripts/load/profile_report.py" "$WORK/incl.txt" "$REQUESTS" "$ALG"
echo "profile.sh: raw profile in $OUT (callgrind_annotate --inclusive=yes $OUT)" >&2
