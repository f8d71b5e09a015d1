#!/usr/bin/env bash
# bench/halfload.sh — SPEC §11's "p99 added latency at half of the maximum load" (issue 4).
#
#   bench/halfload.sh LABEL=URL [LABEL=URL ...]
#
# Against targets that are already running (bench/run.sh starts them; see bench/README.md):
#   1. the maximum load: BENCH_MAX_RPS if set, else wrk (closed loop, bench/chat.lua, the same
#      body, BENCH_CONNS connections like bench/run.sh) against the target labelled
#      BENCH_MAX_FROM (default: the first label starting with "capgate", else the last);
#   2. cg_loadgen (open loop, bench/cg_loadgen.c) at BENCH_HALF_PCT (50) % of it, the SAME
#      rate for every target, for BENCH_HALF_DURATION seconds after a BENCH_HALF_WARMUP
#      warm-up, one target after the other;
#   3. a markdown table on stdout: target, rate, p50, p99, p99.9, and p99 minus the p99 of
#      the first target whose label starts with "direct" ("added p99"; SPEC: ≤ 500 µs).
# Progress and raw RESULT lines go to stderr.
#
# Environment (defaults):
#   BENCH_BODY           request body file (required; bench/run.sh's body.json)
#   BENCH_KEY            bearer key sent to every target (nginx and the demo ignore it)
#   BENCH_MAX_RPS        skip step 1 and use this maximum (req/s)
#   BENCH_MAX_FROM       label whose maximum is measured in step 1
#   BENCH_CONNS (64)     wrk connections in step 1;  BENCH_MAX_DURATION (5s) its length
#   BENCH_HALF_PCT (50)  BENCH_HALF_DURATION (10)  BENCH_HALF_WARMUP (2)
#   BENCH_HALF_CONNS (64)  cg_loadgen connections (enough that none waits at half load)
#   BENCH_LOADGEN_SPIN (0) 1: cg_loadgen --spin (no wake-up delay in the send times, but only on a core of
#                        its own: sharing one, a spinning process loses whole time slices)
#   BENCH_LOADGEN        cg_loadgen binary; default BENCH_BUILD/bench/cg_loadgen, built if
#                        missing (BENCH_BUILD defaults to build-bench/, like bench/run.sh)
#   BENCH_PIN_CPUS       cpus for wrk and cg_loadgen (taskset); default like bench/run.sh:
#                        core 1 on 2 cores, cores 2.. on more, none on 1 core; "" = no pinning
# It starts no server and stops nothing but the load processes it starts (by PID).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench="$root/bench"
log() { printf 'halfload: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 2
}

[ $# -ge 1 ] || die "usage: bench/halfload.sh LABEL=URL [LABEL=URL ...] (env: see the header)"
labels=() urls=()
for a in "$@"; do
    case "$a" in
    *=http://*) labels+=("${a%%=http://*}") urls+=("http://${a#*=http://}") ;;
    *) die "expected LABEL=http://HOST:PORT/PATH, got '$a'" ;;
    esac
done
body=${BENCH_BODY:-}
if [ -z "$body" ] || [ ! -r "$body" ]; then die "BENCH_BODY must name a readable body file"; fi
KEY=${BENCH_KEY:-none}
PCT=${BENCH_HALF_PCT:-50}
HDUR=${BENCH_HALF_DURATION:-10}
HWARM=${BENCH_HALF_WARMUP:-2}
HCONNS=${BENCH_HALF_CONNS:-64}
CONNS=${BENCH_CONNS:-64}
MAXDUR=${BENCH_MAX_DURATION:-5s}
spin=()
if [ "${BENCH_LOADGEN_SPIN:-0}" = 1 ]; then spin=(--spin); fi

lg=${BENCH_LOADGEN:-}
if [ -z "$lg" ]; then
    build="${BENCH_BUILD:-$root/build-bench}"
    if [ ! -f "$build/build.ninja" ]; then
        cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
    fi
    cmake --build "$build" --target cg_loadgen >/dev/null
    lg="$build/bench/cg_loadgen"
fi
[ -x "$lg" ] || die "no cg_loadgen at $lg"

ncpu=$(nproc)
if [ -n "${BENCH_PIN_CPUS+set}" ]; then
    cpus=$BENCH_PIN_CPUS
elif [ "$ncpu" -ge 3 ]; then
    cpus="2-$((ncpu - 1))"
elif [ "$ncpu" -eq 2 ]; then
    cpus=1
else
    cpus=""
fi
pinned() { if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi; }

# Load processes run in the background and are waited for by PID, so an interrupt
# stops exactly them.
scratch=$(mktemp -d /tmp/capgate-halfload.XXXXXX)
load_pid=""
on_exit() {
    if [ -n "$load_pid" ]; then
        kill -TERM "$load_pid" 2>/dev/null || true
        wait "$load_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap on_exit EXIT
trap 'exit 130' INT TERM HUP
run_bg() { # run_bg OUTFILE CMD...: runs CMD pinned, waits for it by PID
    local out=$1
    shift
    pinned "$@" >"$out" 2>&1 &
    load_pid=$!
    wait "$load_pid" || true
    load_pid=""
}

# ---- 1. the maximum load ----
max_src="BENCH_MAX_RPS"
if [ -n "${BENCH_MAX_RPS:-}" ]; then
    max=$BENCH_MAX_RPS
else
    command -v wrk >/dev/null || die "wrk not installed (apt-get install wrk) and BENCH_MAX_RPS not set"
    from=${BENCH_MAX_FROM:-}
    idx=$((${#labels[@]} - 1))
    for i in "${!labels[@]}"; do
        if [ -n "$from" ] && [ "${labels[$i]}" = "$from" ]; then idx=$i; break; fi
        if [ -z "$from" ] && [[ "${labels[$i]}" == capgate* ]]; then idx=$i; break; fi
    done
    [ -z "$from" ] || [ "${labels[$idx]}" = "$from" ] || die "BENCH_MAX_FROM=$from is not a label"
    log "maximum load: wrk -c$CONNS -d$MAXDUR (closed loop) against ${labels[$idx]}"
    BENCH_BODY=$body BENCH_KEY=$KEY run_bg "$scratch/wrk-warm.txt" wrk -t1 -c"$CONNS" -d2s \
        --timeout 10s -s "$bench/chat.lua" "${urls[$idx]}"
    BENCH_BODY=$body BENCH_KEY=$KEY run_bg "$scratch/wrk.txt" wrk -t1 -c"$CONNS" -d"$MAXDUR" \
        --timeout 10s -s "$bench/chat.lua" "${urls[$idx]}"
    line=$(grep '^RESULT ' "$scratch/wrk.txt" || true)
    [ -n "$line" ] || die "wrk failed: $(cat "$scratch/wrk.txt")"
    log "wrk: $line"
    max=$(awk -v l="$line" 'BEGIN {
        n = split(l, f, " "); for (i = 2; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
        e = v["non2xx"] + v["connect"] + v["read"] + v["write"] + v["timeout"]
        if (e > 0 || v["duration_us"] <= 0) { print "error"; exit }
        printf "%.0f", v["requests"] / (v["duration_us"] / 1e6) }')
    [ "$max" != error ] || die "wrk saw errors, no maximum: $line"
    max_src="wrk -c$CONNS -d$MAXDUR against ${labels[$idx]}"
fi
rate=$(awk -v m="$max" -v p="$PCT" 'BEGIN { r = m * p / 100; if (r < 1) r = 1; printf "%.0f", r }')
log "maximum $max req/s ($max_src); open-loop rate $rate req/s ($PCT %)"

# ---- 2. open loop at the rate, one target after the other ----
results=()
for i in "${!labels[@]}"; do
    out="$scratch/lg-$i.txt"
    run_bg "$out" "$lg" --url "${urls[$i]}" --rate "$rate" --duration "$HDUR" --warmup "$HWARM" \
        --connections "$HCONNS" --body-file "$body" --header "Authorization: Bearer $KEY" "${spin[@]}"
    line=$(grep '^RESULT ' "$out" || true)
    if [ -z "$line" ]; then
        log "${labels[$i]}: cg_loadgen failed: $(cat "$out")"
        line="RESULT failed=1"
    fi
    log "${labels[$i]}: $line"
    results+=("$line")
done

# ---- 3. the table ----
echo "### Latency at $PCT % of the maximum load (open loop)"
echo
echo "Maximum: $max req/s ($max_src). Every target gets the same constant rate, $rate req/s, for" \
    "${HDUR} s after a ${HWARM} s warm-up: cg_loadgen ${spin[*]:+--spin }with $HCONNS keep-alive" \
    "connections${cpus:+, on cpus $cpus (taskset)}; latency counted from each request's due time" \
    "(queueing included, no coordinated omission), to the last byte of the answer." \
    "\"queued\": measured requests that waited for a free connection; \"gen late p99\": how late" \
    "the generator wrote the others (its own wake-up delay; a sanity check, it should be small)."
echo
echo "| target | rate req/s | achieved req/s | p50 µs | p99 µs | p99.9 µs | max µs | added p99 µs (vs direct) | errors | queued | gen late p99 µs |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"
for i in "${!labels[@]}"; do
    printf '%s\t%s\n' "${labels[$i]}" "${results[$i]}"
done | awk -F'\t' '
    function parse(l, v,   n, f, i, kv) {
        n = split(l, f, " "); for (i = 2; i <= n; i++) { split(f[i], kv, "="); v[kv[1]] = kv[2] }
    }
    { lab[NR] = $1; line[NR] = $2; if (d == "" && $1 ~ /^direct/) d = NR }
    END {
        if (d != "") { parse(line[d], dv); d99 = dv["p99_us"] }
        for (r = 1; r <= NR; r++) {
            delete v; parse(line[r], v)
            if (v["failed"] == 1) { printf "| %s | failed | | | | | | | | | |\n", lab[r]; continue }
            e = v["errors"] + v["non2xx"]
            et = (e == 0) ? "0" : sprintf("**%d** (non2xx %d, timeouts %d, unsent %d)", e, v["non2xx"], v["timeouts"], v["unsent"])
            a = (d == "" || r == d || (dv["failed"] == 1)) ? "-" : sprintf("%.0f", v["p99_us"] - d99)
            printf "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %s | %d | %.0f |\n", lab[r], v["rate_target"], v["rate_achieved"], v["p50_us"], v["p99_us"], v["p999_us"], v["max_us"], a, et, v["queued"], v["gen_late_p99_us"]
        }
    }'
echo
