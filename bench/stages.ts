/**
 * Where a feed rating's latency accrues, from the gateway's own histograms (GET /metrics) taken
 * before and after a run: the checkpoints since it was read off Moltbook (queued, picked by a
 * forwarder, answered by OpenClaw, published) and the fan-out lag (publish → arrival on the
 * replica). Quantiles are interpolated within the histogram's buckets, as Prometheus does.
 */

/** Cumulative bucket counts (`le` in seconds → count) of one series. */
type Buckets = Map<number, number>

function series(text: string, name: string, label: string): Buckets {
  const buckets: Buckets = new Map()
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}_bucket{`) || (label && !line.includes(label))) continue
    const le = /le="([^"]+)"/.exec(line)?.[1] ?? ''
    buckets.set(le === '+Inf' ? Infinity : Number(le), Number(line.slice(line.lastIndexOf(' ') + 1)))
  }
  return buckets
}

/** The `q` quantile in ms of what was observed between two scrapes (NaN when nothing was). */
function quantileMs(before: Buckets, after: Buckets, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b)
  const counts = bounds.map((le) => (after.get(le) ?? 0) - (before.get(le) ?? 0))
  const total = counts.at(-1) ?? 0
  if (total === 0) return NaN
  const rank = q * total
  const at = counts.findIndex((count) => count >= rank)
  const [lower, upper] = [at > 0 ? bounds[at - 1] : 0, bounds[at]]
  // Past the last finite bound Prometheus answers that bound; so does this.
  if (!Number.isFinite(upper)) return lower * 1000
  const [below, inside] = [at > 0 ? counts[at - 1] : 0, counts[at] - (at > 0 ? counts[at - 1] : 0)]
  return (lower + ((upper - lower) * (rank - below)) / Math.max(1, inside)) * 1000
}

export interface StageLatency {
  stage: string
  p50: number
  p99: number
}

const STAGES: [stage: string, name: string, label: string][] = [
  ['queued', 'moltbridge_feed_stage_seconds', 'stage="queued"'],
  ['picked', 'moltbridge_feed_stage_seconds', 'stage="picked"'],
  ['answered', 'moltbridge_feed_stage_seconds', 'stage="answered"'],
  ['published', 'moltbridge_feed_to_publish_seconds', ''],
  ['fan-out lag', 'moltbridge_fanout_lag_seconds', '']
]

/** p50 and p99 (ms) of each stage between two scrapes of a gateway's /metrics. */
export function stageLatencies(before: string, after: string): StageLatency[] {
  return STAGES.map(([stage, name, label]) => {
    const [from, to] = [series(before, name, label), series(after, name, label)]
    return { stage, p50: quantileMs(from, to, 0.5), p99: quantileMs(from, to, 0.99) }
  })
}

export async function scrape(url: string): Promise<string> {
  const res = await fetch(`${url}/metrics`)
  return res.text()
}
