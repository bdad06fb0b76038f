/**
 * A page on its own origin, streaming through nginx from two `npm start` replicas on one Redis:
 * the replica serving its stream is SIGKILLed while scores flow. The client (GET /client.js), a
 * plain EventSource on a cookie session, and a client that had received nothing yet all end with
 * every score exactly once, in id order. Real Chromium, nginx, processes, Redis.
 */
import type { Page } from 'playwright-core'
import t, { type Test } from 'tap'
import { compareEventIds } from '../../src/events/event-id.js'
import { buildTestApp, deletePrefix, REDIS_URL, TEST_SECRET, uniquePrefix } from '../helpers/app.js'
import { harnessPage, launchBrowser, openHarness, pageServer, seen, SKIP_BROWSER, waitSeen } from '../helpers/browser.js'
import { scrape } from '../helpers/metrics.js'
import { startNginx } from '../helpers/nginx.js'
import { buildGateway, startGateway, startGateways, type GatewayProcess } from '../helpers/processes.js'
import { bucketsFile, score } from '../helpers/sse.js'
import { mint } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const SCORES = 150
const KILL_AT = 50
const PACE_MS = 30

const openStreams = (gw: GatewayProcess) => scrape(gw.url, 'moltbridge_sse_streams_open')

if (SKIP_BROWSER) {
  t.plan(0, 'SKIP_BROWSER=1')
} else {
  t.test('replica death behind nginx', async (t) => {
    await buildGateway()
    const KEY_PREFIX = uniquePrefix()
    t.teardown(() => deletePrefix(KEY_PREFIX))
    let gatewayUrl = ''
    const origin = await pageServer(t, () => harnessPage(gatewayUrl))
    const env = {
      REDIS_URL,
      KEY_PREFIX,
      JWT_SECRET: TEST_SECRET,
      BUCKETS_FILE: await bucketsFile(t, { capacity: 100000, refill_rate: 100000 }),
      CORS_ORIGINS: origin,
      SSE_COOKIE_SECURE: 'false', // plain HTTP here; over TLS keep the default
      SSE_RETRY_MS: '300',
      SSE_HEARTBEAT_MS: '1000'
    }
    const replicas = await startGateways(t, 2, env)
    const lb = await startNginx(t, replicas.map((g) => `127.0.0.1:${g.port}`))
    gatewayUrl = lb.url
    // Scores are published on the same Redis by a gateway of the test's own (the fan-out path).
    const publisher = await buildTestApp(t, { KEY_PREFIX })
    const browser = await launchBrowser(t)

    /** The replica serving the page's only stream: killed, then started again on its port. */
    async function killServing(): Promise<GatewayProcess> {
      let victim: GatewayProcess | undefined
      await waitFor('the replica serving the stream', async () => {
        const open = await Promise.all(replicas.map(openStreams))
        victim = open[0] + open[1] === 1 ? replicas[open.indexOf(1)] : undefined
        return victim !== undefined
      })
      await victim!.stop('SIGKILL')
      return victim!
    }
    async function restart(victim: GatewayProcess) {
      replicas[replicas.indexOf(victim)] = await startGateway(t, victim.name, env, victim.port)
    }

    /** Publishes SCORES scores for `user` at a feed's pace, killing the serving replica at KILL_AT. */
    async function flowWithKill(user: string): Promise<{ items: string[]; ids: string[]; victim: GatewayProcess }> {
      const items: string[] = []
      const ids: string[] = []
      let victim: GatewayProcess | undefined
      for (let i = 0; i < SCORES; i++) {
        items.push(`${user}-${i}`)
        ids.push(await publisher.events.publish(score(user, `${user}-${i}`, 1, i), 'feed'))
        if (i === KILL_AT) victim = await killServing()
        await new Promise((resolve) => setTimeout(resolve, PACE_MS))
      }
      return { items, ids, victim: victim! }
    }

    const report = (t: Test, what: string, sent: string[], received: string[]) => {
      const duplicates = received.length - new Set(received).size
      t.comment(`${what}: scores sent ${sent.length}, received ${received.length}, duplicates ${duplicates}, lost ${sent.filter((s) => !received.includes(s)).length}`)
    }

    await t.test('the client: every score once, in id order, across the kill', async (t) => {
      const { page } = await openHarness(await browser.newContext(), origin, { sub: 'rd-client' })
      await page.evaluate('window.start({})')
      await waitSeen(page, 'seen.statuses.at(-1) === "live"')
      const { items, victim } = await flowWithKill('rd-client')
      await waitSeen(page, `seen.scores.length >= ${SCORES}`)
      const got = await seen(page)
      const received = got.scores.map((e) => e.item_id)
      report(t, 'client', items, received)
      t.same(received, items, 'every score exactly once, in publish (= id) order')
      t.match(got.statuses.join(' '), /live retrying.* live$/, 'the page saw its stream go and come back')
      await page.evaluate('window.stop()')
      await restart(victim)
    })

    await t.test('a plain EventSource on a cookie session (withCredentials, across origins)', async (t) => {
      const { page } = await openHarness(await browser.newContext(), origin, { sub: 'rd-cookie' })
      await page.evaluate(`window.startEventSource(${JSON.stringify(await mint({ sub: 'rd-cookie', agent_id: 'ag-rd-cookie' }, { expiresIn: 600 }))})`)
      await waitSeen(page, 'seen.opens === 1')
      const { items, ids, victim } = await flowWithKill('rd-cookie')
      await waitSeen(page, `seen.events.length >= ${SCORES}`)
      const got = await seen(page)
      report(t, 'EventSource + cookie', items, got.events.map((e) => e.item_id))
      t.same(got.events.map((e) => e.item_id), items, 'every score exactly once, in order')
      t.same(got.events.map((e) => e.id), ids, 'with the ids the gateway gave them')
      t.ok(got.events.every((e, i) => i === 0 || compareEventIds(got.events[i - 1].id, e.id) < 0), 'ids strictly increasing')
      t.ok(got.opens >= 2, `the browser reconnected by itself (${got.opens} opens): the cookie outlives the connection`)
      await page.evaluate('window.stop()')
      await restart(victim)
    })

    await t.test('a client that has received nothing yet loses its replica: it gets the scores published meanwhile', async (t) => {
      const { page } = await openHarness(await browser.newContext(), origin, { sub: 'rd-fresh' })
      await page.evaluate('window.start({})')
      await waitSeen(page, 'seen.statuses.at(-1) === "live"')
      // Its reconnect waits until the scores are out, so they are published while it is away.
      let release: () => void = () => {}
      const published = new Promise<void>((resolve) => (release = resolve))
      await holdStreams(page, published)
      const victim = await killServing()
      await waitSeen(page, 'seen.statuses.at(-1) === "retrying"')
      const items = Array.from({ length: 5 }, (_, i) => `rd-fresh-${i}`)
      for (const [i, item] of items.entries()) await publisher.events.publish(score('rd-fresh', item, 1, i), 'feed')
      release()
      await waitSeen(page, 'seen.statuses.at(-1) === "live"')
      await waitSeen(page, 'seen.scores.length >= 5', 10_000).catch(() => {}) // what arrived is compared below
      t.same((await seen(page)).scores.map((e) => e.item_id), items, 'all five, resumed from the position of its first message')
      await page.evaluate('window.stop()')
      await restart(victim)
    })
  })
}

/** Holds the page's stream requests until `until` settles (then they go out as they were). */
async function holdStreams(page: Page, until: Promise<void>): Promise<void> {
  await page.route('**/events/personalized-rating**', async (route) => {
    await until
    await route.continue()
  })
}
