#!/usr/bin/env bash
# Installs the Azure Attestation client SDKs used by
# crates/aver-server/tests/sdk_compat.rs:
#   compat/python/.venv   azure-security-attestation 1.0.0 (PyPI), pinned in requirements.txt
#   compat/js/node_modules @azure/attestation 1.0.0 (npm), pinned in package-lock.json
# and, for crates/aver-server/tests/openapi.rs:
#   compat/schemathesis/.venv  schemathesis (PyPI), pinned in requirements.txt
# Idempotent: re-running only reinstalls what changed. Needs python3 (3.11 on
# Debian bookworm) with venv support, and Node >= 18 with npm; installs
# python3-venv through apt when venv support is missing (as root).
#
# Environment:
#   AVER_SDK_SETUP_PYTHON  interpreter used to create the venv (default python3)
#   AVER_SDK_SETUP_SKIP_JS=1 / AVER_SDK_SETUP_SKIP_PYTHON=1 /
#   AVER_SDK_SETUP_SKIP_SCHEMATHESIS=1  skip one part
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${AVER_SDK_SETUP_PYTHON:-python3}"

log() { printf 'compat/setup.sh: %s\n' "$*" >&2; }

ensure_venv_support() {
    # Debian's python3 ships venv without ensurepip unless python3-venv is installed.
    if "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "python venv/ensurepip missing and no apt-get: install python3-venv yourself"
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    log "installing python3-venv via apt"
    $sudo apt-get update -qq
    # Debian names the versioned package too (python3.11-venv); python3-venv pulls it in.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-venv >/dev/null
}

setup_python() {
    local dir="$here/python"
    local venv="$dir/.venv"
    local stamp="$venv/.aver-requirements.sha256"
    local want
    want="$(sha256sum "$dir/requirements.txt" | cut -d' ' -f1)"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && "$venv/bin/python" -c 'import azure.security.attestation, six' >/dev/null 2>&1; then
        log "python venv up to date ($venv)"
        return 0
    fi
    ensure_venv_support
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$venv"
        log "creating $venv with $("$py" --version 2>&1)"
        "$py" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$dir/requirements.txt"
    "$venv/bin/python" -c 'import azure.security.attestation, six'
    echo "$want" >"$stamp"
    log "python SDK installed: $("$venv/bin/python" -m pip show azure-security-attestation 2>/dev/null | sed -n 's/^Version: //p')"
}

setup_schemathesis() {
    local dir="$here/schemathesis"
    local venv="$dir/.venv"
    local stamp="$venv/.aver-requirements.sha256"
    local want
    want="$(sha256sum "$dir/requirements.txt" | cut -d' ' -f1)"
    if [ -x "$venv/bin/st" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        log "schemathesis venv up to date ($venv)"
        return 0
    fi
    ensure_venv_support
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$venv"
        log "creating $venv with $("$py" --version 2>&1)"
        "$py" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        --no-input -r "$dir/requirements.txt"
    "$venv/bin/st" --version >/dev/null
    echo "$want" >"$stamp"
    log "schemathesis installed: $("$venv/bin/st" --version 2>&1)"
}

setup_js() {
    local dir="$here/js"
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        log "node/npm not found: install Node.js >= 18 (Debian bookworm: apt-get install nodejs npm)"
        return 1
    fi
    local stamp="$dir/node_modules/.aver-lock.sha256"
    local want
    want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
        && [ -f "$dir/node_modules/@azure/attestation/package.json" ]; then
        log "node_modules up to date ($dir/node_modules)"
        return 0
    fi
    log "npm ci in $dir (node $(node --version))"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
}

if [ "${AVER_SDK_SETUP_SKIP_PYTHON:-0}" != 1 ]; then setup_python; fi
if [ "${AVER_SDK_SETUP_SKIP_JS:-0}" != 1 ]; then setup_js; fi
if [ "${AVER_SDK_SETUP_SKIP_SCHEMATHESIS:-0}" != 1 ]; then setup_schemathesis; fi
log "done"
