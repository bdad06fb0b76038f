/**
 * Real Chromium (playwright-core, /usr/bin/chromium) and pages on origins of their own, for the
 * browser tests: a page imports the gateway's /client.js, as a page of an application would.
 */
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import type { Teardown } from './app.js'
import { mint } from './tokens.js'

export const CHROMIUM = '/usr/bin/chromium'
export const SKIP_BROWSER = process.env.SKIP_BROWSER === '1'

export async function launchBrowser(t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking']
  })
  t.teardown(() => browser.close())
  return browser
}

/**
 * A static server on a free loopback port that serves `html` at every path: an application's
 * page on an origin of its own (`http://127.0.0.1:<port>`). Returns that origin. `html` may be a
 * function, read at each request: the gateway's URL may be known only once its origin is.
 */
export async function pageServer(t: Teardown, html: string | (() => string)): Promise<string> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
    res.end(typeof html === 'string' ? html : html())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    server.closeAllConnections()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** What a harness page has seen, read with `seen(page)`. */
export interface Seen {
  scores: { user_id: string; item_id: string; rating: number; timestamp: number }[]
  statuses: string[]
  codes: (number | null)[]
  gaps: number
  /** The cards (item → shown rating) at each onGap. */
  cardsAtGap: Record<string, string>[]
  /** Plain EventSource: messages with their lastEventId, and how often it (re)opened. */
  events: { id: string; item_id: string }[]
  opens: number
  /** performance.now() of the page when each score arrived. */
  times: number[]
}

/**
 * A page that imports the client from `gateway` and offers the test:
 * `start(options)` (subscribe; getToken is the test's `getToken` exposed function, omitted with
 * `cookie: true`), `startEventSource(token)` (POST /v1/sse-session, then a plain EventSource with
 * credentials), `stop()`, cards `[data-item] .rating` painted from onScore, and `window.seen`.
 */
export function harnessPage(gateway: string): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>app</title></head><body><main id="cards"></main>
<script type="module">
import * as client from '${gateway}/client.js'
window.client = client
window.gateway = '${gateway}'
const seen = (window.seen = { scores: [], statuses: [], codes: [], gaps: 0, cardsAtGap: [], events: [], opens: 0, times: [] })
const cards = () => Object.fromEntries([...document.querySelectorAll('[data-item]')].map((c) => [c.dataset.item, c.querySelector('.rating').textContent]))
function paint(e) {
  let card = document.querySelector('[data-item="' + e.item_id + '"]')
  if (!card) {
    card = document.createElement('article')
    card.dataset.item = e.item_id
    card.innerHTML = '<p class="rating"></p>'
    document.querySelector('#cards').append(card)
  }
  card.querySelector('.rating').textContent = e.rating.toFixed(1)
}
window.start = ({ cookie, ...options }) => {
  window.sub = client.subscribe({
    url: '${gateway}',
    ...options,
    getToken: cookie ? undefined : () => window.getToken(),
    onScore: (e) => {
      seen.scores.push(e)
      seen.times.push(performance.now())
      paint(e)
    },
    onGap: () => {
      seen.gaps++
      seen.cardsAtGap.push(cards())
    },
    onStatus: (status, code) => {
      seen.statuses.push(status)
      seen.codes.push(code ?? null)
    }
  })
}
window.startEventSource = async (token) => {
  const res = await fetch('${gateway}/v1/sse-session', { method: 'POST', headers: { authorization: 'Bearer ' + token }, credentials: 'include' })
  if (!res.ok) throw new Error('sse-session ' + res.status)
  const source = (window.source = new EventSource('${gateway}/events/personalized-rating', { withCredentials: true }))
  source.onopen = () => seen.opens++
  source.onmessage = (m) => seen.events.push({ id: m.lastEventId, item_id: JSON.parse(m.data).item_id })
}
window.stop = () => {
  window.sub?.close()
  window.source?.close()
}
window.ready = true
</script></body></html>`
}

/** Opens the harness page at `origin` in `context`, with `getToken` minting tokens for `sub`; `errors`: the page's uncaught errors. */
export async function openHarness(
  context: BrowserContext,
  origin: string,
  token: { sub: string; agent?: string; expiresIn?: number }
): Promise<{ page: Page; issued: string[]; errors: string[] }> {
  const page = await context.newPage()
  const issued: string[] = []
  await page.exposeFunction('getToken', async () => {
    const jwt = await mint({ sub: token.sub, agent_id: token.agent ?? `ag-${token.sub}` }, { expiresIn: token.expiresIn ?? 600 })
    issued.push(jwt)
    return jwt
  })
  const errors: string[] = []
  page.on('pageerror', (err) => errors.push(err.message))
  await page.goto(origin)
  await page.waitForFunction('window.ready === true', undefined, { timeout: 20_000 })
  return { page, issued, errors }
}

export const seen = (page: Page): Promise<Seen> => page.evaluate('window.seen') as Promise<Seen>

/** Waits (bounded polling in the page) until `predicate` over `window.seen` holds. */
export async function waitSeen(page: Page, predicate: string, timeout = 20_000): Promise<void> {
  await page.waitForFunction(`(() => { const seen = window.seen; return ${predicate} })()`, undefined, { timeout, polling: 50 })
}

export interface NetworkEntry {
  url: string
  method: string
  status: number
  headers: Record<string, string>
  /** `h2`, `http/1.1`… */
  protocol: string
  /** `Preflight` for CORS preflights. */
  type: string
}

/**
 * Every response the page's network stack received (preflights included, which Playwright's own
 * events leave out), read from the DevTools protocol: headers with lower-case names.
 */
export async function networkLog(page: Page): Promise<NetworkEntry[]> {
  const cdp = await page.context().newCDPSession(page)
  const log: NetworkEntry[] = []
  const methods = new Map<string, string>()
  cdp.on('Network.requestWillBeSent', (e) => methods.set(e.requestId, e.request.method))
  cdp.on('Network.responseReceived', (e) => {
    log.push({
      url: e.response.url,
      method: methods.get(e.requestId) ?? (e.type === 'Preflight' ? 'OPTIONS' : ''),
      status: e.response.status,
      headers: Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), String(v)])),
      protocol: e.response.protocol ?? '',
      type: e.type
    })
  })
  await cdp.send('Network.enable')
  return log
}
