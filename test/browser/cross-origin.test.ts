/**
 * A page on another origin uses the gateway through the client (GET /client.js): with its origin
 * in CORS_ORIGINS it gets its scores; from an origin not on the list it gets none, and the gateway
 * sent that page no Access-Control-Allow-Origin. Real Chromium, a real static server per origin.
 */
import t from 'tap'
import { buildTestApp } from '../helpers/app.js'
import { harnessPage, launchBrowser, networkLog, openHarness, pageServer, seen, SKIP_BROWSER, waitSeen } from '../helpers/browser.js'
import { freePort } from '../helpers/ports.js'
import { score } from '../helpers/sse.js'
import { waitFor } from '../helpers/wait.js'

if (SKIP_BROWSER) {
  t.plan(0, 'SKIP_BROWSER=1')
} else {
  t.test('CORS_ORIGINS: the listed origin streams through the client, another origin gets nothing', async (t) => {
    // Two applications on origins of their own; the page is the same, the gateway knows one of them.
    const port = await freePort()
    const gateway = `http://127.0.0.1:${port}`
    const listed = await pageServer(t, harnessPage(gateway))
    const unlisted = await pageServer(t, harnessPage(gateway))
    const app = await buildTestApp(t, { CORS_ORIGINS: listed })
    await app.listen({ port, host: '127.0.0.1' })
    const browser = await launchBrowser(t)

    const context = await browser.newContext()
    const good = await openHarness(context, listed, { sub: 'xo-user' })
    const goodNetwork = await networkLog(good.page)
    const bad = await openHarness(await browser.newContext(), unlisted, { sub: 'xo-user' })
    const badNetwork = await networkLog(bad.page)
    for (const { page } of [good, bad]) await page.evaluate('window.start({ items: ["xo-1", "xo-2", "xo-3"] })')

    await waitSeen(good.page, 'seen.statuses.at(-1) === "live"')
    await waitSeen(bad.page, 'seen.statuses.includes("retrying")')
    const published = [score('xo-user', 'xo-1', 1.5, 1), score('xo-user', 'xo-2', 2.5, 2), score('xo-user', 'xo-3', 3.5, 3)]
    for (const event of published) await app.events.publish(event, 'rest')
    await waitSeen(good.page, 'seen.scores.length === 3')
    t.same((await seen(good.page)).scores, published, `${listed} (listed): every score, in order`)
    t.equal(await good.page.locator('[data-item="xo-3"] .rating').textContent(), '3.5', 'and on its card')

    // The listed page's ticket call went through a preflight that allowed it, with credentials.
    const preflight = goodNetwork.find((e) => e.type === 'Preflight' && e.url.includes('/v1/sse-tickets'))
    t.equal(preflight?.headers['access-control-allow-origin'], listed, 'its preflight was allowed')
    const stream = goodNetwork.find((e) => e.url.includes('/events/personalized-rating') && e.status === 200)
    t.equal(stream?.headers['access-control-allow-origin'], listed, 'and so was its stream')

    // The other page: its client keeps trying, receives nothing, and the gateway allowed it nothing.
    const preflights = () => badNetwork.filter((e) => e.type === 'Preflight').length
    await waitFor('two attempts of the other page', () => preflights() >= 2)
    const other = await seen(bad.page)
    t.same(other.scores, [], `${unlisted} (not listed): no score`)
    t.notOk(other.statuses.includes('live'), 'never live')
    const answers = badNetwork.filter((e) => e.url.startsWith(gateway) && !e.url.endsWith('/client.js'))
    t.ok(answers.some((e) => e.type === 'Preflight'), `the gateway answered its preflights (${answers.length} answers seen)`)
    t.same(
      answers.filter((e) => 'access-control-allow-origin' in e.headers).map((e) => e.url),
      [],
      'none of them carried Access-Control-Allow-Origin'
    )
    t.same([...good.errors, ...bad.errors], [], 'no uncaught page error')
  })
}
