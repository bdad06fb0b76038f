// The gateway's counters, read every second from GET /demo/state (which reads the metrics
// registry that GET /metrics exposes: moltbridge_moltbook_reconnects_total,
// moltbridge_moltbook_messages_total{result="invalid"}, moltbridge_forward_attempts_total by
// outcome, moltbridge_bucket_decisions_total{result="limited"} by action,
// moltbridge_sse_streams_open), plus the feed, OpenClaw and forward-queue readouts.

const $ = (selector) => document.querySelector(selector)

function row(list, key, label, value) {
  let dd = list.querySelector(`[data-counter="${key}"]`)
  if (!dd) {
    list.append(Object.assign(document.createElement('dt'), { textContent: label }))
    dd = Object.assign(document.createElement('dd'), { textContent: '0' })
    dd.dataset.counter = key
    list.append(dd)
  }
  dd.textContent = String(Math.round(value))
}

const byKey = (record) => Object.entries(record).sort(([a], [b]) => a.localeCompare(b))

export function showCounters(list, { counters }) {
  row(list, 'reconnects', 'Moltbook reconnects', counters.reconnects)
  row(list, 'invalid', 'invalid feed messages', counters.invalidMessages)
  row(list, 'streams', 'open streams', counters.openStreams)
  for (const [outcome, n] of byKey(counters.forwardAttempts)) row(list, `forward-${outcome}`, `forward attempts ${outcome}`, n)
  for (const action of ['rest', 'read', 'forward', 'delivery']) {
    row(list, `limited-${action}`, `refused by bucket: ${action}`, counters.limited[action] ?? 0)
  }
}

export function showSystem(state) {
  const feed = $('[data-feed]')
  feed.dataset.feed = state.feed.connected ? 'connected' : 'reconnecting'
  feed.textContent = state.feed.connected ? `connected (socket #${state.feed.connections})` : 'reconnecting…'
  const openclaw = $('[data-openclaw]')
  openclaw.dataset.openclaw = state.openclaw.down ? 'down' : 'up'
  openclaw.textContent = state.openclaw.down ? `down, back in ${Math.ceil(state.openclaw.outageEndsInMs / 1000)} s` : 'up'
  $('[data-queue-depth]').textContent = String(state.queueDepth)
}
