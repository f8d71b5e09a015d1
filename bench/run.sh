#!/usr/bin/env bash
# bench/run.sh — capgate vs nginx on loopback, run by hand (not part of CI).
#
#   bench/run.sh [all|throughput|conc] [--write]
#
#   throughput  demo upstream, nginx (plain proxy_pass, upstream keep-alive) and
#               a capgate cluster (gateway + 3 shards + alerter, full
#               enforcement) each loaded with wrk, non-streaming and streaming;
#               then one request at a time (added latency vs direct); then the
#               gateway again with `enforcement off` if that directive exists.
#   conc        BENCH_CONC (5000) concurrent streaming responses through one
#               gateway process (demo delay_ms keeps them open); errors and
#               gateway RSS per connection.
#   all         both (default).
#   --write     also write the report to bench/RESULTS.md.
#
# Environment (defaults): BENCH_DURATION (10s), BENCH_WARMUP (2s),
# BENCH_CONNS (64), BENCH_WRK_THREADS (1), BENCH_SUT_WORKERS (1: nginx
# worker_processes and gateway workers), BENCH_DEMO_WORKERS (1),
# BENCH_CONC (5000), BENCH_CONC_DELAY_MS (3000), BENCH_CONC_DURATION (15s),
# BENCH_KEEP=1 keeps the scratch dir.
# Iterating on the gateway: BENCH_ONLY=gateway runs only the capgate rows at
# BENCH_CONNS (no direct/nginx/1-connection rows), for each enforcement mode in
# BENCH_ENF ("on off") and body in BENCH_BODIES ("body body-stream"),
# BENCH_ROUNDS (1) times; BENCH_ALT_BUILD=DIR (another Release build dir) adds
# the same rows with DIR's gateway, alternating with BENCH_BUILD's in the same
# run (labels "(a)" = BENCH_BUILD, "(b)" = BENCH_ALT_BUILD); BENCH_ALT_ENV="VAR=VAL ..."
# runs "(b)" with those variables set (with BENCH_BUILD's gateway unless
# BENCH_ALT_BUILD is given), e.g. CAPGATE_UPSTREAM_CLIENT=curl. BENCH_HALF=1 adds
# bench/halfload.sh (latency at half load) for "(a)" and "(b)", one after the other. Builds older than
# lease_scopes "all" need BENCH_LEASE=none.
#
# Pinning (taskset): >= 3 cores: system under test on core 0, demo upstream
# on core 1, wrk on the rest; 2 cores: every server (SUT + demo) on core 0,
# wrk on core 1; 1 core: no pinning.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench="$root/bench"
build="${BENCH_BUILD:-$root/build-bench}" # BENCH_BUILD: an existing Release build dir to use
mode=all
write=0
for a in "$@"; do
    case "$a" in
    all | throughput | conc) mode=$a ;;
    --write) write=1 ;;
    *) echo "usage: bench/run.sh [all|throughput|conc] [--write]" >&2; exit 2 ;;
    esac
done

DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONNS=${BENCH_CONNS:-64}
WRK_THREADS=${BENCH_WRK_THREADS:-1}
SUT_WORKERS=${BENCH_SUT_WORKERS:-1}
DEMO_WORKERS=${BENCH_DEMO_WORKERS:-1}
CONC=${BENCH_CONC:-5000}
CONC_DELAY_MS=${BENCH_CONC_DELAY_MS:-3000}
CONC_DURATION=${BENCH_CONC_DURATION:-15s}
LEASE=${BENCH_LEASE:-all} # lease_scopes of the "capgate" rows (docs/leasing.md)

log() { printf 'bench: %s\n' "$*" >&2; }

# ---- dependencies and build ----
if ! command -v wrk >/dev/null || ! command -v nginx >/dev/null; then
    log "installing nginx-light wrk"
    apt-get install -y nginx-light wrk >/dev/null ||
        { apt-get update >/dev/null && apt-get install -y nginx-light wrk >/dev/null; }
fi
if [ ! -f "$build/build.ninja" ]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$build" -j "$(nproc)" --target capgate-gateway capgate-ledger \
    capgate-alerter capgate-demo-upstream cg_loadgen >/dev/null

# File descriptors: the conc mode needs ~2 per connection in the gateway.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---- cores ----
ncpu=$(nproc)
if [ "$ncpu" -ge 3 ]; then
    sut_cpus=0 demo_cpus=1 wrk_cpus="2-$((ncpu - 1))"
    pin_note="system under test on core 0, demo upstream on core 1, wrk on cores $wrk_cpus (taskset)"
elif [ "$ncpu" -eq 2 ]; then
    sut_cpus=0 demo_cpus=0 wrk_cpus=1
    pin_note="2 cores: every server (system under test and demo upstream) on core 0, wrk on core 1 (taskset); the comparison is \"one core each\""
else
    sut_cpus="" demo_cpus="" wrk_cpus=""
    pin_note="1 core: no pinning, everything shares it"
fi
# pin CPUS CMD...: exec'd, so "pin ... &" gives the PID of CMD itself.
pin() {
    local c=$1
    shift
    if [ -n "$c" ]; then exec taskset -c "$c" "$@"; else exec "$@"; fi
}

run_pinned() { (pin "$@"); }

# ---- scratch, processes, cleanup ----
scratch=$(mktemp -d /tmp/capgate-bench.XXXXXX)
pids=()
cleanup() {
    local p
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        p=${pids[$i]}
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for ((t = 0; t < 50; t++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then log "scratch kept: $scratch"; else rm -rf "$scratch"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP PIPE

stop_pid() { # stop one process we started, by PID
    local p=$1
    kill -TERM "$p" 2>/dev/null || true
    for ((t = 0; t < 100; t++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# Ports: consecutive from a random base, skipping any that something listens on.
# Below the kernel's ephemeral range (32768+ by default), so no outgoing connection takes
# one between the check and the bind.
next_port=$((10000 + RANDOM % 20000))
port_used() { # any TCP socket (any state) with this local port
    awk -v p=":$(printf '%04X' "$1")" '$2 ~ p"$" {f = 1} END {exit !f}' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}
free_port() { # free_port VAR
    while port_used "$next_port"; do next_port=$((next_port + 1)); done
    printf -v "$1" '%s' "$next_port"
    next_port=$((next_port + 1))
}
wait_http() { # wait_http URL PID NAME
    for ((t = 0; t < 200; t++)); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { log "$3 exited; log: $scratch/$3.log"; tail -n 20 "$scratch/$3.log" >&2; exit 1; }
        sleep 0.1
    done
    log "$3 not ready: $1"
    exit 1
}

# CPU ticks (utime + stime, all threads) of a list of PIDs.
ticks() {
    local sum=0 p f
    for p in "$@"; do
        f=$(cut -d')' -f2- "/proc/$p/stat" 2>/dev/null) || continue
        # after "comm)": field 3 is state; utime/stime are fields 14/15 → $12/$13 here
        set -- $f
        sum=$((sum + ${12} + ${13}))
    done
    echo "$sum"
}
sys_ticks() { # stime of one PID
    local f
    f=$(cut -d')' -f2- "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    set -- $f
    echo "${13}"
}
clk_tck=$(getconf CLK_TCK)
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---- bodies (~1 KB) ----
filler="You are a careful assistant for a logistics company. Answer in plain English, briefly, and cite the relevant policy section when you can. "
user_text="Our warehouse in Rotterdam received 48 pallets this morning but the manifest lists 52. Three of the missing pallets carry temperature-sensitive goods. Which steps should the shift lead take in the next hour, who needs to be informed, and what should go into the incident report so that the insurer accepts the claim? Keep it to a short checklist."
mkbody() { # mkbody STREAM(true|false) [EXTRA]
    local extra=${2:-}
    printf '{"model":"demo-gpt-4o-mini","max_tokens":16,"temperature":0.2,"stream":%s,%s"messages":[{"role":"system","content":"%s%s%s"},{"role":"user","content":"%s"}]}' \
        "$1" "$extra" "$filler" "$filler" "$filler" "$user_text"
}
mkbody false >"$scratch/body.json"
mkbody true '"stream_options":{"include_usage":true},' >"$scratch/body-stream.json"
mkbody true "\"stream_options\":{\"include_usage\":true},\"demo\":{\"delay_ms\":$CONC_DELAY_MS}," >"$scratch/body-conc.json"
body_bytes=$(wc -c <"$scratch/body.json")
stream_bytes=$(wc -c <"$scratch/body-stream.json")

# ---- results ----
results="$scratch/results.tsv" # label stream conns rps p50 p99 cpu_us errs requests
: >"$results"

# run_wrk LABEL URL BODY CONNS DURATION -- CPU_PIDS...
run_wrk() {
    local label=$1 url=$2 body=$3 conns=$4 dur=$5
    shift 6
    local threads=$WRK_THREADS
    [ "$conns" -lt "$threads" ] && threads=$conns
    local out="$scratch/wrk-${label// /_}.txt"
    # warm-up (connections, caches), not measured
    BENCH_BODY=$body BENCH_KEY=$KEY run_pinned "$wrk_cpus" wrk -t"$threads" -c"$conns" -d"$WARMUP" \
        --timeout 10s -s "$bench/chat.lua" "$url" >/dev/null 2>&1 || true
    local t0 t1
    t0=$(ticks "$@")
    local before=() after=() p
    for p in "$@"; do before+=("$(ticks "$p") $(sys_ticks "$p")"); done
    BENCH_BODY=$body BENCH_KEY=$KEY run_pinned "$wrk_cpus" wrk -t"$threads" -c"$conns" -d"$dur" \
        --timeout 10s --latency -s "$bench/chat.lua" "$url" >"$out" 2>&1 || true
    t1=$(ticks "$@")
    for p in "$@"; do after+=("$(ticks "$p") $(sys_ticks "$p")"); done
    local line
    line=$(grep '^RESULT ' "$out" || true)
    if [ -z "$line" ]; then
        log "$label: wrk failed:"
        cat "$out" >&2
        printf '%s\t-\t%s\t0\t0\t0\t0\twrk-failed\t0\n' "$label" "$conns" >>"$results"
        return
    fi
    local requests duration p50 p99 non2xx c r w to
    eval "$(echo "${line#RESULT }" | tr ' ' '\n' | sed 's/^\([a-z0-9_]*\)=/r_\1=/')"
    requests=$r_requests duration=$r_duration_us p50=$r_p50_us p99=$r_p99_us
    local errs=$((r_non2xx + r_connect + r_read + r_write + r_timeout))
    local errtxt=0
    [ "$errs" -gt 0 ] && errtxt="$errs (non2xx $r_non2xx, connect $r_connect, read $r_read, write $r_write, timeout $r_timeout)"
    local stream=no
    case "$body" in *stream*) stream=yes ;; esac
    awk -v l="$label" -v s="$stream" -v c="$conns" -v n="$requests" -v d="$duration" \
        -v p50="$p50" -v p99="$p99" -v dt="$((t1 - t0))" -v hz="$clk_tck" -v e="$errtxt" \
        -v cpu="$#" -v b="${before[*]}" -v a="${after[*]}" 'BEGIN {
            rps = (d > 0) ? n / (d / 1e6) : 0
            cpu_us = (n > 0 && cpu > 0) ? dt * 1e6 / hz / n : 0
            nb = split(b, bb, " "); split(a, aa, " "); split_txt = ""; sys = 0
            for (i = 1; i < nb; i += 2) {
                v = (n > 0) ? (aa[i] - bb[i]) * 1e6 / hz / n : 0
                split_txt = split_txt (i > 1 ? " + " : "") sprintf("%.1f", v)
                sys += aa[i + 1] - bb[i + 1]
            }
            sys_pct = (dt > 0) ? 100 * sys / dt : 0
            printf "%s\t%s\t%d\t%.0f\t%d\t%d\t%.1f\t%s\t%d\t%s\t%.0f\n", l, s, c, rps, p50, p99, cpu_us, e, n, split_txt, sys_pct
        }' >>"$results"
    log "$(tail -n 1 "$results")"
}

# ---- processes ----
free_port p_demo
log "demo upstream on 127.0.0.1:$p_demo (workers $DEMO_WORKERS, cpus ${demo_cpus:-any})"
pin "$demo_cpus" "$build/demo/capgate-demo-upstream" --listen "127.0.0.1:$p_demo" \
    --workers "$DEMO_WORKERS" </dev/null >"$scratch/demo.log" 2>&1 &
pid_demo=$!
pids+=("$pid_demo")
wait_http "http://127.0.0.1:$p_demo/healthz" "$pid_demo" demo

# capgate cluster
umask 077
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$scratch/admin_token"
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$scratch/key_pepper"
umask 022
admin_token=$(cat "$scratch/admin_token")
free_port p_gw
free_port p_adm
mkdir -p "$scratch/data"
{
    echo "listen        127.0.0.1:$p_gw"
    echo "admin_listen  127.0.0.1:$p_adm"
    echo "workers       $SUT_WORKERS"
    for s in s0 s1 s2; do
        free_port pr
        free_port pp
        echo "shard $s tcp://127.0.0.1:$pr tcp://127.0.0.1:$pp"
    done
    echo "provider  demo  http://127.0.0.1:$p_demo/v1"
    echo "model  demo-gpt-4o-mini  demo  prompt=0.15  completion=0.60  max_output=16384"
    echo "admin_token   file:$scratch/admin_token"
    echo "key_pepper    file:$scratch/key_pepper"
    echo "data_dir      $scratch/data"
    echo "alert_allow_http     on"
    echo "alert_allow_private  on"
    echo "log_level     warn"
    echo "lease_scopes  $LEASE"
} >"$scratch/capgate.conf"
shard_pids=()
for s in s0 s1 s2; do
    pin "$sut_cpus" "$build/ledger/capgate-ledger" --config "$scratch/capgate.conf" --shard "$s" \
        </dev/null >"$scratch/ledger-$s.log" 2>&1 &
    pids+=("$!")
    shard_pids+=("$!")
done
pin "$sut_cpus" "$build/alerter/capgate-alerter" --config "$scratch/capgate.conf" \
    </dev/null >"$scratch/alerter.log" 2>&1 &
pids+=("$!")
gw_bin="$build/gateway/capgate-gateway"
start_gateway() { # start_gateway [ENV=VAL...]; sets pid_gw; runs $gw_bin
    env "$@" taskset -c "${sut_cpus:-0-$((ncpu - 1))}" "$gw_bin" \
        --config "$scratch/capgate.conf" </dev/null >>"$scratch/gateway.log" 2>&1 &
    pid_gw=$!
    pids+=("$pid_gw")
    wait_http "http://127.0.0.1:$p_gw/readyz" "$pid_gw" gateway
}
start_gateway
log "capgate gateway on 127.0.0.1:$p_gw (workers $SUT_WORKERS), admin :$p_adm, 3 shards, cpus ${sut_cpus:-any}"

admin() { # admin METHOD PATH [BODY]
    curl -fsS -X "$1" "http://127.0.0.1:$p_adm$2" -H "Authorization: Bearer $admin_token" ${3:+-d "$3"}
}
big_limits='[{"metric":"cost","window":"month","max":"1000000"},{"metric":"tokens","window":"month","max":1000000000000},{"metric":"requests","window":"1m","max":10000000}]'
admin POST /admin/v1/orgs "{\"id\":\"bench\",\"name\":\"Bench\",\"limits\":$big_limits}" >/dev/null
KEY=$(admin POST /admin/v1/orgs/bench/keys "{\"name\":\"bench\",\"limits\":$big_limits}" |
    sed -n 's/.*"key":"\([^"]*\)".*/\1/p')
[ -n "$KEY" ] || { log "could not create a key"; exit 1; }
export KEY
code=$(curl -s -o "$scratch/probe.json" -w '%{http_code}' "http://127.0.0.1:$p_gw/v1/chat/completions" \
    -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' --data-binary @"$scratch/body.json")
[ "$code" = 200 ] || { log "capgate probe answered $code: $(cat "$scratch/probe.json")"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p_gw/v1/chat/completions" \
    -H "Authorization: Bearer wrong" -H 'Content-Type: application/json' --data-binary @"$scratch/body.json")
[ "$code" = 401 ] || { log "capgate without a valid key answered $code, expected 401"; exit 1; }

# nginx
free_port p_nginx
mkdir -p "$scratch/nginx/tmp"
cat >"$scratch/nginx/nginx.conf" <<NGX
worker_processes $SUT_WORKERS;
worker_rlimit_nofile 65536;
pid $scratch/nginx/nginx.pid;
error_log $scratch/nginx/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path $scratch/nginx/tmp/body;
    proxy_temp_path $scratch/nginx/tmp/proxy;
    fastcgi_temp_path $scratch/nginx/tmp/fastcgi;
    uwsgi_temp_path $scratch/nginx/tmp/uwsgi;
    scgi_temp_path $scratch/nginx/tmp/scgi;
    upstream demo { server 127.0.0.1:$p_demo; keepalive 256; }
    server {
        listen 127.0.0.1:$p_nginx;
        location / {
            proxy_pass http://demo;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
NGX
pin "$sut_cpus" nginx -p "$scratch/nginx" -c "$scratch/nginx/nginx.conf" -g 'daemon off;' \
    </dev/null >"$scratch/nginx.log" 2>&1 &
pid_nginx=$!
pids+=("$pid_nginx")
wait_http "http://127.0.0.1:$p_nginx/healthz" "$pid_nginx" nginx
nginx_pids=("$pid_nginx" $(pgrep -P "$pid_nginx" || true))
log "nginx on 127.0.0.1:$p_nginx (worker_processes $SUT_WORKERS, pids ${nginx_pids[*]})"

has_enforcement=0
grep -q '^ \*  *enforcement ' "$root/common/cg_config.h" && has_enforcement=1

gw_url="http://127.0.0.1:$p_gw/v1/chat/completions"
ng_url="http://127.0.0.1:$p_nginx/v1/chat/completions"
dm_url="http://127.0.0.1:$p_demo/v1/chat/completions"
usage_before=$(admin GET "/admin/v1/usage?org=bench" || echo '?')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
# Idle CPU of the capgate processes (background loops), over 3 s with no load.
t0=$(ticks "$pid_gw" "${shard_pids[@]}")
sleep 3
t1=$(ticks "$pid_gw" "${shard_pids[@]}")
idle_pct=$(awk -v d="$((t1 - t0))" -v hz="$clk_tck" 'BEGIN {printf "%.1f", d / hz / 3 * 100}')

half_report=""
if [ "$mode" != conc ] && [ "${BENCH_ONLY:-}" = gateway ]; then
    # Gateway-only rows (see the header): A/B binaries alternate within each round.
    alt_bins=("a:$build/gateway/capgate-gateway")
    alt_env=("")
    if [ -n "${BENCH_ALT_BUILD:-}" ]; then
        cmake --build "$BENCH_ALT_BUILD" -j "$(nproc)" --target capgate-gateway >/dev/null
        alt_bins+=("b:$BENCH_ALT_BUILD/gateway/capgate-gateway")
        alt_env+=("${BENCH_ALT_ENV:-}")
    elif [ -n "${BENCH_ALT_ENV:-}" ]; then
        alt_bins+=("b:$build/gateway/capgate-gateway")
        alt_env+=("$BENCH_ALT_ENV")
    fi
    for ((round = 1; round <= ${BENCH_ROUNDS:-1}; round++)); do
        for enf in ${BENCH_ENF:-on off}; do
            for ai in "${!alt_bins[@]}"; do
                ab=${alt_bins[$ai]}
                stop_pid "$pid_gw"
                gw_bin=${ab#*:}
                suffix=""
                [ "$enf" = off ] && suffix=", enforcement off"
                [ ${#alt_bins[@]} -gt 1 ] && suffix="$suffix (${ab%%:*})"
                # shellcheck disable=SC2086 # BENCH_ALT_ENV: words ENV=VAL
                start_gateway CAPGATE_ENFORCEMENT="$enf" ${alt_env[$ai]}
                for b in ${BENCH_BODIES:-body body-stream}; do
                    run_wrk "capgate$suffix" "$gw_url" "$scratch/$b.json" "$CONNS" "$DURATION" -- "$pid_gw" "${shard_pids[@]}"
                done
            done
        done
    done
    if [ "${BENCH_HALF:-0}" = 1 ]; then
        # Latency at half load for each binary/env, at one rate: half of (a)'s maximum.
        max_rps=$(awk -F'\t' -v C="$CONNS" '$1 ~ /^capgate( \(a\))?$/ && $2 == "no" && $3 == C {print $4; exit}' "$results")
        for ai in "${!alt_bins[@]}"; do
            ab=${alt_bins[$ai]}
            stop_pid "$pid_gw"
            gw_bin=${ab#*:}
            # shellcheck disable=SC2086
            start_gateway ${alt_env[$ai]}
            half_ab=$(BENCH_BUILD="$build" BENCH_BODY="$scratch/body.json" BENCH_KEY="$KEY" \
                BENCH_MAX_RPS="$max_rps" BENCH_PIN_CPUS="$wrk_cpus" "$bench/halfload.sh" \
                "direct (demo)=$dm_url" "capgate (${ab%%:*})=$gw_url" 2>>"$scratch/halfload.log") ||
                half_ab="halfload.sh failed"
            half_report="$half_report"$'\n'"$half_ab"
        done
    fi
    stop_pid "$pid_gw"
    gw_bin="$build/gateway/capgate-gateway"
    start_gateway
    usage_after=$(admin GET "/admin/v1/usage?org=bench" || echo '?')
elif [ "$mode" != conc ]; then
    for b in body body-stream; do
        run_wrk "direct (demo)" "$dm_url" "$scratch/$b.json" "$CONNS" "$DURATION" -- "$pid_demo"
        run_wrk "nginx" "$ng_url" "$scratch/$b.json" "$CONNS" "$DURATION" -- "${nginx_pids[@]}"
        run_wrk "capgate" "$gw_url" "$scratch/$b.json" "$CONNS" "$DURATION" -- "$pid_gw" "${shard_pids[@]}"
    done
    for b in body body-stream; do
        run_wrk "direct (demo)" "$dm_url" "$scratch/$b.json" 1 "$DURATION" -- "$pid_demo"
        run_wrk "nginx" "$ng_url" "$scratch/$b.json" 1 "$DURATION" -- "${nginx_pids[@]}"
        run_wrk "capgate" "$gw_url" "$scratch/$b.json" 1 "$DURATION" -- "$pid_gw" "${shard_pids[@]}"
    done
    usage_after=$(admin GET "/admin/v1/usage?org=bench" || echo '?')
    if [ "$has_enforcement" = 1 ]; then
        stop_pid "$pid_gw"
        start_gateway CAPGATE_ENFORCEMENT=off
        for b in body body-stream; do
            run_wrk "capgate, enforcement off" "$gw_url" "$scratch/$b.json" "$CONNS" "$DURATION" -- "$pid_gw" "${shard_pids[@]}"
            run_wrk "capgate, enforcement off" "$gw_url" "$scratch/$b.json" 1 "$DURATION" -- "$pid_gw" "${shard_pids[@]}"
        done
        stop_pid "$pid_gw"
        if [ "$LEASE" != none ]; then
            # Full enforcement without budget leases: a reserve and a settle per scope per request.
            start_gateway CAPGATE_LEASE_SCOPES=none
            for b in body body-stream; do
                run_wrk "capgate, leases off" "$gw_url" "$scratch/$b.json" "$CONNS" "$DURATION" -- "$pid_gw" "${shard_pids[@]}"
                run_wrk "capgate, leases off" "$gw_url" "$scratch/$b.json" 1 "$DURATION" -- "$pid_gw" "${shard_pids[@]}"
            done
            stop_pid "$pid_gw"
        fi
        start_gateway
    fi
fi

# ---- latency at half of the maximum load (open loop, bench/halfload.sh) ----
if [ "$mode" != conc ] && [ "${BENCH_ONLY:-}" != gateway ]; then
    max_rps=$(awk -F'\t' -v C="$CONNS" '$1 == "capgate" && $2 == "no" && $3 == C {print $4; exit}' "$results")
    half_report=$(BENCH_BUILD="$build" BENCH_BODY="$scratch/body.json" BENCH_KEY="$KEY" \
        BENCH_MAX_RPS="$max_rps" BENCH_PIN_CPUS="$wrk_cpus" "$bench/halfload.sh" \
        "direct (demo)=$dm_url" "nginx=$ng_url" "capgate=$gw_url" 2>>"$scratch/halfload.log") ||
        half_report="halfload.sh failed: $(tail -n 5 "$scratch/halfload.log")"
fi

# ---- 5,000 concurrent streaming responses ----
conc_report=""
if [ "$mode" != throughput ]; then
    port_hex=$(printf '%04X' "$p_gw")
    est_conns() { # established client-side (wrk) TCP connections to the gateway's port
        awk -v p=":$port_hex" '$3 ~ p"$" && $4 == "01" {n++} END {print n+0}' /proc/net/tcp
    }
    # Baseline: the same load straight to the demo (what the demo alone does on this core).
    BENCH_BODY="$scratch/body-conc.json" BENCH_KEY=$KEY run_pinned "$wrk_cpus" wrk -t1 -c"$CONC" -d"$CONC_DURATION" \
        --timeout 60s -s "$bench/chat.lua" "$dm_url" >"$scratch/wrk-conc-direct.txt" 2>&1 || true
    dline=$(grep '^RESULT ' "$scratch/wrk-conc-direct.txt" || echo "RESULT wrk-failed")
    log "conc direct: $dline"
    rss0=$(rss_kb "$pid_gw")
    BENCH_BODY="$scratch/body-conc.json" BENCH_KEY=$KEY pin "$wrk_cpus" wrk -t1 -c"$CONC" -d"$CONC_DURATION" \
        --timeout 60s --latency -s "$bench/chat.lua" "$gw_url" >"$scratch/wrk-conc.txt" 2>&1 &
    pid_wrk=$!
    pids+=("$pid_wrk")
    rss_max=$rss0 conns_max=0
    while kill -0 "$pid_wrk" 2>/dev/null; do
        r=$(rss_kb "$pid_gw" || echo 0)
        c=$(est_conns)
        [ "${r:-0}" -gt "$rss_max" ] && rss_max=$r
        [ "$c" -gt "$conns_max" ] && conns_max=$c
        sleep 0.25
    done
    wait "$pid_wrk" 2>/dev/null || true
    rss1=$(rss_kb "$pid_gw")
    line=$(grep '^RESULT ' "$scratch/wrk-conc.txt" || echo "RESULT wrk-failed")
    log "conc: $line; rss ${rss0} -> max ${rss_max} kB; max established $conns_max"
    eval "$(echo "${line#RESULT }" | tr ' ' '\n' | grep = | sed 's/^\([a-z0-9_]*\)=/r_\1=/')"
    conc_report=$(awk -v n="${r_requests:-0}" -v d="${r_duration_us:-1}" -v p50="${r_p50_us:-0}" \
        -v p99="${r_p99_us:-0}" -v e2="${r_non2xx:-?}" -v ec="${r_connect:-?}" -v er="${r_read:-?}" \
        -v ew="${r_write:-?}" -v et="${r_timeout:-?}" -v r0="$rss0" -v rm="$rss_max" -v r1="$rss1" \
        -v cm="$conns_max" -v C="$CONC" -v dl="$CONC_DELAY_MS" -v dline="${dline#RESULT }" 'BEGIN {
        printf "| wrk connections | %d (each a streaming chat completion, demo delay_ms %d) |\n", C, dl
        printf "| max established wrk connections to the gateway (sampled every 250 ms) | %d |\n", cm
        printf "| completed streams | %d (%.0f/s) |\n", n, n / (d / 1e6)
        printf "| stream latency p50 / p99 | %.0f / %.0f ms |\n", p50 / 1000, p99 / 1000
        printf "| errors | non-2xx %s, connect %s, read %s, write %s, timeout %s |\n", e2, ec, er, ew, et
        printf "| same load straight to the demo (baseline) | %s |\n", dline
        printf "| gateway RSS idle / peak / after | %.1f / %.1f / %.1f MiB |\n", r0 / 1024, rm / 1024, r1 / 1024
        printf "| memory per connection (peak - idle) / %d | %.1f KiB |\n", C, (rm - r0) / C
    }')
fi

# ---- report ----
{
    echo "## Run of $(date -u +%F\ %H:%M\ UTC)"
    echo
    echo "Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), kernel $(uname -r), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)."
    echo "Source: commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')$( [ -n "$(git -C "$root" status --porcelain -- . ':!bench' 2>/dev/null)" ] && echo ' plus uncommitted changes in the working tree')."
    echo "Pinning: $pin_note."
    echo "capgate: gateway (workers $SUT_WORKERS) + 3 ledger shards + alerter, Release build; nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (nginx-light), worker_processes $SUT_WORKERS, upstream keepalive 256, proxy_buffering off; demo upstream --workers $DEMO_WORKERS; $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), $WRK_THREADS thread(s)."
    echo "Load: wrk -d$DURATION (after a $WARMUP warm-up), POST /v1/chat/completions, body $body_bytes bytes (streaming $stream_bytes), max_tokens 16 (16 words / 18 SSE events back)."
    echo "Enforcement: key auth + key and org limits (cost/month, tokens/month, requests/1m; none binding); \`lease_scopes $LEASE\` (docs/leasing.md) for the \"capgate\" rows, \`none\` for \"leases off\"."
    echo "Load average (1/5/15 min) at start: $load_start; at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews the numbers; see the notes in bench/README.md)."
    echo "Idle CPU of gateway + shards with no traffic: ${idle_pct}% of one core."
    echo "Per process: capgate = gateway + s0 + s1 + s2; nginx = master + worker; (% sys) = share of stime in the total."
    echo "CPU µs/req: utime+stime delta from /proc/<pid>/stat over the measured run (gateway + 3 shards for capgate; nginx master + workers for nginx; the demo for direct) / requests."
    echo
    if [ "$mode" != conc ]; then
        echo "### Throughput ($CONNS connections)"
        echo
        echo "| target | stream | req/s | p50 µs | p99 µs | CPU µs/req | req/s vs nginx | CPU/req vs nginx | errors | CPU µs/req per process (% sys) |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---|---|"
        awk -F'\t' -v C="$CONNS" '
            $3 == C { key = $2; if ($1 == "nginx") { nr[key] = $4; nc[key] = $7 } rows[++n] = $0 }
            END {
                for (i = 1; i <= n; i++) {
                    split(rows[i], f, "\t")
                    r = "-"; c = "-"
                    if (f[1] ~ /^capgate/ && nr[f[2]] > 0) r = sprintf("%.2f", f[4] / nr[f[2]])
                    if (f[1] ~ /^capgate/ && nc[f[2]] > 0) c = sprintf("%.2f", f[7] / nc[f[2]])
                    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s%%) |\n", f[1], f[2], f[4], f[5], f[6], f[7], r, c, (f[8] == "0" ? "0" : "**" f[8] "**"), f[10], f[11]
                }
            }' "$results"
        [ "$has_enforcement" = 1 ] || echo "| capgate, enforcement off | both | n/a (directive pending) | | | | | | |"
        echo
        echo "### One request at a time (1 connection)"
        echo
        echo "| target | stream | req/s | p50 µs | p99 µs | added p50 µs (vs direct) | added p99 µs (vs direct) | CPU µs/req | errors | CPU µs/req per process (% sys) |"
        echo "|---|---|---:|---:|---:|---:|---:|---:|---|---|"
        awk -F'\t' '
            $3 == 1 { if ($1 ~ /^direct/) { d50[$2] = $5; d99[$2] = $6 } rows[++n] = $0 }
            END {
                for (i = 1; i <= n; i++) {
                    split(rows[i], f, "\t")
                    a = "-"; b = "-"
                    if (f[1] !~ /^direct/ && f[2] in d50) { a = f[5] - d50[f[2]]; b = f[6] - d99[f[2]] }
                    printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s (%s%%) |\n", f[1], f[2], f[4], f[5], f[6], a, b, f[7], (f[8] == "0" ? "0" : "**" f[8] "**"), f[10], f[11]
                }
            }' "$results"
        [ "$has_enforcement" = 1 ] || echo "| capgate, enforcement off | both | n/a (directive pending) | | | | | | |"
        echo
        if [ -n "$half_report" ]; then
            echo "$half_report"
            echo
        fi
        echo "Ledger check: /admin/v1/usage?org=bench before the capgate runs: \`$usage_before\`; after: \`${usage_after:-?}\` (includes warm-ups)."
        echo
    fi
    if [ -n "$conc_report" ]; then
        echo "### $CONC concurrent streaming responses, one gateway process (workers $SUT_WORKERS), $CONC_DURATION"
        echo
        echo "| | |"
        echo "|---|---|"
        echo "$conc_report"
        echo
    fi
} >"$scratch/report.md"
cat "$scratch/report.md"
if [ "$write" = 1 ]; then
    {
        sed -n '1,/^<!-- runs -->/p' "$bench/RESULTS.md" 2>/dev/null || true
        cat "$scratch/report.md"
        echo
        # Earlier runs and notes stay below the new report.
        sed -n '/^<!-- runs -->/,$p' "$bench/RESULTS.md" 2>/dev/null | tail -n +2 || true
    } >"$scratch/RESULTS.new"
    grep -q '^<!-- runs -->' "$scratch/RESULTS.new" || sed -i '1i # capgate benchmark results\n\n<!-- runs -->\n' "$scratch/RESULTS.new"
    mv "$scratch/RESULTS.new" "$bench/RESULTS.md"
    log "wrote $bench/RESULTS.md"
fi
