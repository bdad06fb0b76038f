/**
 * Lua scripts, kept as TS strings so the build needs no asset copy. Registered once per
 * client with defineCommand (EVALSHA afterwards). Each touches one key: Cluster-safe.
 */

/**
 * One token-bucket decision, the same steps as src/domain/token-bucket.ts `take`, on
 * Redis's own clock. KEYS[1] bucket hash {tokens, ts(ms)}; ARGV capacity, refill_rate
 * (tokens/s), cost. Returns {allowed 0/1, remaining, retryAfterMs, resetMs}. The key
 * expires when the bucket would be full again (a missing key is a full bucket).
 */
export const BUCKET_TAKE = `
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
else
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate / 1000)
end
local epsilon = 1e-9
local allowed = 0
if tokens >= cost - epsilon then
  allowed = 1
  tokens = math.max(0, tokens - cost)
end
local perToken = 1000 / rate
local retryAfter = 0
if tokens < cost - epsilon then retryAfter = math.ceil((cost - tokens) * perToken) end
local reset = math.ceil((capacity - tokens) * perToken)
if reset > 0 then
  redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', now))
  redis.call('PEXPIRE', KEYS[1], reset)
else
  redis.call('DEL', KEYS[1])
end
return {allowed, math.floor(tokens), retryAfter, reset}
`
