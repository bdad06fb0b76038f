// The demo page: one card per item for the chosen user, kept live by the browser client
// (/client.js): it paints from GET /v1/scores, opens the stream with a ticket per connection,
// resumes by id across reconnects and token renewals, and shares one stream between tabs.

import { subscribe } from '/client.js'

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
      if (id === undefined) return // painted from /v1/scores, not a live event
      eventsThisSecond += 1
      measure(id)
    },
    onStatus: (status) => setStatus(status)
  })
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
