// The demo page: one card per item for the chosen user, painted from GET /v1/scores, then kept
// live by the SSE stream (authenticated by the HttpOnly cookie that POST /demo/login sets).

const grid = document.querySelector('#grid')
const userSelect = document.querySelector('#user')
const statusEl = document.querySelector('#status')
const rateEl = document.querySelector('#rate')
const latencyEl = document.querySelector('#latency')
const cardTemplate = document.querySelector('#card')

const cards = new Map() // item_id -> card element
let catalog = { users: [], items: [] }
let source = null // the open EventSource
let lastId = '' // last event id seen, to resume after a re-login
let eventsThisSecond = 0
const latencies = [] // recent publish→screen times, ms

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

/** An event id is `<publish ms>-<seq>`: measure from publish to the frame that shows it. */
function measure(id) {
  const publishedMs = Number(/^(\d+)-\d+$/.exec(id)?.[1])
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
}, 1000)

async function login(user) {
  const body = JSON.stringify({ user_id: user })
  return fetchJson('/demo/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body })
}

/** Paints the latest known scores so the page is not empty until the next event. */
async function paintLatest(token) {
  const items = encodeURIComponent(catalog.items.join(','))
  const { scores } = await fetchJson(`/v1/scores?items=${items}`, { headers: { authorization: `Bearer ${token}` } })
  for (const event of scores) show(event)
}

function openStream() {
  source?.close()
  setStatus('connecting')
  const url = new URL('/events/personalized-rating', location.href)
  if (lastId) url.searchParams.set('lastEventId', lastId)
  source = new EventSource(url)
  source.onopen = () => setStatus('live')
  source.onmessage = (message) => {
    lastId = message.lastEventId
    eventsThisSecond += 1
    show(JSON.parse(message.data))
    measure(message.lastEventId)
  }
  // EventSource retries by itself (with Last-Event-ID); CLOSED means the gateway refused it.
  source.onerror = () => {
    if (source.readyState !== EventSource.CLOSED) return setStatus('reconnecting')
    setStatus('closed')
    setTimeout(() => start(userSelect.value, { resume: true }), 3000)
  }
  // The token ran out mid-stream: log in again and resume from the last id.
  source.addEventListener('expired', () => start(userSelect.value, { resume: true }))
  // Some scores fell out of the history: repaint from the latest ones instead of guessing.
  source.addEventListener('gap', () => start(userSelect.value, { resume: false }))
}

async function start(user, { resume } = { resume: false }) {
  source?.close()
  setStatus('connecting')
  if (!resume) lastId = ''
  try {
    const { token } = await login(user)
    await paintLatest(token).catch((err) => console.warn('no pre-paint:', err.message))
    openStream()
  } catch (err) {
    console.error(err)
    setStatus('reconnecting')
    setTimeout(() => start(user, { resume }), 3000)
  }
}

function switchUser() {
  for (const card of cards.values()) card.remove()
  cards.clear()
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
