-- wrk script: distinct PUTs. LIST_FILE names one content a line as
-- "HASH PATH"; thread k of n sends lines k, k+n, k+2n, ... once each, as
--   KIND=strata  POST /semantic/pHASH/versions (a new resource each)
--   KIND=bazel   PUT /cas/HASH
-- A thread that runs out of lines starts again from its first; done()
-- reports that (a repeated content would be deduplicated, not written).
local kind = os.getenv("KIND")
local entries = {}
for line in io.lines(os.getenv("LIST_FILE")) do
  local h, p = line:match("^(%x+) (.+)$")
  entries[#entries + 1] = {h, p}
end
local threads = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("k", nthreads)
  table.insert(threads, thread)
end

local at, step = nil, nil
wrapped = 0 -- global: done() reads it with thread:get

function init(args)
  at = k
  step = tonumber(os.getenv("THREADS") or "2")
end

function request()
  if at > #entries then
    at = k
    wrapped = wrapped + 1
  end
  local e = entries[at]
  at = at + step
  local f = assert(io.open(e[2], "rb"))
  local body = f:read("*a")
  f:close()
  if kind == "bazel" then
    return wrk.format("PUT", "/cas/" .. e[1], nil, body)
  end
  return wrk.format("POST", "/semantic/p" .. e[1] .. "/versions?corpus_id=c&corpus_version=1.0.0"
                    .. "&model_name=m&embedding_dimension=4",
                    {["Content-Type"] = "application/octet-stream"}, body)
end

function done(summary, latency, requests)
  local w = 0
  for _, t in ipairs(threads) do
    w = w + (t:get("wrapped") or 0)
  end
  io.write(string.format("wrapped %d\n", w))
end
