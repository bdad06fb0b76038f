/**
 * The browser client (GET /client.js) in a real Chromium against real gateways: a token that
 * expires mid-stream, a gap larger than the history, and three tabs sharing one stream.
 * Replica deaths behind nginx: replica-death.test.ts; HTTP/2: http2.test.ts.
 */
import type { Page } from 'playwright-core'
import t from 'tap'
import { buildTestApp, deletePrefix, uniquePrefix, type Teardown } from '../helpers/app.js'
import { harnessPage, launchBrowser, openHarness, pageServer, seen, SKIP_BROWSER, waitSeen } from '../helpers/browser.js'
import { metricValue, scrape } from '../helpers/metrics.js'
import { freePort } from '../helpers/ports.js'
import { score } from '../helpers/sse.js'
import { waitFor } from '../helpers/wait.js'

/** A gateway on a port chosen first, and the page origin it lists in CORS_ORIGINS. */
async function gatewayAndPage(t: Teardown, env: Record<string, string> = {}) {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const origin = await pageServer(t, harnessPage(url))
  const all = { CORS_ORIGINS: origin, SSE_RETRY_MS: '100', ...env }
  const app = await buildTestApp(t, all)
  await app.listen({ port, host: '127.0.0.1' })
  return { app, url, origin, port, env: all }
}

const items = (page: Page) => seen(page).then((s) => s.scores.map((e) => e.item_id))
const openStreams = (url: string) => scrape(url, 'moltbridge_sse_streams_open')

if (SKIP_BROWSER) {
  t.plan(0, 'SKIP_BROWSER=1')
} else {
  t.test('a token that expires mid-stream: getToken again, no score lost', async (t) => {
    const { app, origin } = await gatewayAndPage(t)
    const browser = await launchBrowser(t)
    const { page, issued } = await openHarness(await browser.newContext(), origin, { sub: 'exp-user', expiresIn: 2 })
    await page.evaluate('window.start({})')
    await waitSeen(page, 'seen.statuses.at(-1) === "live"')
    const published: string[] = []
    for (let i = 0; i < 40; i++) {
      published.push(`e-${i}`)
      await app.events.publish(score('exp-user', `e-${i}`, 1, i), 'feed')
      await new Promise((resolve) => setTimeout(resolve, 100)) // a feed's pace, across expiries
    }
    await waitSeen(page, 'seen.scores.length >= 40')
    t.same(await items(page), published, 'every score once, in order')
    const expired = await metricValue(app.metrics.sseClosed, { reason: 'expired' })
    t.ok(expired >= 1, `the gateway ended ${expired} stream(s) with expired`)
    t.ok(issued.length >= 1 + expired, `getToken was asked again (${issued.length} tokens)`)
  })

  t.test('a gap larger than the history: onGap, and the cards already hold the latest scores', async (t) => {
    const KEY_PREFIX = uniquePrefix()
    t.teardown(() => deletePrefix(KEY_PREFIX))
    const serving = await gatewayAndPage(t, { KEY_PREFIX, HISTORY_MAX: '5', DRAIN_MS: '100' })
    const publisher = await buildTestApp(t, serving.env)
    const browser = await launchBrowser(t)
    const { page } = await openHarness(await browser.newContext(), serving.origin, { sub: 'gap-user' })
    const cards = ['g-0', 'g-1', 'g-2', 'g-3']
    await page.evaluate(`window.start({ items: ${JSON.stringify(cards)} })`)
    await waitSeen(page, 'seen.statuses.at(-1) === "live"')
    await publisher.events.publish(score('gap-user', 'g-0', 0.5, 0), 'feed')
    await waitSeen(page, 'seen.scores.length === 1')

    // The page's replica goes away; twelve scores (more than HISTORY_MAX) are published meanwhile.
    await serving.app.close()
    await waitSeen(page, 'seen.statuses.at(-1) === "retrying"')
    const latest: Record<string, string> = {}
    for (let i = 0; i < 12; i++) {
      const event = score('gap-user', cards[i % 4], 1 + i / 10, i + 1)
      latest[event.item_id] = event.rating.toFixed(1)
      await publisher.events.publish(event, 'feed')
    }
    const back = await buildTestApp(t, serving.env)
    await back.listen({ port: serving.port, host: '127.0.0.1' })

    await waitSeen(page, 'seen.gaps === 1')
    const { cardsAtGap } = await seen(page)
    t.same(cardsAtGap[0], latest, 'when onGap runs, every card shows its latest score (from /v1/scores)')
    const next = score('gap-user', 'g-2', 4.9, 99)
    await publisher.events.publish(next, 'feed')
    await page.locator('[data-item="g-2"] .rating', { hasText: '4.9' }).waitFor({ timeout: 20_000 })
    const final = await page.evaluate(`Object.fromEntries([...document.querySelectorAll('[data-item]')].map((c) => [c.dataset.item, c.querySelector('.rating').textContent]))`)
    t.same(final, { ...latest, 'g-2': '4.9' }, 'and live scores go on after it')
    t.equal((await seen(page)).gaps, 1, 'one gap')
  })

  t.test('three tabs of one origin share one stream; closing the holder hands over with no lost score', async (t) => {
    const { app, url, origin } = await gatewayAndPage(t, { SSE_HEARTBEAT_MS: '1000' })
    const browser = await launchBrowser(t)
    const context = await browser.newContext()
    const tabs: Page[] = []
    /** The tab whose own request opened each stream, and when (Date.now()). */
    const streamOpens: { tab: number; at: number }[] = []
    for (let i = 0; i < 3; i++) {
      const { page } = await openHarness(context, origin, { sub: 'tab-user' })
      page.on('request', (request) => {
        if (request.url().includes('/events/personalized-rating')) streamOpens.push({ tab: i, at: Date.now() })
      })
      tabs.push(page)
    }
    for (const page of tabs) await page.evaluate('window.start({})')
    for (const page of tabs) await waitSeen(page, 'seen.statuses.at(-1) === "live"')
    await waitFor('one stream open', async () => (await openStreams(url)) === 1)
    t.equal(streamOpens.length, 1, 'one tab opened a stream, the others listen')
    const holder = streamOpens[0].tab

    const published: string[] = []
    let closedAt = 0
    for (let i = 0; i < 80; i++) {
      published.push(`t-${i}`)
      await app.events.publish(score('tab-user', `t-${i}`, 1, i), 'feed')
      if (i === 30) {
        t.equal(await openStreams(url), 1, 'still one stream for three tabs')
        closedAt = Date.now()
        await tabs[holder].close() // the holder tab goes away mid-flow
      }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    const others = tabs.filter((_, i) => i !== holder)
    for (const page of others) await waitSeen(page, 'seen.scores.length >= 80')
    for (const page of others) t.same(await items(page), published, 'the remaining tab got every score once, in order')
    await waitFor('one stream open again', async () => (await openStreams(url)) === 1)
    const takeover = streamOpens.find((open) => open.at >= closedAt)
    t.ok(takeover && takeover.tab !== holder, `another tab took the stream over (tab ${takeover?.tab})`)
    // Measured, not asserted (the machine is shared): printed for the README and the report.
    const handoverMs = (takeover?.at ?? NaN) - closedAt
    const pauses = await Promise.all(
      others.map(async (page) => {
        const { times } = await seen(page)
        return Math.max(...times.slice(25, 40).map((time, i, all) => (i ? time - all[i - 1] : 0)))
      })
    )
    t.comment(`handover: the next tab opened the stream ${handoverMs} ms after the holder closed; longest pause between two scores (sent every 50 ms) in the remaining tabs: ${pauses.map(Math.round).join(' / ')} ms`)
  })
}
