#!/usr/bin/env bash
# validate-deploy.sh — CI checks of the deployment files (issue 7); run by ctest
# (test "validate_deploy") and so by scripts/test.sh.
#
#   scripts/validate-deploy.sh [GATEWAY_BINARY]
#
# 1. docker-compose.yml: `docker-compose config -q` (Debian's docker-compose 1.29.2, a
#    real Compose implementation; it needs no Docker daemon for this).
# 2. deploy/k8s/*.yaml: schema validation against the Kubernetes OpenAPI schemas
#    bundled in the npm package kubernetes-models, plus the cross-reference checks
#    of scripts/validate-deploy.mjs (selectors/labels, ConfigMap/Secret keys, ports,
#    shard DNS names), plus the compose structure checks.
# 3. deploy/capgate.conf and the ConfigMap's capgate.conf load in capgate's own
#    config parser (`capgate-gateway --check-config`), when a gateway binary is given.
#
# The npm packages are installed once (pinned versions) into a cache directory
# outside the repository: $CAPGATE_TOOLS_DIR or ~/.cache/capgate/validate-deploy.
# Exit 0 all good, 1 a check failed, 77 (ctest: skipped) when a tool cannot be had
# at all (no node/npm/docker-compose and not installable here).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
gateway=${1:-}
tools=${CAPGATE_TOOLS_DIR:-${HOME:-/tmp}/.cache/capgate/validate-deploy}
# Pinned: the validator and its bundled schemas must not move under CI.
k8s_models=kubernetes-models@5.1.0
yaml_pkg=yaml@2.9.1

skip() {
    echo "validate-deploy: SKIPPED: $*"
    exit 77
}

for t in docker-compose node npm; do
    command -v "$t" >/dev/null 2>&1 || skip "$t not installed (scripts/install-deps.sh installs it)"
done

echo "validate-deploy: docker-compose config -q"
(cd "$root" && docker-compose -f docker-compose.yml config -q)

stamp="$tools/.installed-$k8s_models-$yaml_pkg"
if [ ! -f "$stamp" ]; then
    mkdir -p "$tools"
    echo '{"name":"capgate-validate-deploy","private":true}' >"$tools/package.json"
    if ! npm install --prefix "$tools" --no-audit --no-fund --silent "$k8s_models" "$yaml_pkg"; then
        echo "validate-deploy: npm install of $k8s_models $yaml_pkg failed" >&2
        exit 1
    fi
    touch "$stamp"
fi
# ESM resolves packages next to the importing file: run a copy inside the tools dir.
cp "$root/scripts/validate-deploy.mjs" "$tools/validate-deploy.mjs"
node "$tools/validate-deploy.mjs" "$root/deploy/k8s" "$root/docker-compose.yml"

if [ -n "$gateway" ]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    echo "validate-deploy: deploy/capgate.conf in capgate's config parser"
    CAPGATE_ADMIN_TOKEN=check CAPGATE_KEY_PEPPER=check \
        "$gateway" --check-config --config "$root/deploy/capgate.conf"
    echo "validate-deploy: the Kubernetes ConfigMap's capgate.conf in capgate's config parser"
    # Secrets: the placeholders of secret.yaml, written where the pods mount them.
    node -e '
        const YAML = require(process.argv[1] + "/node_modules/yaml");
        const fs = require("fs");
        const [dir, cmPath, secPath, out] = process.argv.slice(2);
        const cm = YAML.parse(fs.readFileSync(cmPath, "utf8"));
        const sec = YAML.parse(fs.readFileSync(secPath, "utf8"));
        fs.mkdirSync(out + "/secrets");
        for (const [k, v] of Object.entries(sec.stringData)) {
            fs.writeFileSync(out + "/secrets/" + k, v + "\n");
        }
        const conf = cm.data["capgate.conf"].replaceAll("file:/etc/capgate/secrets/",
                                                        "file:" + out + "/secrets/");
        fs.writeFileSync(out + "/k8s.conf", conf);
    ' "$tools" "$tools" "$root/deploy/k8s/configmap.yaml" "$root/deploy/k8s/secret.yaml" "$scratch"
    CAPGATE_ADMIN_TOKEN="file:$scratch/secrets/admin_token" \
        CAPGATE_KEY_PEPPER="file:$scratch/secrets/key_pepper" \
        "$gateway" --check-config --config "$scratch/k8s.conf"
fi
echo "validate-deploy: all checks passed"
