// The demo page: one card per item for the chosen user, kept live by the browser client
// (/client.js): it paints from GET /v1/scores, opens the stream with a ticket per connection,
// resumes by id across reconnects and token renewals, and shares one stream between tabs.
// Under `npm run demo` it also shows the system at work (GET /demo/state every second): feed→screen
// latency, the demo agent's buckets, the counters, and switches for a burst, an outage, a dropped socket.

import { subscribe } from '/client.js'
import { bucketModel, burst } from './buckets.js'
import { lineChart } from './chart.js'
import { latencyTracker } from './latency.js'
import { showCounters, showSystem } from './metrics.js'

const grid = document.querySelector('#grid')
const userSelect = document.querySelector('#user')
const statusEl = document.querySelector('#status')
const rateEl = document.querySelector('#rate')
const latencyEl = document.querySelector('#latency')
const cardTemplate = document.querySelector('#card')

const cards = new Map() // item_id -> card element
let catalog = { users: [], items: [] }
let subscription = null
let login = null // { user, token, renewAt }: the demo login, renewed a minute before it expires
let eventsThisSecond = 0
const latencies = [] // recent publish→screen times, ms

// What GET /demo/state tells: the feed ratings of the page's user since the stream went live.
const keyOf = (item, timestamp) => `${item}\u0000${timestamp}`
const feedKeys = new Set() // (item, timestamp) the feed sent for this user, since `cursor` was set
const shownKeys = new Set() // (item, timestamp) whose score this page showed
let cursor = null // GET /demo/state's position in the feed; null until the stream is first live
let wantBaseline = false
let controlsOn = false
const latency = latencyTracker()
const rest = bucketModel()
const delivery = bucketModel()
const chartOf = (name, options) => lineChart(document.querySelector(`[data-chart="${name}"]`), options)
const latencyChart = chartOf('latency', {
  series: [{ name: 'p50', color: '#1f9d55' }, { name: 'p95', color: '#d98e04' }, { name: 'p99', color: '#c53030' }],
  guides: [{ value: 100, label: 'seed: 100 ms' }],
  log: true,
  unit: ' ms'
})
const restChart = chartOf('rest', { series: [{ name: 'rest', color: '#2b6cb0' }], max: () => rest.capacity || 1, height: 90 })
const deliveryChart = chartOf('delivery', { series: [{ name: 'delivery', color: '#805ad5' }], max: () => delivery.capacity || 1, height: 90 })
const queueChart = chartOf('queue', { series: [{ name: 'queue', color: '#dd6b20' }] })

async function fetchJson(url, init) {
  const res = await fetch(url, init)
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: ${res.status}`)
  return res.json()
}

function setStatus(state) {
  statusEl.dataset.state = state
  statusEl.textContent = state
}

function cardFor(item) {
  let card = cards.get(item)
  if (!card) {
    card = cardTemplate.content.firstElementChild.cloneNode(true)
    card.dataset.item = item
    card.querySelector('.item').textContent = item
    card.dataset.received = card.dataset.sent = '0'
    grid.append(card)
    cards.set(item, card)
  }
  return card
}

function show(event) {
  const card = cardFor(event.item_id)
  card.querySelector('.rating').textContent = event.rating.toFixed(1)
  card.querySelector('.when').textContent = new Date(event.timestamp * 1000).toLocaleTimeString()
  card.classList.remove('flash')
  void card.offsetWidth // restart the CSS animation
  card.classList.add('flash')
}

/** One more feed score sent (`sent`) or shown (`received`) on the card of `item`. */
function bump(item, field) {
  const card = cardFor(item)
  card.dataset[field] = String(Number(card.dataset[field]) + 1)
  card.querySelector(`.${field}`).textContent = card.dataset[field]
}

/** A score on screen: counted against the feed's ratings, and timed when it came live. */
function seen(event, live) {
  const key = keyOf(event.item_id, event.timestamp)
  if (live) {
    delivery.spend()
    requestAnimationFrame(() => latency.shown(key, Date.now()))
  }
  if (shownKeys.has(key)) return
  shownKeys.add(key)
  if (feedKeys.has(key)) bump(event.item_id, 'received')
}

/** GET /demo/state: the feed ratings sent since the last call, the counters, the buckets' policies. */
async function poll() {
  const user = userSelect.value
  const baseline = cursor === null && wantBaseline
  const since = cursor === null ? '' : `&since=${cursor}`
  const res = await fetch(`/demo/state?user=${encodeURIComponent(user)}${since}`)
  if (!res.ok) return res.status !== 404 // 404: not `npm run demo`, no switches
  const state = await res.json()
  if (user !== userSelect.value) return true
  if (!controlsOn) {
    controlsOn = true
    for (const id of ['#controls', '#panels']) document.querySelector(id).hidden = false
  }
  if (baseline && cursor === null) [cursor, wantBaseline] = [state.cursor, false]
  else if (since && cursor !== null) {
    cursor = Math.max(cursor, state.cursor)
    for (const [item, timestamp, sentAt] of state.sent) {
      const key = keyOf(item, timestamp)
      if (feedKeys.has(key)) continue
      feedKeys.add(key)
      bump(item, 'sent')
      if (shownKeys.has(key)) bump(item, 'received')
      latency.sent(key, sentAt)
    }
  }
  rest.policy(state.policies.rest)
  delivery.policy(state.policies.delivery)
  document.querySelector('#bucket-agent').textContent = user
  document.querySelector('#rest-capacity').textContent = String(state.policies.rest.capacity)
  document.querySelector('#delivery-capacity').textContent = String(state.policies.delivery.capacity)
  showCounters(document.querySelector('#counters'), state)
  showSystem(state)
  queueChart.push([state.queueDepth])
  queueChart.render()
  return true
}

function showLatency() {
  const { p50, p95, p99 } = latency.percentiles()
  latencyChart.push([p50, p95, p99])
  latencyChart.render()
  for (const [name, value] of Object.entries({ p50, p95, p99 })) {
    document.querySelector(`[data-latency-${name}]`).textContent = Number.isFinite(value) ? String(Math.round(value)) : '–'
  }
}

function showBuckets() {
  for (const [name, model, chart] of [['rest', rest, restChart], ['delivery', delivery, deliveryChart]]) {
    if (!model.capacity) continue
    const level = model.level()
    chart.push([level])
    chart.render()
    document.querySelector(`[data-bucket-${name}]`).textContent = String(Math.floor(level))
  }
}

async function fireBurst(button) {
  button.disabled = true
  try {
    const user = userSelect.value
    const result = await burst({ token: await tokenFor(user), user })
    if (result.remaining.length) rest.known(Math.min(...result.remaining))
    showBuckets() // the low point itself, before the refill
    document.querySelector('[data-burst-admitted]').textContent = String(result.admitted)
    document.querySelector('[data-burst-refused]').textContent = String(result.refused)
    const detail = document.querySelector('#burst-detail')
    const waits = [...new Set(result.retryAfter)].sort().map((s) => `${s} s`).join(', ')
    detail.dataset.retryAfter = result.retryAfter.join(',')
    detail.textContent = (waits ? `(refused with Retry-After ${waits})` : '') + (result.failed ? ` ${result.failed} admitted failed at OpenClaw` : '')
  } finally {
    button.disabled = false
  }
}

async function post(url) {
  await fetch(url, { method: 'POST' })
  await poll()
}

document.querySelector('[data-action="burst"]').addEventListener('click', (e) => void fireBurst(e.currentTarget))
document.querySelector('[data-action="outage"]').addEventListener('click', () => void post('/demo/outage'))
document.querySelector('[data-action="drop-socket"]').addEventListener('click', () => void post('/demo/drop-socket'))

/** An event id is `<publish ms>-<seq>`: measure from publish to the frame that shows it. */
function measure(id) {
  const publishedMs = Number(/^(\d+)-\d+$/.exec(id ?? '')?.[1])
  if (!publishedMs) return
  requestAnimationFrame(() => {
    latencies.push(Date.now() - publishedMs)
    if (latencies.length > 100) latencies.shift()
  })
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

setInterval(() => {
  rateEl.textContent = String(eventsThisSecond)
  eventsThisSecond = 0
  if (latencies.length) latencyEl.textContent = `${median(latencies)} ms`
  if (controlsOn) showLatency()
}, 1000)
setInterval(() => controlsOn && showBuckets(), 250)
const poller = setInterval(() => {
  poll().then((on) => on || clearInterval(poller), () => {})
}, 1000)

/** The client's getToken: the demo login's token (which also sets the stream cookie), renewed before it expires. */
async function tokenFor(user) {
  if (login?.user !== user || Date.now() > login.renewAt) {
    const body = JSON.stringify({ user_id: user })
    const { token, expires_in } = await fetchJson('/demo/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    login = { user, token, renewAt: Date.now() + (expires_in - 60) * 1000 }
  }
  return login.token
}

function start(user) {
  subscription?.close()
  subscription = subscribe({
    getToken: () => tokenFor(user),
    items: catalog.items,
    onScore: (event, id) => {
      show(event)
      seen(event, id !== undefined)
      if (id === undefined) return // painted from /v1/scores, not a live event
      eventsThisSecond += 1
      measure(id)
    },
    onStatus: (status) => {
      setStatus(status)
      // The feed's ratings are counted from the stream's first opening on: all of those reach the page.
      if (status === 'live' && cursor === null && !wantBaseline) {
        wantBaseline = true
        poll().catch(() => {})
      }
    }
  })
}

function switchUser() {
  for (const card of cards.values()) card.remove()
  cards.clear()
  feedKeys.clear()
  shownKeys.clear()
  latency.reset()
  cursor = null
  wantBaseline = false
  for (const item of catalog.items) cardFor(item)
  history.replaceState(null, '', `?user=${encodeURIComponent(userSelect.value)}`)
  start(userSelect.value)
}

catalog = await fetchJson('/demo/users')
for (const user of catalog.users) userSelect.append(new Option(user, user))
// ?user= picks the user; one not in the catalog is added (a quiet user, handy for trying things).
const wanted = new URLSearchParams(location.search).get('user') ?? catalog.users[0]
if (!catalog.users.includes(wanted)) userSelect.append(new Option(wanted, wanted))
userSelect.value = wanted
userSelect.addEventListener('change', switchUser)
switchUser()
