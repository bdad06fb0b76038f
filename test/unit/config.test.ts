import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { ConfigError, loadConfig } from '../../src/config.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
/** Long enough for HMAC (32 bytes and more). */
const SECRET = 'config-test-secret-0123456789abcdef'

t.test('the documented defaults', async (t) => {
  const config = loadConfig({ JWT_SECRET: SECRET })
  t.match(config, {
    PORT: 3000,
    HOST: '0.0.0.0',
    RATE_LIMIT_FAIL_MODE: 'local',
    IP_RATE_LIMIT_MAX: 6000,
    HISTORY_MAX: 1000,
    HISTORY_TTL: 600,
    DEDUP_TTL: 600,
    LOG_LEVEL: 'info',
    REVOCATION_TTL_S: 86400,
    FORWARD_RETRY_AFTER_MAX_MS: 60000,
    DEAD_LETTERS_MAX: 10000,
    UNDER_PRESSURE_MAX_EVENT_LOOP_DELAY_MS: 1000,
    UNDER_PRESSURE_MAX_HEAP_USED_BYTES: 0
  })
  t.equal(config.ADMIN_PORT, undefined, 'no admin listener unless asked')
  t.equal(config.REDIS_URL, undefined)
  t.equal(loadConfig({ JWT_SECRET: SECRET, PORT: '8080' }).PORT, 8080, 'numbers come from strings')
})

t.test('a bad or missing value is a ConfigError naming the variable', async (t) => {
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['no key source', {}, /JWT_SECRET/],
    ['fail mode', { JWT_SECRET: SECRET, RATE_LIMIT_FAIL_MODE: 'maybe' }, /RATE_LIMIT_FAIL_MODE.*local, open, closed/],
    ['port', { JWT_SECRET: SECRET, PORT: 'eighty' }, /PORT/],
    ['OpenClaw without key', { JWT_SECRET: SECRET, OPENCLAW_URL: 'http://oc' }, /OPENCLAW_API_KEY/],
    ['OpenClaw URL scheme', { JWT_SECRET: SECRET, OPENCLAW_URL: 'ftp://oc', OPENCLAW_API_KEY: 'k' }, /OPENCLAW_URL/],
    ['feed without OpenClaw', { JWT_SECRET: SECRET, MOLTBOOK_URL: 'ws://mb' }, /OPENCLAW_URL/],
    ['Redis URL scheme', { JWT_SECRET: SECRET, REDIS_URL: 'localhost:6379' }, /REDIS_URL/],
    ['admin port on the public one', { JWT_SECRET: SECRET, PORT: '3000', ADMIN_PORT: '3000' }, /ADMIN_PORT must differ from PORT/],
    ['Retry-After cap past what a timer holds', { JWT_SECRET: SECRET, FORWARD_RETRY_AFTER_MAX_MS: '9999999999' }, /FORWARD_RETRY_AFTER_MAX_MS/],
    ['negative heap threshold', { JWT_SECRET: SECRET, UNDER_PRESSURE_MAX_HEAP_USED_BYTES: '-1' }, /UNDER_PRESSURE_MAX_HEAP_USED_BYTES/],
    ['TRUST_PROXY a host name', { JWT_SECRET: SECRET, TRUST_PROXY: 'nginx' }, /TRUST_PROXY/],
    ['TRUST_PROXY a hop count', { JWT_SECRET: SECRET, TRUST_PROXY: '1' }, /TRUST_PROXY/]
  ]
  for (const [name, env, variable] of cases) {
    t.throws(() => loadConfig(env), { name: 'ConfigError', message: variable }, name)
  }
  t.ok(new ConfigError('x') instanceof Error)
})

t.test('Redis through Sentinel, and WAIT for replicas', async (t) => {
  const sentinel = { JWT_SECRET: SECRET, REDIS_SENTINELS: 'sentinel-1:26379,10.0.0.2:26380', REDIS_SENTINEL_NAME: 'mymaster' }
  const config = loadConfig({ ...sentinel, REDIS_SENTINEL_PASSWORD: 'pw', REDIS_WAIT_REPLICAS: '1' })
  t.match(config, { ...sentinel, REDIS_SENTINEL_PASSWORD: 'pw', REDIS_WAIT_REPLICAS: 1, REDIS_WAIT_TIMEOUT_MS: 1000 })
  t.equal(loadConfig({ JWT_SECRET: SECRET }).REDIS_WAIT_REPLICAS, 0, 'no WAIT by default')

  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['Sentinels without the primary name', { REDIS_SENTINELS: 'h:26379' }, /REDIS_SENTINEL_NAME is required when REDIS_SENTINELS is set/],
    ['a name without Sentinels', { REDIS_SENTINEL_NAME: 'mymaster' }, /REDIS_SENTINELS is required when REDIS_SENTINEL_NAME is set/],
    ['a password without Sentinels', { REDIS_SENTINEL_PASSWORD: 'pw' }, /REDIS_SENTINELS is required when REDIS_SENTINEL_PASSWORD is set/],
    ['no port', { REDIS_SENTINELS: 'sentinel-1', REDIS_SENTINEL_NAME: 'm' }, /REDIS_SENTINELS/],
    ['a URL instead of host:port', { REDIS_SENTINELS: 'redis://h:26379', REDIS_SENTINEL_NAME: 'm' }, /REDIS_SENTINELS/],
    ['an empty item', { REDIS_SENTINELS: 'h:1,,h:2', REDIS_SENTINEL_NAME: 'm' }, /REDIS_SENTINELS/],
    ['Sentinel and Cluster', { ...sentinel, REDIS_CLUSTER_NODES: 'h:7000' }, /REDIS_SENTINELS or REDIS_CLUSTER_NODES, not both/],
    ['TLS through Sentinel', { ...sentinel, REDIS_URL: 'rediss://:pw@h' }, /REDIS_URL must be redis:\/\/ with REDIS_SENTINELS/],
    ['negative replicas', { REDIS_URL: 'redis://h', REDIS_WAIT_REPLICAS: '-1' }, /REDIS_WAIT_REPLICAS/],
    ['replicas not a number', { REDIS_URL: 'redis://h', REDIS_WAIT_REPLICAS: 'all' }, /REDIS_WAIT_REPLICAS/],
    ['WAIT without Redis', { REDIS_WAIT_REPLICAS: '1' }, /REDIS_WAIT_REPLICAS needs Redis/],
    ['a zero WAIT timeout', { REDIS_URL: 'redis://h', REDIS_WAIT_TIMEOUT_MS: '0' }, /REDIS_WAIT_TIMEOUT_MS/]
  ]
  for (const [name, env, message] of cases) {
    t.throws(() => loadConfig({ JWT_SECRET: SECRET, ...env }), { name: 'ConfigError', message }, name)
  }
})

/** Runs the real entry point (through the TypeScript loader) with only the given environment. */
function start(env: Record<string, string>): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import=@tapjs/typescript/import', 'src/server.ts'], {
      cwd: root,
      env: { PATH: process.env.PATH ?? '', TS_NODE_TRANSPILE_ONLY: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
    const timer = setTimeout(() => child.kill('SIGKILL'), 50_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stderr, stdout })
    })
  })
}

t.test('the real entry stops with exit 1 and one line naming the variable', async (t) => {
  const runs: Array<[string, Record<string, string>, RegExp]> = [
    ['missing JWT_SECRET', {}, /JWT_SECRET/],
    ['bad RATE_LIMIT_FAIL_MODE', { JWT_SECRET: SECRET, RATE_LIMIT_FAIL_MODE: 'maybe' }, /RATE_LIMIT_FAIL_MODE/]
  ]
  await Promise.all(
    runs.map(async ([name, env, variable]) => {
      const { code, stderr, stdout } = await start(env)
      t.equal(code, 1, `${name}: exit code 1`)
      const lines = `${stdout}${stderr}`.split('\n').filter(Boolean)
      t.equal(lines.length, 1, `${name}: one line (${lines.join(' | ')})`)
      t.match(lines[0], variable, `${name}: names the variable`)
      t.notMatch(stderr, /\n\s+at /, `${name}: no stack trace`)
    })
  )
})
