#!/usr/bin/env bash
# run-local.sh — the one run command: a complete local capgate cluster in the
# foreground.
#
#   ledger shards s0, s1     NNG tcp://127.0.0.1:7100/7101 and :7110/7111
#   gateway (2 worker loops) http://127.0.0.1:8080   (clients, OpenAI-compatible)
#   admin API                http://127.0.0.1:8081   (Bearer admin token)
#   alerter                  webhooks (http and private addresses allowed here)
#   demo upstream            http://127.0.0.1:9090   (provider "demo")
#
# State lives in .run/ (gitignored): the config, data (LMDB), logs/, and the
# key pepper, generated once so keys stay valid across runs. The admin token
# comes from $CAPGATE_ADMIN_TOKEN, else is generated for this run and printed.
# If $OPENAI_API_KEY is set, provider "openai" ($OPENAI_BASE_URL or
# https://api.openai.com/v1) and its models gpt-4o-mini / gpt-4o are added
# beside the demo ones; the key is read from the environment by the gateway
# and never written to .run/.
#
# Every process logs JSON lines to .run/logs/<name>.log; this script shows
# them all, prefixed with the process name. Ctrl-C (or SIGTERM) stops the
# processes by PID, gateway first, and waits for each to exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
run="$root/.run"
build="$root/build-release"
stop_timeout_s=15

"$root/scripts/install-deps.sh"
if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)"

mkdir -p "$run/logs" "$run/data"
chmod 700 "$run"

# Secrets: random hex from OpenSSL (or the kernel if openssl is missing).
random_hex() {
    openssl rand -hex 24 2>/dev/null || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'
}
umask 077
if [ ! -s "$run/key_pepper" ]; then
    random_hex >"$run/key_pepper"
fi
token_generated=0
if [ -z "${CAPGATE_ADMIN_TOKEN:-}" ]; then
    CAPGATE_ADMIN_TOKEN=$(random_hex)
    token_generated=1
fi
printf '%s\n' "$CAPGATE_ADMIN_TOKEN" >"$run/admin_token"
# The processes read the token from the file; drop the override variable so
# the file is the single source.
unset CAPGATE_ADMIN_TOKEN
umask 022

conf="$run/capgate.conf"
{
    echo "# written by scripts/run-local.sh; edit the script, not this file"
    echo "listen        127.0.0.1:8080"
    echo "admin_listen  127.0.0.1:8081"
    echo "workers       2"
    echo "shard  s0  tcp://127.0.0.1:7100  tcp://127.0.0.1:7101"
    echo "shard  s1  tcp://127.0.0.1:7110  tcp://127.0.0.1:7111"
    echo "demo_listen   127.0.0.1:9090"
    echo "provider  demo  http://127.0.0.1:9090/v1"
    echo "model  demo-gpt-4o-mini  demo  prompt=0.15  completion=0.60  max_output=16384"
    echo "model  demo-gpt-4o       demo  prompt=2.50  completion=10.00  max_output=16384"
    if [ -n "${OPENAI_API_KEY:-}" ]; then
        echo "provider  openai  ${OPENAI_BASE_URL:-https://api.openai.com/v1}  env:OPENAI_API_KEY"
        echo "model  gpt-4o-mini  openai  prompt=0.15  completion=0.60  cached_prompt=0.075  max_output=16384"
        echo "model  gpt-4o       openai  prompt=2.50  completion=10.00  cached_prompt=1.25  max_output=16384"
    fi
    echo "admin_token   file:$run/admin_token"
    echo "key_pepper    file:$run/key_pepper"
    echo "data_dir      $run/data"
    echo "alert_allow_http     on"
    echo "alert_allow_private  on"
} >"$conf"

names=()
pids=()
# alive PID: running and not a zombie waiting to be reaped.
alive() {
    kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}
# start NAME BINARY ARGS...: run in the background, output to logs/NAME.log.
start() {
    local name=$1
    shift
    echo "==== $(date -u +%FT%TZ) start $name ====" >>"$run/logs/$name.log"
    "$@" </dev/null >>"$run/logs/$name.log" 2>&1 &
    names+=("$name")
    pids+=("$!")
}

stopping=0
# Stop in reverse start order (gateway before shards), each by PID: SIGTERM,
# then SIGKILL after stop_timeout_s.
stop_all() {
    stopping=1
    trap '' INT TERM
    # Output may go to a pipe that Ctrl-C already closed (run-local.sh | tee):
    # a failed echo must not end the script before every process is stopped.
    echo 2>/dev/null || true
    echo "run-local: stopping..." 2>/dev/null || true
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        local pid=${pids[$i]} name=${names[$i]}
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for ((t = 0; t < stop_timeout_s * 10; t++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "run-local: $name (pid $pid) did not stop; SIGKILL" 2>/dev/null || true
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "${tail_pid:-}" ]; then
        kill "$tail_pid" 2>/dev/null || true
        wait "$tail_pid" 2>/dev/null || true
    fi
    echo "run-local: stopped" 2>/dev/null || true
}
# A closed stdout must not kill the script with SIGPIPE (see stop_all).
trap '' PIPE
trap 'stop_all; exit 0' INT TERM
trap '[ "$stopping" = 1 ] || stop_all' EXIT

# Each background job in its own process group: Ctrl-C reaches only this
# script, which then stops the processes in order.
set -m

# Show every log as it grows, each line prefixed with its process name. The
# files exist before tail starts (tail -F would otherwise wait for them), and
# the prefixing is a read loop (mawk buffers piped input).
prefix_lines() {
    local line n=""
    while IFS= read -r line; do
        case "$line" in
        "==> "*" <==") n=${line#==> } && n=${n% <==} && n=${n##*/} && n=${n%.log} ;;
        "") ;;
        *) printf '[%s] %s\n' "$n" "$line" ;;
        esac
    done
}
logs=()
for n in demo ledger-s0 ledger-s1 alerter gateway; do
    touch "$run/logs/$n.log"
    logs+=("$run/logs/$n.log")
done
tail -n 0 -F "${logs[@]}" 2>/dev/null | prefix_lines &
tail_pid=$!

start demo "$build/demo/capgate-demo-upstream" --listen 127.0.0.1:9090
start ledger-s0 "$build/ledger/capgate-ledger" --config "$conf" --shard s0
start ledger-s1 "$build/ledger/capgate-ledger" --config "$conf" --shard s1
start alerter "$build/alerter/capgate-alerter" --config "$conf"
start gateway "$build/gateway/capgate-gateway" --config "$conf"

# Ready when the gateway says every shard answers.
ready=0
for ((t = 0; t < 200; t++)); do
    if curl -fsS -o /dev/null http://127.0.0.1:8080/readyz 2>/dev/null; then
        ready=1
        break
    fi
    for ((i = 0; i < ${#pids[@]}; i++)); do
        if ! alive "${pids[$i]}"; then
            echo "run-local: ${names[$i]} exited during start-up; see $run/logs/${names[$i]}.log"
            exit 1
        fi
    done
    sleep 0.1
done
if [ "$ready" != 1 ]; then
    echo "run-local: gateway not ready after 20 s; see $run/logs/"
    exit 1
fi

token=$(cat "$run/admin_token")
cat <<MSG

capgate is running: gateway http://127.0.0.1:8080, admin http://127.0.0.1:8081
$( [ "$token_generated" = 1 ] && echo "admin token (generated for this run): $token" )
$( [ -n "${OPENAI_API_KEY:-}" ] && echo "provider openai configured: models gpt-4o-mini, gpt-4o" )

# 1. create an org and a key with a monthly \$5 cap (the key is shown once):
export CAPGATE_ADMIN_TOKEN=$token
curl -s -X POST http://127.0.0.1:8081/admin/v1/orgs -H "Authorization: Bearer \$CAPGATE_ADMIN_TOKEN" \\
  -d '{"id":"acme","name":"Acme Inc."}'
curl -s -X POST http://127.0.0.1:8081/admin/v1/orgs/acme/keys -H "Authorization: Bearer \$CAPGATE_ADMIN_TOKEN" \\
  -d '{"name":"team-search","limits":[{"metric":"cost","window":"month","max":"5","warn_at":[0.8]}]}'

# 2. send a chat request with that key (paste the "key" from the answer above):
export CAPGATE_KEY=cg-...
curl -s http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer \$CAPGATE_KEY" \\
  -H 'Content-Type: application/json' \\
  -d '{"model":"demo-gpt-4o-mini","max_tokens":32,"messages":[{"role":"user","content":"Hello"}]}'

# 3. see what it cost: curl -s http://127.0.0.1:8081/admin/v1/keys/<id> -H "Authorization: Bearer \$CAPGATE_ADMIN_TOKEN"

Logs: $run/logs/. Ctrl-C stops everything.
MSG

# Run until Ctrl-C, or until a process dies on its own (then stop the rest).
while :; do
    wait -n "${pids[@]}" || true
    for ((i = 0; i < ${#pids[@]}; i++)); do
        if ! alive "${pids[$i]}"; then
            echo "run-local: ${names[$i]} exited unexpectedly; see $run/logs/${names[$i]}.log"
            stop_all
            exit 1
        fi
    done
done
