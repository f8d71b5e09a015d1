#!/usr/bin/env bash
# bench/loadgen_test.sh — ctest `loadgen_test`: cg_loadgen against a real demo upstream.
#
#   loadgen_test.sh CG_LOADGEN CAPGATE_DEMO_UPSTREAM
#
# Proves what bench/halfload.sh relies on: bad options are refused with a clear message
# (exit 2), an unreachable target ends with exit 1 within the connect bound, a run below
# capacity sends exactly the scheduled requests at the target rate, chunked SSE and
# content-length answers both complete, non-2xx answers are counted, and — the point of an
# open-loop generator — when the target is slower than the schedule the queueing shows up
# in the latency (counted from each request's due time) instead of being hidden. Timeouts
# and connections cut mid-stream are errors, never a crash or a hang.
#
# The demo runs on a free 127.0.0.1 port in a scratch directory; both are removed at exit
# and the demo is stopped by its PID. Every wait is bounded.
set -euo pipefail

lg=${1:?usage: loadgen_test.sh CG_LOADGEN DEMO_UPSTREAM}
demo=${2:?usage: loadgen_test.sh CG_LOADGEN DEMO_UPSTREAM}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/capgate-loadgen-test.XXXXXX")
demo_pid=""
failures=0

cleanup() {
    if [ -n "$demo_pid" ]; then
        kill -TERM "$demo_pid" 2>/dev/null || true
        for ((t = 0; t < 50; t++)); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    rm -rf "$scratch"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

port_used() { # any TCP socket with this local port
    awk -v p=":$(printf '%04X' "$1")" '$2 ~ p"$" {f = 1} END {exit !f}' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Starts the demo on a free port (below the ephemeral range), retrying if the bind races.
start_demo() {
    local attempt t
    for ((attempt = 0; attempt < 5; attempt++)); do
        port=$((20000 + RANDOM % 12000))
        port_used "$port" && continue
        "$demo" --listen "127.0.0.1:$port" </dev/null >"$scratch/demo.log" 2>&1 &
        demo_pid=$!
        for ((t = 0; t < 200; t++)); do
            if curl -fsS -o /dev/null "http://127.0.0.1:$port/healthz" 2>/dev/null; then
                return 0
            fi
            kill -0 "$demo_pid" 2>/dev/null || break
            sleep 0.05
        done
        kill -KILL "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
        demo_pid=""
    done
    echo "FAIL: the demo upstream did not start; log:" >&2
    cat "$scratch/demo.log" >&2
    exit 1
}

# field LINE NAME: the value of NAME=... in a RESULT line.
field() {
    tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"
}

# expect_usage_error DESCRIPTION MESSAGE-SUBSTRING ARGS...: exit 2 and the message.
expect_usage_error() {
    local what=$1 msg=$2 rc=0
    shift 2
    "$lg" "$@" >"$scratch/out" 2>"$scratch/err" || rc=$?
    [ "$rc" = 2 ] || fail "$what: exit $rc, expected 2"
    grep -qF -- "$msg" "$scratch/err" || fail "$what: no '$msg' in: $(cat "$scratch/err")"
    [ ! -s "$scratch/out" ] || fail "$what: printed a result: $(cat "$scratch/out")"
}

# run_lg NAME ARGS...: runs cg_loadgen, expects exit 0 and one RESULT line; sets $line.
run_lg() {
    local name=$1 rc=0
    shift
    "$lg" "$@" >"$scratch/$name.out" 2>"$scratch/$name.err" || rc=$?
    line=$(grep '^RESULT ' "$scratch/$name.out" || true)
    if [ "$rc" != 0 ] || [ -z "$line" ]; then
        fail "$name: exit $rc, output: $(cat "$scratch/$name.out" "$scratch/$name.err")"
        line="RESULT"
        return
    fi
    echo "$name: $line"
}

# check NAME EXPR: EXPR is an awk condition over the RESULT fields of $line.
check() {
    local name=$1 cond=$2
    # shellcheck disable=SC2046
    if ! awk $(tr ' ' '\n' <<<"${line#RESULT }" | grep '=' | sed 's/^/-v /') "BEGIN { exit !($cond) }"; then
        fail "$name: expected $cond; got $line"
    fi
}

# ---- bad input ----
url_none="http://127.0.0.1:9/v1/chat/completions"
expect_usage_error "no arguments" "--url and --rate are required"
expect_usage_error "ftp url" "--url: expected http://" --url ftp://127.0.0.1/ --rate 1
expect_usage_error "rate not a number" "--rate: expected a number" --url "$url_none" --rate abc
expect_usage_error "rate zero" "--rate: expected a number" --url "$url_none" --rate 0
expect_usage_error "negative duration" "--duration" --url "$url_none" --rate 1 --duration -1
expect_usage_error "connections 0" "--connections" --url "$url_none" --rate 1 --connections 0
expect_usage_error "connections 1.5" "whole number" --url "$url_none" --rate 1 --connections 1.5
expect_usage_error "header without colon" "--header: expected 'Name: value'" --url "$url_none" --rate 1 --header nocolon
expect_usage_error "missing body file" "--body-file $scratch/none" --url "$url_none" --rate 1 --body-file "$scratch/none"
expect_usage_error "too many requests" "requests, more than" --url "$url_none" --rate 1000000 --duration 3600
expect_usage_error "lower-case method" "--method" --url "$url_none" --rate 1 --method get
expect_usage_error "unknown option" "usage:" --url "$url_none" --rate 1 --bogus

# Nothing listens: exit 1 with the reason, within the 5 s connect bound (+ slack).
free_unused=$((20000 + RANDOM % 12000))
while port_used "$free_unused"; do free_unused=$((free_unused + 1)); done
start_s=$SECONDS
rc=0
"$lg" --url "http://127.0.0.1:$free_unused/" --rate 10 --duration 1 >"$scratch/out" 2>"$scratch/err" || rc=$?
[ "$rc" = 1 ] || fail "unreachable target: exit $rc, expected 1"
grep -q "cannot connect" "$scratch/err" || fail "unreachable target: $(cat "$scratch/err")"
[ $((SECONDS - start_s)) -le 15 ] || fail "unreachable target took $((SECONDS - start_s)) s"

# ---- against the demo ----
start_demo
url="http://127.0.0.1:$port/v1/chat/completions"
body='{"model":"demo-gpt-4o-mini","max_tokens":16,"messages":[{"role":"user","content":"hello there"}]}'
printf '%s' "$body" >"$scratch/body.json"
printf '%s' "${body%\}},\"stream\":true,\"stream_options\":{\"include_usage\":true}}" >"$scratch/stream.json"
printf '%s' "${body%\}},\"demo\":{\"status\":503}}" >"$scratch/503.json"
printf '%s' "${body%\}},\"demo\":{\"delay_ms\":50}}" >"$scratch/slow.json"
printf '%s' "${body%\}},\"demo\":{\"delay_ms\":3000}}" >"$scratch/hang.json"
printf '%s' "${body%\}},\"stream\":true,\"demo\":{\"break_after\":2}}" >"$scratch/break.json"
stats() { curl -fsS "http://127.0.0.1:$port/demo/stats" | sed -n 's/.*"chat_requests":\([0-9]*\).*/\1/p'; }

# Below capacity: every scheduled request (warm-up included) reaches the demo once, all
# answered 200, at the target rate; percentiles ordered.
before=$(stats)
run_lg plain --url "$url" --rate 200 --duration 1 --warmup 0.25 --connections 4 \
    --body-file "$scratch/body.json" --header "Authorization: Bearer test"
check plain "requests == 200 && completed == 200 && errors == 0 && non2xx == 0 && unsent == 0"
check plain "rate_achieved >= 160 && rate_achieved <= 200.5"
check plain "p50_us > 0 && p50_us <= p90_us && p90_us <= p99_us && p99_us <= p999_us && p999_us <= max_us"
check plain "svc_p50_us > 0 && svc_p50_us <= p50_us + 0.1 && queued <= requests"
after=$(stats)
[ "$((after - before))" = 250 ] || fail "plain: the demo saw $((after - before)) chat requests, expected 250 (50 warm-up + 200)"

# Chunked SSE answers complete at their last chunk.
run_lg stream --url "$url" --rate 100 --duration 1 --warmup 0 --connections 2 --body-file "$scratch/stream.json"
check stream "requests == 100 && completed == 100 && errors == 0 && non2xx == 0"

# Non-2xx answers are answers (latency recorded) and are counted.
run_lg status --url "$url" --rate 50 --duration 1 --warmup 0 --connections 2 --body-file "$scratch/503.json"
check status "requests == 50 && completed == 50 && non2xx == 50 && errors == 0"

# Open loop: each answer takes >= 50 ms and 2 connections serve at most 40/s, so 100 due
# in 1 s queue up: the 99th answer cannot come before ~2.4 s, i.e. >= 1.4 s after its due
# time, although each one is served in ~50 ms. A closed-loop tool would report ~50 ms.
run_lg overload --url "$url" --rate 100 --duration 1 --warmup 0 --connections 2 --body-file "$scratch/slow.json"
check overload "completed == 100 && errors == 0"
check overload "svc_p50_us >= 50000 && svc_p50_us < 1000000"
check overload "p99_us >= 1000000 && queued >= 50"
check overload "rate_achieved < 60"

# Timeouts: answers take 3 s, the timeout is 0.3 s: every request fails (in flight →
# timeout, still queued at the drain bound → unsent), and the run ends within its bounds.
start_s=$SECONDS
run_lg timeout --url "$url" --rate 10 --duration 0.5 --warmup 0 --connections 2 --timeout 0.3 \
    --body-file "$scratch/hang.json"
check timeout "requests == 5 && completed == 0 && errors == 5 && timeouts >= 1 && timeouts + unsent <= 5"
[ $((SECONDS - start_s)) -le 5 ] || fail "timeout run took $((SECONDS - start_s)) s"

# A stream cut after 2 events is an error for its request; the connection is reopened and
# the next requests are still sent.
run_lg break --url "$url" --rate 20 --duration 1 --warmup 0 --connections 2 --body-file "$scratch/break.json"
check break "requests == 20 && completed == 0 && errors == 20 && reconnects >= 20"

# The demo is still fine after all that.
run_lg after --url "$url" --rate 50 --duration 0.5 --warmup 0 --connections 2 --body-file "$scratch/body.json"
check after "requests == 25 && completed == 25 && errors == 0"

if [ "$failures" -gt 0 ]; then
    echo "loadgen_test: $failures failure(s)" >&2
    exit 1
fi
echo "loadgen_test: ok"
