-- wrk script: rotate over many feed URLs read from a file of "path<TAB>etag" lines.
-- Set WATCHFUL_URLS to that file, WATCHFUL_MODE to "200" or "304" (If-None-Match).
local urls = {}
local mode = os.getenv("WATCHFUL_MODE") or "200"
for line in io.lines(os.getenv("WATCHFUL_URLS")) do
  local path, etag = line:match("^([^\t]+)\t(.+)$")
  urls[#urls + 1] = { path = path, etag = etag }
end

local counter = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  -- Each thread starts at a different place in the list.
  counter = math.floor(#urls * id / 4)
  statuses = {}
end

function request()
  counter = counter % #urls + 1
  local entry = urls[counter]
  if mode == "304" then
    return wrk.format("GET", entry.path, { ["If-None-Match"] = entry.etag })
  end
  return wrk.format("GET", entry.path)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local s = thread:get("statuses")
    for code, n in pairs(s) do counts[code] = (counts[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(counts) do parts[#parts + 1] = string.format('"%d": %d', code, n) end
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end
