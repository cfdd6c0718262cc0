#!/usr/bin/env bash
# Runs Aver's cargo-fuzz targets, seeded from the shared real vectors.
#
#   scripts/fuzz.sh [--runs N] [--seconds S] [--out DIR] [--no-sanitizer] [TARGET ...]
#
# Each target runs until N executions (default 10 000 000) or S seconds
# (default 3600), whichever comes first, with a -max_len suited to its
# input (event logs and policies are large). Seeds are copied from
# $AVER_VECTORS (default ../shared/vectors) into a scratch corpus under
# --out (default target/fuzz-campaign): vector files are never copied into
# the repository. A crash leaves its input in the target's fuzz/artifacts
# directory and makes the script exit non-zero; turn each such input into
# a regression test that stable `cargo test` runs (see FUZZING.md).
#
# --no-sanitizer builds without AddressSanitizer (with debug assertions and
# overflow checks on), several times faster: the targets are Rust parsers,
# so what is sought is panics, overflows, hangs and memory blow-ups; long
# campaigns use it, and the CI smoke run keeps ASan for the C under
# aws-lc. Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# The summary line per target (executions, coverage, features, corpus,
# seconds) is printed and appended to DIR/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
vectors="${AVER_VECTORS:-$root/../shared/vectors}"
runs=10000000
seconds=3600
out="$root/target/fuzz-campaign"
targets=()
build_flags=()
while [ $# -gt 0 ]; do
    case "$1" in
        --no-sanitizer) build_flags=(-s none --debug-assertions); shift ;;
        --runs) runs="$2"; shift 2 ;;
        --seconds) seconds="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) targets+=("$1"); shift ;;
    esac
done

# target -> crate directory, max_len, seed globs (relative to the vectors).
declare -A crate maxlen seeds
add() { crate[$1]=$2; maxlen[$1]=$3; seeds[$1]=$4; }
add parse_quote              crates/aver-attestation 16384  "azure-sdk/sgx_quote.bin sgx/*/quote.bin sgx/*/*.dat tdx/*/quote.bin tdx/*/*.dat tpm/azure-cvm-vtpm-tdx/td-quote.bin"
add parse_openenclave_report crates/aver-attestation 16384  "azure-sdk/oe_report.bin"
add parse_collateral         crates/aver-attestation 65536  "sgx/*/collateral.json sgx/*/tcbInfo.json sgx/*/qeIdentity.json sgx/*/*.der tdx/*/collateral*.json tdx/*/sample_*_response tdx/*/pckcrl tdx/*/*.der tdx/trustee/*.json"
add verify_sgx               crates/aver-attestation 16384  "azure-sdk/sgx_quote.bin sgx/*/quote.bin sgx/*/*.dat"
add verify_tdx               crates/aver-attestation 16384  "tdx/*/quote.bin tdx/*/*.dat tpm/azure-cvm-vtpm-tdx/td-quote.bin"
add parse_policy             crates/aver-policy      65536  "maa/policies/*.txt"
add eval_policy              crates/aver-policy      65536  "maa/policies/*.txt"
add decode_message           crates/aver-tpm-attest  65536  ""
add parse_attest             crates/aver-tpm         4096   "tpm/swtpm-local/*.msg tpm/go-attestation-windows-gcp-e2e/quote.tpms_attest"
add parse_eventlog           crates/aver-tpm         262144 "tpm/*/*.bin tpm/tpm2-tools-eventlogs/*.bin tpm/keylime-eventlogs/*.bin"
add parse_ccel               crates/aver-tpm         262144 "tdx/*/ccel_data.dat"
add parse_public             crates/aver-tpm         4096   "tpm/swtpm-local/*.tpm2b_public tpm/go-attestation-windows-gcp-e2e/ak.tpmt_public"
add parse_signature          crates/aver-tpm         4096   "tpm/swtpm-local/*.sig tpm/go-attestation-windows-gcp-e2e/quote.tpmt_signature"
add parse_pcr_file           crates/aver-tpm         8192   "tpm/swtpm-local/*.pcrs tpm/go-attestation-windows-gcp-e2e/pcrs-from-tpm.json"
# Targets added by later evidence types register here too.
if [ -f crates/aver-attestation/fuzz/fuzz_targets/parse_snp_report.rs ]; then
    add parse_snp_report crates/aver-attestation 8192 "sev-snp/*/*.bin tpm/azure-cvm-vtpm-snp/hcl-report.bin"
fi
if [ -f crates/aver-attestation/fuzz/fuzz_targets/parse_hcl_report.rs ]; then
    add parse_hcl_report crates/aver-attestation 8192 "tpm/azure-cvm-vtpm-*/hcl-report.bin tpm/azure-cvm-vtpm-*/tpm-quote-v1.json"
fi
add verify_snp_chain crates/aver-attestation 16384 "sev-snp/*/*.der sev-snp/*/cert_chain_* sev-snp/*/*.pem sev-snp/trustee/*.testcer tpm/azure-cvm-vtpm-snp/vcek.pem"

if [ ${#targets[@]} -eq 0 ]; then
    for dir in crates/*/fuzz/fuzz_targets; do
        for f in "$dir"/*.rs; do targets+=("$(basename "$f" .rs)"); done
    done
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz.sh: no nightly toolchain: fuzzing SKIPPED" >&2
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is not installed (cargo install cargo-fuzz): fuzzing SKIPPED" >&2
    exit 0
fi

mkdir -p "$out"
# One target directory for every fuzz package: their (sanitized)
# dependencies are built once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/fuzz-build}"
status=0
for t in "${targets[@]}"; do
    dir="${crate[$t]:-}"
    if [ -z "$dir" ]; then
        # A target this script does not know yet: find its crate.
        dir=$(dirname "$(dirname "$(dirname "$(ls crates/*/fuzz/fuzz_targets/"$t".rs)")")")
        maxlen[$t]=65536
    fi
    corpus="$out/corpus/$t"
    mkdir -p "$corpus"
    for g in ${seeds[$t]:-}; do
        for f in $vectors/$g; do
            [ -f "$f" ] && cp -n "$f" "$corpus/seed-$(basename "$(dirname "$f")")-$(basename "$f")"
        done
    done
    log="$out/$t.log"
    start=$(date +%s)
    echo "--- fuzzing $t ($dir): up to $runs runs or ${seconds}s, max_len ${maxlen[$t]}"
    if (cd "$dir" && cargo +nightly fuzz run "${build_flags[@]}" "$t" "$corpus" -- \
            -runs="$runs" -max_total_time="$seconds" -max_len="${maxlen[$t]}" \
            -timeout=20 -rss_limit_mb=4096 -print_final_stats=1) >"$log" 2>&1; then
        result=ok
    else
        result=FAILED
        status=1
    fi
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}')
    units=$(ls "$corpus" | wc -l)
    line="$t: $result, ${execs:-?} executions in ${elapsed}s, cov ${cov:-?}, ft ${ft:-?}, corpus $units"
    echo "$line"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $line" >>"$out/summary.txt"
    if [ "$result" = FAILED ]; then
        grep -E 'ERROR|panicked|SUMMARY|artifact' "$log" | head -20 >&2 || true
    fi
done
exit $status
