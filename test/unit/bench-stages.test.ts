import t, { type Test } from 'tap'
import { stageLatencies } from '../../bench/stages.js'

/** Equal within float rounding (the interpolation is in seconds, reported in ms). */
const near = (t: Test, found: number | undefined, wanted: number, message?: string) => t.ok(Math.abs((found ?? NaN) - wanted) < 1e-9, message ?? `${found} ≈ ${wanted}`)

/** A scrape holding one histogram series (cumulative counts per `le`, seconds), as prom-client writes it. */
function scrape(name: string, label: string, counts: [le: string, count: number][]): string {
  return counts.map(([le, count]) => `${name}_bucket{le="${le}"${label ? `,${label}` : ''}} ${count}`).join('\n')
}

t.test('a stage quantile is read from what was observed between two scrapes, interpolated in its bucket', async (t) => {
  const name = 'moltbridge_feed_to_publish_seconds'
  // Before the run: 10 fast observations that must not count.
  const before = scrape(name, '', [['0.001', 10], ['0.01', 10], ['0.05', 10], ['+Inf', 10]])
  // During it: 100 more, 90 between 1 and 10 ms, 10 between 10 and 50 ms.
  const after = scrape(name, '', [['0.001', 10], ['0.01', 100], ['0.05', 110], ['+Inf', 110]])
  const published = stageLatencies(before, after).find((stage) => stage.stage === 'published')
  // p50: rank 50 of 100, the 50th of 90 in (1, 10] ms → 1 + 9 × 50/90 = 6 ms.
  near(t, published?.p50, 6)
  // p99: rank 99, the 9th of 10 in (10, 50] ms → 10 + 40 × 9/10 = 46 ms.
  near(t, published?.p99, 46)
})

t.test('stages are told apart by their label, and a stage with nothing observed reads NaN', async (t) => {
  const name = 'moltbridge_feed_stage_seconds'
  const after = [
    scrape(name, 'stage="queued"', [['0.001', 4], ['0.01', 4], ['+Inf', 4]]),
    scrape(name, 'stage="answered"', [['0.001', 0], ['0.01', 4], ['+Inf', 4]])
  ].join('\n')
  const stages = Object.fromEntries(stageLatencies('', after).map((stage) => [stage.stage, stage]))
  near(t, stages.queued.p50, 0.5, 'within the first bucket, from 0')
  near(t, stages.answered.p50, 5.5)
  t.ok(Number.isNaN(stages.picked.p50), 'picked: no observation')
})
