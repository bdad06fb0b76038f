/**
 * The demo page in a real Chromium against the whole demo stack (`startDemo`, as `npm run demo`):
 * simulated feed → gateway → OpenClaw simulator → SSE → cards on screen.
 * Needs /usr/bin/chromium (CI installs it); SKIP_BROWSER=1 skips this file on purpose.
 */
import { existsSync } from 'node:fs'
import { chromium, type Page } from 'playwright-core'
import t from 'tap'
import { SESSION_COOKIE } from '../../src/auth/session.js'
import { DEMO_ITEMS, DEMO_USERS, mintDemoToken } from '../../src/demo-world.js'
import { startDemo } from '../../src/demo.js'
import type { Rating } from '../../src/rating.js'
import { personalize } from '../../src/simulators/openclaw.js'

const CHROMIUM = '/usr/bin/chromium'
const WAIT = { timeout: 20_000 }

const ratingOf = (page: Page, item: string) => page.locator(`[data-item="${item}"] .rating`).textContent()

const exactly = (text: string) => new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)

/** Waits (bounded) until an element matching `selector` shows `text`. */
async function waitText(page: Page, selector: string, text: string | RegExp) {
  await page.locator(selector, { hasText: typeof text === 'string' ? exactly(text) : text }).first().waitFor(WAIT)
}

const waitLive = (page: Page) => waitText(page, '#status', 'live')
const waitAnyScore = (page: Page) => waitText(page, '.rating', /^\d\.\d$/)

if (process.env.SKIP_BROWSER === '1') {
  t.plan(0, 'SKIP_BROWSER=1')
} else {
  t.test('the demo page shows live personalized scores', async (t) => {
    t.ok(existsSync(CHROMIUM), `${CHROMIUM} is installed (apt-get install -y chromium, or SKIP_BROWSER=1)`)
    const demo = await startDemo({ port: 0, logLevel: 'silent' })
    t.teardown(() => demo.close())
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']
    })
    t.teardown(() => browser.close())
    const page = await browser.newPage()
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
}
