/**
 * `npm run soak [-- --count=N]`: 100k distinct users and items (default) through one gateway
 * replica, in memory mode and in Redis mode; prints its RSS before, at the peak and after the
 * TTLs (HISTORY_TTL, SCORES_TTL, DEDUP_TTL = SOAK_TTL_S), and in Redis mode the keys left.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startOpenClaw } from '../src/simulators/openclaw.js'
import { countKeys, drive, generousBuckets, heapUsedMb, INSPECT, inspectorUrl, rssAfterGc, rssMb, serviceToken, soakEnv, SOAK_TTL_S, userKeys, type SoakMode } from './soak-drive.js'

const COUNT = Number(process.argv.find((a) => a.startsWith('--count='))?.slice('--count='.length) ?? 100_000)
const CONCURRENCY = 32
const PORT = 39_700 + (process.pid % 200)
const SECRET = 'moltbridge-soak-secret-0123456789abcdef'
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
/** How far above its RSS at start the replica must come back after the TTLs (both after a full GC). */
const AFTER_BOUND_MB = 60
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function soak(mode: SoakMode): Promise<boolean> {
  const openclaw = await startOpenClaw({ apiKey: 'soak-openclaw-key' })
  const buckets = await generousBuckets()
  const prefix = `mbsoak-${process.pid}-${mode}`
  const env = soakEnv({ mode, secret: SECRET, openclaw, bucketsFile: buckets.file, redisUrl: REDIS_URL, prefix })
  const gateway = spawn(process.execPath, [fileURLToPath(new URL('../src/server.js', import.meta.url))], {
    env: { PATH: process.env.PATH, ...env, HOST: '127.0.0.1', PORT: String(PORT), LOG_LEVEL: 'warn', NODE_OPTIONS: INSPECT },
    stdio: ['ignore', 'inherit', 'pipe']
  })
  let stderr = ''
  gateway.stderr?.on('data', (chunk: Buffer) => (stderr += chunk))
  const url = `http://127.0.0.1:${PORT}`
  try {
    for (let i = 0; !(await fetch(`${url}/healthz`).then((r) => r.ok, () => false)); i++) {
      if (i > 300) throw new Error('the gateway did not start')
      await sleep(100)
    }
    const pid = gateway.pid ?? 0
    await sleep(1000)
    const inspector = inspectorUrl(stderr)
    const before = await rssAfterGc(pid, inspector)
    const heapBefore = await heapUsedMb(url)
    const tag = `soak-${mode}`
    const { statuses, peakMb, seconds } = await drive({ url, pid, token: await serviceToken(SECRET), count: COUNT, concurrency: CONCURRENCY, tag })
    const heapPeak = await heapUsedMb(url)
    await sleep(SOAK_TTL_S * 1000 + 1000)
    const idle = await rssMb(pid)
    const after = await rssAfterGc(pid, inspector)
    const heapAfter = await heapUsedMb(url)
    const keys = mode === 'redis' ? await countKeys(REDIS_URL, userKeys(prefix, tag)) : null
    const ok = (statuses[200] ?? 0) === COUNT && after < before + AFTER_BOUND_MB && (keys === null || keys.count === 0)
    console.log(
      `${mode.padEnd(6)} ${COUNT} ratings in ${seconds.toFixed(1)} s (${Math.round(COUNT / seconds)}/s, answers ${JSON.stringify(statuses)}): ` +
        `RSS before ${before.toFixed(0)} MB, peak ${peakMb.toFixed(0)} MB, after the ${SOAK_TTL_S} s TTLs ${idle.toFixed(0)} MB idle, ${after.toFixed(0)} MB after a full GC (bound ${(before + AFTER_BOUND_MB).toFixed(0)} MB); ` +
        `V8 heap used ${heapBefore.toFixed(0)} / ${heapPeak.toFixed(0)} / ${heapAfter.toFixed(0)} MB` +
        (keys ? `; the users' keys left: ${keys.count}${keys.count ? ` (${keys.sample.join(', ')})` : ''}` : '') +
        (ok ? '' : '  <-- FAIL')
    )
    return ok
  } finally {
    gateway.kill('SIGKILL')
    await openclaw.close()
    await buckets.remove()
    if (mode === 'redis') await countKeys(REDIS_URL, `${prefix}:*`, true).catch(() => null)
  }
}

console.log(`soak: ${COUNT} distinct users and items per mode through one replica, ${CONCURRENCY} keep-alive connections`)
let failed = false
for (const mode of ['memory', 'redis'] as const) failed = !(await soak(mode)) || failed
process.exit(failed ? 1 : 0)
