-- POST one fixed JSON body (read from the file named by WRK_BODY_FILE) on every request, and print a
-- machine-readable summary line that bench/peers/run.py parses.
--
--   WRK_BODY_FILE=body.json wrk -t1 -c8 -d10s -s bench/peers/wrk/post.lua http://127.0.0.1:PORT/predict
--
-- No response() hook: defining one makes wrk parse every body in Lua and slows the load generator down.
-- Responses are checked for correctness by run.py before timing; here wrk counts non-2xx/3xx statuses.

local path = os.getenv("WRK_BODY_FILE")
assert(path, "set WRK_BODY_FILE to the file holding the request body")
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"min":%.0f,"mean":%.1f,"stdev":%.1f,"max":%.0f,' ..
      '"p50":%.0f,"p75":%.0f,"p90":%.0f,"p99":%.0f,"p99_9":%.0f}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency.min, latency.mean, latency.stdev, latency.max,
      latency:percentile(50), latency:percentile(75), latency:percentile(90),
      latency:percentile(99), latency:percentile(99.9)))
end
