-- wrk script: GET /cache/NS/kN with N drawn from Zipf(s) over 0..KEYS-1.
-- Configured through environment variables ZIPF_NS, ZIPF_KEYS, ZIPF_S.
local ns = os.getenv("ZIPF_NS") or "zipf"
local keys = tonumber(os.getenv("ZIPF_KEYS") or "100000")
local s = tonumber(os.getenv("ZIPF_S") or "0.99")
local cdf = {}

function init(args)
  local total = 0
  for k = 1, keys do
    total = total + 1 / (k ^ s)
    cdf[k] = total
  end
  for k = 1, keys do cdf[k] = cdf[k] / total end
  math.randomseed(os.time() + (tonumber(tostring({}):sub(8)) or 0))
end

local function sample()
  local u = math.random()
  local lo, hi = 1, keys
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  return lo - 1
end

function request()
  return wrk.format("GET", "/cache/" .. ns .. "/k" .. sample())
end
