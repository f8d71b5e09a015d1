#!/usr/bin/env bash
# install-deps.sh — install every Debian package capgate's build, tests and
# local run need. Idempotent and fast: when everything is already installed it
# does nothing (no apt-get update). Works as root without a tty (CI); as
# another user it uses sudo when available.
set -euo pipefail

# Build toolchain, the libraries of SPEC §2 and README "Dependencies", and the
# tools the scripts use (curl and openssl in run-local.sh).
packages=(
    build-essential cmake ninja-build pkg-config
    libuv1-dev libnng-dev libmsgpack-dev libcurl4-openssl-dev libssl-dev liblmdb-dev
    libhttp-parser-dev libcjson-dev libxxhash-dev zlib1g-dev
    python3-aiosmtpd
    curl openssl ca-certificates
)
# CAPGATE_DEPS=build (deploy/Dockerfile's build stage): the build and unit tests only.
if [ "${CAPGATE_DEPS:-all}" != build ]; then
    # Deployment checks (scripts/validate-deploy.sh): Compose's own config check;
    # iproute2 for the multi-host test (tests/it_netns.c).
    packages+=(docker-compose iproute2)
    # node/npm run the Kubernetes schema validator. Only asked of apt when missing: a machine
    # may carry another nodejs build (with its own npm) that Debian's npm conflicts with.
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        packages+=(nodejs npm)
    fi
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "install-deps: not root and no sudo; install: ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
