-- bench/chat.lua — wrk script: POST one chat-completion body with the
-- capgate key, and print a machine-readable summary line at the end.
--
--   BENCH_BODY  path of the JSON body (read once)
--   BENCH_KEY   bearer key (capgate key; nginx and the demo ignore it)
--   BENCH_PATH  request path (default /v1/chat/completions)
--
-- No response() callback: defining one makes wrk hand every response to Lua,
-- which costs load-generator CPU. Non-2xx answers are counted by wrk itself
-- (summary.errors.status) and printed in the RESULT line.

local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = f:read("*a")
f:close()

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. (os.getenv("BENCH_KEY") or "none")

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d mean_us=%.1f max_us=%d " ..
        "non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
        summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
        e.status, e.connect, e.read, e.write, e.timeout))
end
