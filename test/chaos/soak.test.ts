/**
 * Soak (CI size): SOAK_COUNT distinct users and items through one real gateway process, in
 * memory mode and in Redis mode; once the TTLs (HISTORY_TTL, SCORES_TTL, DEDUP_TTL) have run
 * out, the replica's RSS is back under its RSS at start + RSS_SLACK_MB and, in Redis mode, the
 * users' keys are gone. Both RSS figures are taken after a full GC forced through the inspector
 * (NODE_OPTIONS=--inspect on loopback): an idle V8 heap is not collected by itself, so the idle
 * RSS measures garbage, not what the replica holds (it is reported too). `npm run soak` is the same at 100k per mode.
 */
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { countKeys, drive, generousBuckets, heapUsedMb, INSPECT, inspectorUrl, rssAfterGc, serviceToken, soakEnv, SOAK_TTL_S, userKeys } from '../../bench/soak-drive.js'
import { deletePrefix, REDIS_URL, TEST_SECRET, uniquePrefix } from '../helpers/app.js'
import { startTestOpenClaw } from '../helpers/openclaw.js'
import { buildGateway, startGateway } from '../helpers/processes.js'
import { rssMb } from '../helpers/rss.js'

const SOAK_COUNT = 20_000
const CONCURRENCY = 16
const RSS_SLACK_MB = 40

t.before(() => buildGateway())

for (const mode of ['memory', 'redis'] as const) {
  t.test(`${mode} mode: ${SOAK_COUNT} distinct users and items, then RSS back under start + ${RSS_SLACK_MB} MB after the ${SOAK_TTL_S} s TTLs`, async (t) => {
    const openclaw = await startTestOpenClaw(t)
    const buckets = await generousBuckets()
    t.teardown(() => buckets.remove())
    const prefix = uniquePrefix()
    t.teardown(() => deletePrefix(prefix))
    const env = soakEnv({ mode, secret: TEST_SECRET, openclaw: { url: openclaw.url, apiKey: openclaw.apiKey }, bucketsFile: buckets.file, redisUrl: REDIS_URL, prefix })
    const gw = await startGateway(t, `soak-${mode}`, { ...env, NODE_OPTIONS: INSPECT })
    const inspector = inspectorUrl(gw.output())
    await sleep(1000)
    const before = await rssAfterGc(gw.pid, inspector)

    const tag = `soak-${mode}`
    const result = await drive({ url: gw.url, pid: gw.pid, token: await serviceToken(TEST_SECRET), count: SOAK_COUNT, concurrency: CONCURRENCY, tag })
    const heapPeak = await heapUsedMb(gw.url)
    t.same(result.statuses, { 200: SOAK_COUNT }, `every rating answered 200 (${Math.round(SOAK_COUNT / result.seconds)}/s)`)
    openclaw.received.length = 0 // the simulator's own record is the test process's memory, not the gateway's

    await sleep(SOAK_TTL_S * 1000 + 1000)
    const bound = before + RSS_SLACK_MB
    const idle = await rssMb(gw.pid)
    const after = await rssAfterGc(gw.pid, inspector)
    t.ok(after < bound, `RSS after the TTLs and a full GC ${after.toFixed(0)} MB < at start ${before.toFixed(0)} MB + ${RSS_SLACK_MB} MB`)
    if (mode === 'redis') {
      const keys = await countKeys(REDIS_URL, userKeys(prefix, tag))
      t.equal(keys.count, 0, `no key of the ${SOAK_COUNT} users left (${keys.sample.join(', ') || 'none'})`)
    }
    t.comment(
      `${mode}: RSS before ${before.toFixed(0)} MB, peak ${result.peakMb.toFixed(0)} MB, after the TTLs ${idle.toFixed(0)} MB idle, ${after.toFixed(0)} MB after a full GC; ` +
        `V8 heap used at the peak ${heapPeak.toFixed(0)} MB, after ${(await heapUsedMb(gw.url)).toFixed(0)} MB; ${SOAK_COUNT} ratings in ${result.seconds.toFixed(1)} s`
    )
  })
}
