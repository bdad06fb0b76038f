/**
 * The demo page in a real Chromium against the whole demo stack (`startDemo`, as `npm run demo`):
 * simulated feed → gateway → OpenClaw simulator → SSE → cards on screen.
 * Needs /usr/bin/chromium (CI installs it); SKIP_BROWSER=1 skips this file on purpose.
 */
import { existsSync, statSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'
import t from 'tap'
import { SESSION_COOKIE } from '../../src/auth/session.js'
import { DEMO_ITEMS, DEMO_USERS, mintDemoToken } from '../../src/demo-world.js'
import { startDemo, type Demo } from '../../src/demo.js'
import { OUTAGE_MS } from '../../src/demo-controls.js'
import type { Rating } from '../../src/rating.js'
import { personalize } from '../../src/simulators/openclaw.js'

const CHROMIUM = '/usr/bin/chromium'
const WAIT = { timeout: 20_000 }
/**
 * Where the screenshot goes: a scratch file, or the README's (committed) with
 * `DEMO_SCREENSHOT=docs/demo.png`, so a test run leaves the tree clean.
 */
const SCREENSHOT = resolve(process.env.DEMO_SCREENSHOT ?? join(tmpdir(), `moltbridge-demo-${process.pid}.png`))

const ratingOf = (page: Page, item: string) => page.locator(`[data-item="${item}"] .rating`).textContent()

const exactly = (text: string) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)

/** Waits (bounded) until an element matching `selector` shows `text`. */
async function waitText(page: Page, selector: string, text: string | RegExp) {
  await page.locator(selector, { hasText: typeof text === 'string' ? exactly(text) : text }).first().waitFor(WAIT)
}

const waitLive = (page: Page) => waitText(page, '#status', 'live')
const waitAnyScore = (page: Page) => waitText(page, '.rating', /^\d\.\d$/)

/** Polls (every 250 ms, bounded) until `check` holds: a correctness wait, never a speed check. */
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 250))
  }
}

const numberIn = async (page: Page, selector: string) => Number(await page.locator(selector).first().textContent())
const attributeOf = async (page: Page, selector: string, name: string) => page.locator(selector).first().getAttribute(name)

/** The gateway's own count of `rest` bucket decisions by result (what the burst's answers were). */
async function restDecisions(demo: Demo): Promise<Record<string, number>> {
  const counts: Record<string, number> = {}
  for (const { labels, value } of (await demo.app.metrics.bucketDecisions.get()).values) {
    if (labels.action === 'rest') counts[String(labels.result)] = value
  }
  return counts
}

/** Per card: [item, scores received, ratings the feed sent] as the page shows them. */
const cardCounts = (page: Page) =>
  page.locator('[data-item]').evaluateAll((cards) =>
    cards.map((c) => [c.getAttribute('data-item'), Number(c.getAttribute('data-received')), Number(c.getAttribute('data-sent'))] as const)
  )

if (process.env.SKIP_BROWSER === '1') {
  t.plan(0, 'SKIP_BROWSER=1')
} else {
  // One demo and one Chromium for every case below (a launch is expensive on a loaded machine).
  t.setTimeout(300_000)
  t.ok(existsSync(CHROMIUM), `${CHROMIUM} is installed (apt-get install -y chromium, or SKIP_BROWSER=1)`)
  const demo = await startDemo({ port: 0, logLevel: 'silent' })
  t.teardown(() => demo.close())
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']
  })
  t.teardown(() => browser.close())

  t.test('the demo page shows live personalized scores', async (t) => {
    const page = await browser.newPage()
    t.teardown(() => page.close())
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))

    // The feed rates the demo users: the first user's cards fill with one-decimal scores.
    await page.goto(demo.url)
    await page.locator('[data-item]').nth(DEMO_ITEMS.length - 1).waitFor(WAIT)
    t.same(await page.locator('[data-item]').evaluateAll((cards) => cards.map((c) => c.getAttribute('data-item'))), DEMO_ITEMS)
    await waitLive(page)
    await waitAnyScore(page)
    t.pass('a card shows a score with one decimal')
    await waitText(page, '#latency', /^\d+ ms$/)
    t.pass('publish→screen latency is shown')

    // Switching user logs in again and reopens the stream for that user.
    await page.selectOption('#user', DEMO_USERS[1])
    await waitLive(page)
    t.match(page.url(), new RegExp(`\\?user=${DEMO_USERS[1]}$`))
    await waitAnyScore(page)

    // A user the feed never rates: only the ratings sent below reach its cards.
    const user = 'quiet-user'
    const token = await mintDemoToken(demo.app.config, user)
    const postRating = async (rating: Rating) => {
      const res = await fetch(new URL('/v1/rating', demo.url), {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(rating)
      })
      t.equal(res.status, 200, `POST /v1/rating ${rating.item_id}`)
    }
    const rated = (item: string, rating: number): Rating => ({ user_id: user, item_id: item, timestamp: Math.floor(Date.now() / 1000), rating })
    const scoreOf = (rating: Rating) => personalize(rating).rating.toFixed(1)

    // Scored before the page opens: painted from GET /v1/scores.
    const before = rated(DEMO_ITEMS[4], 1.2)
    await postRating(before)
    await page.goto(`${demo.url}?user=${user}`)
    await waitLive(page)
    await waitText(page, `[data-item="${before.item_id}"] .rating`, scoreOf(before))
    t.pass(`a score from before the page opened is painted: ${scoreOf(before)}`)
    t.equal(await ratingOf(page, DEMO_ITEMS[0]), '–', 'no score yet on an unrated item')

    // Through the feed, live: Moltbook → forwarder → OpenClaw → SSE.
    const fromFeed = rated(DEMO_ITEMS[2], 3.3)
    demo.moltbook.send(fromFeed)
    await waitText(page, `[data-item="${fromFeed.item_id}"] .rating`, scoreOf(fromFeed))
    t.pass(`the feed rating shows as its personalized score ${scoreOf(fromFeed)} on its card`)

    // Through the REST proxy, live.
    const fromRest = rated(DEMO_ITEMS[6], 4.4)
    await postRating(fromRest)
    await waitText(page, `[data-item="${fromRest.item_id}"] .rating`, scoreOf(fromRest))
    t.pass(`the REST rating shows as its personalized score ${scoreOf(fromRest)} on its card`)

    t.equal(await ratingOf(page, DEMO_ITEMS[0]), '–', 'other cards untouched')
    t.equal(await page.locator('#status').textContent(), 'live')
    t.notMatch(await page.evaluate('document.cookie'), SESSION_COOKIE, 'the session cookie is HttpOnly')
    t.same(pageErrors, [], 'no script errors on the page')
  })
  t.test('the demo shows the system at work', async (t) => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } })
    t.teardown(() => page.close())
    const pageErrors: string[] = []
    page.on('pageerror', (err) => pageErrors.push(err.message))
    await page.goto(`${demo.url}?user=${demo.user}`)
    await waitLive(page)
    await page.locator('#controls').waitFor(WAIT)
    await page.locator('#panels').waitFor(WAIT)

    await t.test('feed→screen latency: a chart with points and a p99 in ms', async (t) => {
      await until('a p99 readout', async () => Number.isFinite(await numberIn(page, '[data-latency-p99]')))
      const p99 = await numberIn(page, '[data-latency-p99]')
      t.ok(Number.isFinite(p99) && p99 > 0, `p99 is a number of ms: ${p99}`)
      await until('points on the latency chart', async () => Number(await attributeOf(page, 'svg[data-chart="latency"]', 'data-points')) > 0)
      t.ok(await page.locator('svg[data-chart="latency"] .guide').count(), 'the 100 ms line is drawn')
    })

    await t.test('Burst 50: the page shows what the gateway answered, and the rest bucket drops and refills', async (t) => {
      await until('a full rest bucket', async () => (await numberIn(page, '[data-bucket-rest]')) === 40)
      const before = await restDecisions(demo)
      await page.click('button[data-action="burst"]')
      await until('the burst outcome', async () => /^\d+$/.test((await page.locator('[data-burst-refused]').textContent()) ?? ''))
      const admitted = await numberIn(page, '[data-burst-admitted]')
      const refused = await numberIn(page, '[data-burst-refused]')
      t.equal(admitted + refused, 50, `admitted ${admitted} + refused ${refused}`)
      t.ok(admitted >= 40, 'the 40 tokens, plus whatever refilled during the burst')
      const after = await restDecisions(demo)
      t.equal(admitted, (after.allowed ?? 0) - (before.allowed ?? 0), 'admitted: as many as the gateway allowed')
      t.equal(refused, (after.limited ?? 0) - (before.limited ?? 0), 'refused: as many as the gateway limited')
      const retryAfter = ((await attributeOf(page, '#burst-detail', 'data-retry-after')) ?? '').split(',').filter(Boolean).map(Number)
      t.equal(retryAfter.length, refused, 'a Retry-After per refusal')
      t.ok(retryAfter.every((s) => s >= 1), `each refusal says when to retry: ${[...new Set(retryAfter)].join(', ')} s`)
      t.comment(`burst: admitted ${admitted}, refused ${refused}`)

      await until('the rest chart to show the drop', async () => Number(await attributeOf(page, 'svg[data-chart="rest"]', 'data-min')) < 20)
      await until('the rest bucket to refill', async () => (await numberIn(page, '[data-bucket-rest]')) === 40)
      t.pass('the rest bucket dropped and refilled')
    })

    await t.test('OpenClaw outage: the queue grows and drains, and no card misses a score', async (t) => {
      await page.click('button[data-action="outage"]')
      await page.locator('[data-openclaw="down"]').waitFor(WAIT)
      await until('the queue to grow', async () => (await numberIn(page, '[data-queue-depth]')) > 0, OUTAGE_MS + 20_000)
      t.pass('the forward queue grows while OpenClaw is down')
      await page.locator('[data-openclaw="up"]').waitFor({ timeout: OUTAGE_MS + 30_000 })
      await until('the queue to drain', async () => (await numberIn(page, '[data-queue-depth]')) === 0, 90_000)
      t.pass('the queue drains once OpenClaw is back')
      // The feed stops so the count can settle: every rating it sent must reach its card.
      demo.moltbook.setRate(0)
      t.teardown(() => demo.moltbook.setRate(20))
      let counts = await cardCounts(page)
      await until('every card to have each score the feed sent', async () => {
        counts = await cardCounts(page)
        return counts.every(([, received, sent]) => received === sent)
      }, 60_000).catch((err: Error) => t.fail(`${err.message}: ${JSON.stringify(counts)}`))
      const sent = counts.reduce((sum, [, , n]) => sum + n, 0)
      t.ok(sent > 0, `the feed sent ${sent} ratings for ${demo.user} meanwhile`)
      t.ok(counts.every(([, received, n]) => received === n), 'no card fell behind the feed')
      demo.moltbook.setRate(20)
    })

    await t.test('dropping the Moltbook socket: the gateway reconnects', async (t) => {
      const connections = demo.moltbook.connections
      await page.click('button[data-action="drop-socket"]')
      await until('a reconnect', async () => demo.moltbook.connections > connections && demo.moltbook.clients() > 0)
      await until('the reconnect counter', async () => (await numberIn(page, '[data-counter="reconnects"]')) >= 1)
      await page.locator('[data-feed="connected"]').waitFor(WAIT)
      t.pass('reconnected, and the page says so')
    })

    await t.test('a screenshot of the whole page, for the README', async (t) => {
      await waitAnyScore(page)
      for (const region of ['#controls', '#panels', '#latency-panel', '#buckets-panel', '#queue-panel', '#metrics-panel', '#grid']) {
        t.ok(await page.locator(region).isVisible(), `${region} is visible`)
      }
      await mkdir(dirname(SCREENSHOT), { recursive: true })
      await page.screenshot({ path: SCREENSHOT, fullPage: true })
      t.ok(statSync(SCREENSHOT).size > 20_000, `${SCREENSHOT} is not blank (${statSync(SCREENSHOT).size} bytes)`)
    })

    t.same(pageErrors, [], 'no script errors on the page')
  })
}
