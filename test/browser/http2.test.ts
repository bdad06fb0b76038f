/**
 * HTTP/2 at the edge: through nginx with TLS + http2, one Chromium page opens ten streams and all
 * ten are live (one connection carries them). The control: the same page over HTTP/1.1 gets six
 * (the browser's connections per origin); the seventh hangs. Real Chromium, nginx, Redis.
 */
import type { Page } from 'playwright-core'
import t from 'tap'
import { buildTestApp, listen } from '../helpers/app.js'
import { harnessPage, launchBrowser, networkLog, openHarness, pageServer, SKIP_BROWSER } from '../helpers/browser.js'
import { metricValue } from '../helpers/metrics.js'
import { startNginx } from '../helpers/nginx.js'
import { score } from '../helpers/sse.js'
import { selfSignedCertificate } from '../helpers/tls.js'
import { waitFor } from '../helpers/wait.js'

const STREAMS = 10

/** Opens STREAMS unshared subscriptions in the page; `window.many[i]` holds each one's status and score count. */
function openMany(page: Page): Promise<void> {
  return page.evaluate(`window.many = Array.from({ length: ${STREAMS} }, () => {
    const state = { status: '', scores: 0 }
    state.sub = window.client.subscribe({ url: window.gateway, shared: false, getToken: () => window.getToken(),
      onScore: () => state.scores++, onStatus: (status) => (state.status = status) })
    return state
  })`)
}
const states = (page: Page) => page.evaluate('window.many.map(({ status, scores }) => ({ status, scores }))') as Promise<{ status: string; scores: number }[]>
const live = async (page: Page) => (await states(page)).filter((s) => s.status === 'live').length

if (SKIP_BROWSER) {
  t.plan(0, 'SKIP_BROWSER=1')
} else {
  t.test('ten streams from one page: all live over HTTP/2; six over HTTP/1.1', async (t) => {
    let lbUrls = { h2: '', h1: '' }
    const h2Origin = await pageServer(t, () => harnessPage(lbUrls.h2))
    const h1Origin = await pageServer(t, () => harnessPage(lbUrls.h1))
    const app = await buildTestApp(t, { CORS_ORIGINS: `${h2Origin},${h1Origin}` })
    const upstream = new URL(await listen(app)).host
    const lb = await startNginx(t, [upstream], { tls: await selfSignedCertificate(t) })
    lbUrls = { h2: lb.tlsUrl ?? '', h1: lb.url }
    const browser = await launchBrowser(t)
    const context = await browser.newContext({ ignoreHTTPSErrors: true }) // the test's self-signed certificate
    const open = () => metricValue(app.metrics.sseOpen)

    await t.test('TLS + http2 through nginx: all ten live, each gets the score', async (t) => {
      const { page } = await openHarness(context, h2Origin, { sub: 'h2-page' })
      const network = await networkLog(page)
      await openMany(page)
      await waitFor('ten live', async () => (await live(page)) === STREAMS)
      t.equal(await open(), STREAMS, 'ten streams open on the gateway')
      await app.events.publish(score('h2-page', 'h2-item', 4.2), 'rest')
      await waitFor('every stream has the score', async () => (await states(page)).every((s) => s.scores === 1))
      const protocols = new Set(network.filter((e) => e.url.startsWith(lb.tlsUrl ?? '-')).map((e) => e.protocol))
      t.same([...protocols], ['h2'], 'every answer of the gateway came over HTTP/2')
      await page.evaluate('window.many.forEach((s) => s.sub.close())')
      await waitFor('closed', async () => (await open()) === 0)
    })

    await t.test('the control, HTTP/1.1 through nginx: six live, the seventh hangs', async (t) => {
      const { page } = await openHarness(context, h1Origin, { sub: 'h1-page' })
      const network = await networkLog(page)
      await openMany(page)
      await waitFor('six live', async () => (await live(page)) === 6)
      await app.events.publish(score('h1-page', 'h1-item', 4.2), 'rest')
      await waitFor('the six live streams have the score', async () => (await states(page)).filter((s) => s.scores === 1).length === 6)
      const now = await states(page)
      t.equal(now.filter((s) => s.status === 'live').length, 6, 'six live')
      t.same(now.filter((s) => s.status !== 'live').map((s) => s.status), Array(STREAMS - 6).fill('connecting'), 'the other four still waiting for a connection')
      t.equal(now.filter((s) => s.scores > 0).length, 6, 'only the six got the score')
      t.equal(await open(), 6, 'six streams open on the gateway')
      t.ok(network.filter((e) => e.url.startsWith(lb.url)).every((e) => e.protocol === 'http/1.1'), 'over HTTP/1.1')
      await page.evaluate('window.many.forEach((s) => s.sub.close())')
    })
  })
}
