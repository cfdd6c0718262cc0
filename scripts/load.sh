#!/usr/bin/env bash
# Loopback load test of `aver serve`.
#
# Starts a release `aver serve` on 127.0.0.1 (free port, temporary data dir,
# self-signed TLS), waits for /health, then drives two scenarios with wrk,
# each bounded in time (LOAD_DURATION) and in count (LOAD_MAX_REQUESTS):
#   certs   GET  /certs                                   (the baseline)
#   attest  POST /attest/SgxEnclave?api-version=2022-08-01 with the real
#           Azure SDK SGX quote and binary runtime data (default policy)
# and prints requests/s, latency p50/p90/p99 and attest/certs ratios. For the
# attest scenario it also reports the server's CPU time per attestation
# (from /proc/<pid>/stat) and divides it by the cryptographic floor measured
# in the same run (`crypto-floor`: 2 ECDSA-P256 verifications + 1 RSA-2048
# signature, aws-lc-rs, one thread), runs attest again at half the measured
# throughput for unqueued latency, and reports the server's RSS before and
# after (and after an optional soak at 80% of saturation). The paced runs
# (half saturation, the soak) pause a random time before each request
# (scripts/load/wrk.lua), with a mean calibrated in 2-second trials, and
# report the rate they reached.
# Traffic goes to 127.0.0.1 only. The server is stopped on exit.
#
# Environment (all optional):
#   CARGO_TARGET_DIR    where `cargo build --release -p aver` puts target/release/aver
#   AVER_BIN            use this aver binary instead of building one
#   AVER_VECTORS        shared vectors directory [<repo>/../shared/vectors]
#   LOAD_DURATION       seconds per measured scenario [10]
#   LOAD_WARMUP         seconds of unmeasured warm-up per scenario [2]
#   LOAD_CONNECTIONS    concurrent connections [8]
#   LOAD_THREADS        wrk threads [2]
#   LOAD_MAX_REQUESTS   cap on requests per measured scenario [1000000]
#   LOAD_SOAK           seconds of attestations at 80% of saturation, RSS sampled ten times [0]
#   LOAD_SERVER_CPUS    pin the server to these CPUs with taskset (e.g. 0), for scaling runs []
#   LOAD_WRK_CPUS       pin wrk to these CPUs (e.g. 1), so a pinned server has its core alone []
#   LOAD_IO_SCHEDULING  the server's --io-scheduling: auto (the server's default: SCHED_BATCH
#                       connection threads while attestations are queued), normal or batch
#   LOAD_ALG            token signing: RS256 (default) or ES256 (the provider is switched to
#                       a P-256 key through `aver provider configure` and `aver keys rotate`)
set -euo pipefail

die() { echo "load.sh: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE="$ROOT/scripts/load"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
VECTORS=${AVER_VECTORS:-$ROOT/../shared/vectors}
DURATION=${LOAD_DURATION:-10}
WARMUP=${LOAD_WARMUP:-2}
CONNECTIONS=${LOAD_CONNECTIONS:-8}
THREADS=${LOAD_THREADS:-2}
MAX_REQUESTS=${LOAD_MAX_REQUESTS:-1000000}
SOAK=${LOAD_SOAK:-0}
SERVER_CPUS=${LOAD_SERVER_CPUS:-}
WRK_CPUS=${LOAD_WRK_CPUS:-}
WRK_PIN=()
[[ -n $WRK_CPUS ]] && WRK_PIN=(taskset -c "$WRK_CPUS")
ALG=${LOAD_ALG:-RS256}
IO_SCHEDULING=${LOAD_IO_SCHEDULING:-auto}
[[ $ALG == RS256 || $ALG == ES256 ]] || die "LOAD_ALG must be RS256 or ES256"
[[ $IO_SCHEDULING == auto || $IO_SCHEDULING == normal || $IO_SCHEDULING == batch ]] || die "LOAD_IO_SCHEDULING must be auto, normal or batch"


for v in DURATION WARMUP CONNECTIONS THREADS MAX_REQUESTS SOAK; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number (got '${!v}')"
done
((DURATION >= 1 && DURATION <= 600)) || die "LOAD_DURATION must be 1..600 seconds"
((THREADS >= 1 && CONNECTIONS >= THREADS)) || die "need LOAD_CONNECTIONS >= LOAD_THREADS >= 1"

if ! command -v wrk >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "load.sh: installing wrk (Debian package)" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
  fi
  command -v wrk >/dev/null || die "wrk is required (apt-get install wrk)"
fi
command -v curl >/dev/null || die "curl is required"
command -v python3 >/dev/null || die "python3 is required"

QUOTE="$VECTORS/azure-sdk/sgx_quote.bin"
RUNTIME="$VECTORS/azure-sdk/runtime_data.bin"
[[ -f $QUOTE && -f $RUNTIME ]] || die "Azure SDK vectors not found under $VECTORS (set AVER_VECTORS)"

if [[ -n ${AVER_BIN:-} ]]; then
  BIN=$AVER_BIN
else
  echo "load.sh: cargo build --release -p aver (CARGO_TARGET_DIR=$TARGET_DIR)" >&2
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p aver)
  BIN="$TARGET_DIR/release/aver"
fi
[[ -x $BIN ]] || die "no aver binary at $BIN"
if [[ -n ${FLOOR_BIN:-} ]]; then
  FLOOR=$FLOOR_BIN
else
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -q -p aver-bench --bin crypto-floor)
  FLOOR="$TARGET_DIR/release/crypto-floor"
fi
[[ -x $FLOOR ]] || die "no crypto-floor binary at $FLOOR"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/aver-load.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 "$HERE/make_body.py" "$QUOTE" "$RUNTIME" "$WORK/attest.json"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
BASE="https://127.0.0.1:$PORT"
ATTEST_URL="$BASE/attest/SgxEnclave?api-version=2022-08-01"

PIN=()
[[ -n $SERVER_CPUS ]] && PIN=(taskset -c "$SERVER_CPUS")
AVER_LOG=warn "${PIN[@]}" "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" --io-scheduling "$IO_SCHEDULING" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
HZ=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status"; }
# Context switches of all the server's threads so far (voluntary: a thread
# slept or waited; involuntary: it was preempted). Threads that ended are
# not counted; the server's threads live as long as it does.
ctx_switches() {
  cat /proc/"$SERVER_PID"/task/*/status 2>/dev/null \
    | awk '/^voluntary_ctxt_switches:/ {v += $2} /^nonvoluntary_ctxt_switches:/ {n += $2} END {print v + 0, n + 0}'
}

for _ in $(seq 600); do
  if curl -ksf --max-time 2 "$BASE/health" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "aver serve exited"; }
  sleep 0.1
done
curl -ksf --max-time 2 "$BASE/health" >/dev/null || { tail -20 "$WORK/server.log" >&2; die "no /health after 60 s"; }

if [[ $ALG == ES256 ]]; then
  "$BIN" provider configure default --token-signing-alg ES256 --data-dir "$WORK/data" >/dev/null
  "$BIN" keys rotate --publish-delay 0 --data-dir "$WORK/data" >/dev/null
  sleep 3 # the service reloads within its refresh interval (2 s)
fi

# The attest request must succeed before it is timed: a fast error path
# would make a meaningless number.
status=$(curl -ks --max-time 10 -o "$WORK/attest.out" -w '%{http_code}' \
  -H 'Content-Type: application/json' --data-binary "@$WORK/attest.json" "$ATTEST_URL")
[[ $status == 200 ]] && grep -q '"token"' "$WORK/attest.out" \
  || { cat "$WORK/attest.out" >&2; die "attest returned HTTP $status, not a token"; }
alg=$(python3 -c 'import sys,json,base64; t=json.load(open(sys.argv[1]))["token"].split(".")[0]; print(json.loads(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))["alg"])' "$WORK/attest.out")
[[ $alg == "$ALG" ]] || die "the token is signed with $alg, not $ALG"
curl -ksf --max-time 10 "$BASE/certs" | grep -q '"keys"' || die "/certs returned no keys"

PER_THREAD=$(( (MAX_REQUESTS + THREADS - 1) / THREADS ))

# run NAME SECONDS URL [BODY]: one bounded wrk run; prints its RESULT line.
# RUN_MAX_PER_THREAD replaces the per-thread cap LOAD_MAX_REQUESTS sets (the
# soak runs for its time, however many requests that is).
run() {
  local name=$1 seconds=$2 url=$3 body=${4:-}
  LOAD_BODY_FILE=$body LOAD_MAX_PER_THREAD=${RUN_MAX_PER_THREAD:-$PER_THREAD} \
    timeout $((seconds + 30)) "${WRK_PIN[@]}" wrk -t "$THREADS" -c "$CONNECTIONS" -d "${seconds}s" --timeout 10s \
    -s "$HERE/wrk.lua" "$url" >"$WORK/$name.wrk" 2>&1 \
    || { cat "$WORK/$name.wrk" >&2; die "wrk failed for $name"; }
  grep '^RESULT ' "$WORK/$name.wrk" || { cat "$WORK/$name.wrk" >&2; die "no RESULT from wrk for $name"; }
}

field() { # field KEY LINE
  sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"
}

RSS_START=$(rss_kib)
declare -A RESULT
declare -A CPU_TICKS
declare -A CTX
for scenario in certs attest; do
  if [[ $scenario == certs ]]; then url="$BASE/certs" body=""; else url=$ATTEST_URL body="$WORK/attest.json"; fi
  if ((WARMUP > 0)); then run "$scenario-warmup" "$WARMUP" "$url" "$body" >/dev/null; fi
  t0=$(cpu_ticks)
  read -r v0 n0 < <(ctx_switches)
  RESULT[$scenario]=$(run "$scenario" "$DURATION" "$url" "$body")
  t1=$(cpu_ticks)
  read -r v1 n1 < <(ctx_switches)
  CPU_TICKS[$scenario]=$((t1 - t0))
  CTX[$scenario]="$((v1 - v0)) $((n1 - n0))"
  echo "load.sh: $scenario: ${RESULT[$scenario]#RESULT } server_cpu_s=$(python3 -c "print(${CPU_TICKS[$scenario]}/$HZ)")" >&2
done

# A chosen fraction of saturation: each of the LOAD_CONNECTIONS connections
# pauses a random time (exponential, mean PACE_DELAY_MS; scripts/load/wrk.lua)
# before each request, so arrivals are spread out as from many independent
# clients. pace FRACTION picks the mean: first as if an answer took no time,
# then corrected by the answer time that 2-second trials imply, until a trial
# is within 5% of the target (at most four trials).
SAT_RPS=$(field rps "${RESULT[attest]}")
pace() {
  local fraction=$1 target delay rps i
  target=$(python3 -c "print(round(float('$SAT_RPS') * $fraction))")
  delay=$(python3 -c "print(round($CONNECTIONS * 1000 / $target, 3))")
  for i in 1 2 3 4; do
    rps=$(field rps "$(LOAD_DELAY_MS=$delay run pace-trial 2 "$ATTEST_URL" "$WORK/attest.json")")
    echo "load.sh: pacing for $fraction of saturation ($target req/s): mean delay $delay ms gave $rps req/s" >&2
    read -r ok delay < <(python3 -c "
r, t, c, d = float('$rps'), $target, $CONNECTIONS, $delay
answer_ms = max(0.0, c * 1000 / max(r, 1.0) - d)  # a connection's cycle is its pause plus the answer
print(int(abs(r - t) <= 0.05 * t), d if abs(r - t) <= 0.05 * t else round(max(0.0, c * 1000 / t - answer_ms), 3))")
    ((ok)) && break
  done
  PACE_DELAY_MS=$delay PACE_TARGET=$target
}

# Unqueued latency: attest at half the measured throughput.
pace 0.5
RESULT[half]=$(LOAD_DELAY_MS=$PACE_DELAY_MS run attest-half "$DURATION" "$ATTEST_URL" "$WORK/attest.json")
echo "load.sh: attest at half saturation (mean delay ${PACE_DELAY_MS} ms/connection): ${RESULT[half]#RESULT }" >&2
RSS_AFTER=$(rss_kib)
RSS_SOAK=
if ((SOAK > 0)); then
  pace 0.8
  echo "load.sh: soak for $SOAK s at 80% of saturation (mean delay ${PACE_DELAY_MS} ms/connection)" >&2
  RUN_MAX_PER_THREAD=1000000000 LOAD_DELAY_MS=$PACE_DELAY_MS run soak "$SOAK" "$ATTEST_URL" "$WORK/attest.json" >"$WORK/soak.result" &
  soak_pid=$!
  # RSS every tenth of the soak: "flat" is a shape, not two numbers.
  samples=()
  for _ in $(seq 10); do
    sleep "$(python3 -c "print($SOAK / 10)")"
    samples+=("$(( $(rss_kib) / 1024 ))")
  done
  wait "$soak_pid"
  RESULT[soak]=$(cat "$WORK/soak.result")
  echo "load.sh: soak: ${RESULT[soak]#RESULT }" >&2
  # A soak that stopped early or fell behind did not hold the load it names.
  python3 -c "import sys; sys.exit(0 if float('$(field rps "${RESULT[soak]}")') >= 0.9 * $PACE_TARGET else 1)" \
    || echo "load.sh: WARNING: the soak averaged $(field rps "${RESULT[soak]}") req/s, under 90% of its $PACE_TARGET req/s target" >&2
  echo "load.sh: RSS (MiB) during the soak, every $((SOAK / 10)) s: ${samples[*]}" >&2
  RSS_SOAK=$(rss_kib)
fi

# The floor, measured now on the same machine (server idle).
FLOOR_ARGS=()
[[ $ALG == ES256 ]] && FLOOR_ARGS=(--es256)
FLOOR_LINE=$("${PIN[@]}" "$FLOOR" --seconds "$DURATION" "${FLOOR_ARGS[@]}" | grep '^FLOOR ')

for scenario in certs attest half ${RESULT[soak]:+soak}; do
  bad=0
  for k in non2xx connect read write timeout; do
    bad=$((bad + $(field "$k" "${RESULT[$scenario]}")))
  done
  ((bad == 0)) || echo "load.sh: WARNING: $scenario had $bad failed request(s) (non-2xx or socket errors)" >&2
done

C=${RESULT[certs]} A=${RESULT[attest]}
python3 - "$C" "$A" "${RESULT[half]}" "$FLOOR_LINE" "${CPU_TICKS[attest]}" "$HZ" "$RSS_START" "$RSS_AFTER" "$RSS_SOAK" "$SOAK" "${CTX[attest]}" <<'PY'
import sys

def parse(line):
    out = {}
    for p in line.split()[1:]:
        k, v = p.split("=")
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out

c, a, half, floor = parse(sys.argv[1]), parse(sys.argv[2]), parse(sys.argv[3]), parse(sys.argv[4])
ticks, hz = float(sys.argv[5]), float(sys.argv[6])
rss_start, rss_after, rss_soak, soak = sys.argv[7], sys.argv[8], sys.argv[9], sys.argv[10]
vol, invol = (int(x) for x in sys.argv[11].split())
cpu_us = ticks / hz * 1e6 / a["requests"]
print()
print(f"Server CPU per attestation: {cpu_us:.0f} µs; crypto floor ({floor['alg']}: 2 × ECDSA-P256 verify "
      f"+ 1 × sign, one thread): {floor['us_per_op']:.0f} µs; ratio {cpu_us / floor['us_per_op']:.2f}× "
      f"({floor['us_per_op'] / cpu_us * 100:.0f}% of the floor's throughput per core)")
print(f"Server context switches per attestation at saturation: {(vol + invol) / a['requests']:.2f} "
      f"({vol / a['requests']:.2f} voluntary, {invol / a['requests']:.2f} preempted)")
print(f"Attest at half saturation ({half['rps']:.0f} req/s offered, {half['rps'] / a['rps'] * 100:.0f}% of saturation): p50 {half['p50_ms']:.2f} ms, "
      f"p99 {half['p99_ms']:.2f} ms, max {half['max_ms']:.2f} ms")
line = f"Server RSS: {int(rss_start) / 1024:.1f} MiB before, {int(rss_after) / 1024:.1f} MiB after the scenarios"
if rss_soak:
    line += f", {int(rss_soak) / 1024:.1f} MiB after {soak} s at 80% of saturation"
print(line)
print()
print("| scenario | requests | req/s | p50 | p90 | p99 | failed | req/s ÷ certs req/s | p50 ÷ certs p50 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for name, r in (("GET /certs (baseline)", c), ("POST /attest/SgxEnclave", a)):
    failed = int(r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"])
    print(f"| {name} | {int(r['requests'])} | {r['rps']:.0f} | {r['p50_ms']:.2f} ms | {r['p90_ms']:.2f} ms "
          f"| {r['p99_ms']:.2f} ms | {failed} | {r['rps'] / c['rps']:.3f} | {r['p50_ms'] / c['p50_ms']:.1f}× |")
PY
echo
echo "Machine: $(nproc) core(s), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1); wrk -t$THREADS -c$CONNECTIONS, ${DURATION}s per scenario (after ${WARMUP}s warm-up), TLS on loopback, --io-scheduling $IO_SCHEDULING${SERVER_CPUS:+, server on CPU(s) $SERVER_CPUS}${WRK_CPUS:+, wrk on CPU(s) $WRK_CPUS}."
