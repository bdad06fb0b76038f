import { readFileSync } from 'node:fs'
import t from 'tap'
import { createMetrics } from '../../src/metrics.js'

const dashboard = JSON.parse(readFileSync(new URL('../../deploy/grafana/dashboards/moltbridge.json', import.meta.url), 'utf8')) as {
  panels: { title: string; targets: { expr: string }[] }[]
}

/** Names the gateway exports, including the series a histogram expands into. */
async function exportedNames(): Promise<Set<string>> {
  const metrics = createMetrics()
  const names = new Set<string>()
  for (const family of await metrics.registry.getMetricsAsJSON()) {
    names.add(family.name)
    if (String(family.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(family.name + s)
  }
  metrics.registry.clear()
  return names
}

t.test('every metric the Grafana dashboard queries is one the gateway exports', async (t) => {
  const exported = await exportedNames()
  const queried = new Set<string>()
  for (const panel of dashboard.panels)
    for (const target of panel.targets) for (const name of target.expr.match(/moltbridge_[a-z_]+/g) ?? []) queried.add(name)
  t.ok(queried.size >= 10, `the dashboard queries ${queried.size} metrics`)
  for (const name of queried) t.ok(exported.has(name), `${name} is exported`)
})

t.test('the dashboard covers what operators asked for', async (t) => {
  const exprs = dashboard.panels.flatMap((p) => p.targets.map((x) => x.expr)).join('\n')
  for (const needed of [
    'moltbridge_bucket_tokens_remaining',
    'result="limited"',
    'moltbridge_moltbook_reconnects_total',
    'moltbridge_moltbook_messages_total',
    'moltbridge_forward_duration_seconds',
    'moltbridge_sse_streams_open',
    'moltbridge_sse_events_conflated_total'
  ])
    t.match(exprs, needed)
})
