import type { Histogram, Counter } from 'prom-client'
import { performance } from 'node:perf_hooks'
import { withTimeout } from './timeout.js'

/** The two metrics every store call reports, labelled by operation. */
export interface CallMetrics {
  redisDuration: Histogram<'op'>
  redisErrors: Counter<'op'>
}

/**
 * A store call with a deadline, timed and counted by operation: a hung Redis answers with a
 * rejection after `timeoutMs`, never a hang. Still one promise and one timer (the bucket
 * decision calls it on every request).
 */
export function timedCall<T>(metrics: CallMetrics, op: string, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  const started = performance.now()
  let answer: Promise<T>
  try {
    answer = call()
  } catch (err) {
    // Thrown before any promise: still a failed call, reported like the others.
    answer = Promise.reject(err)
  }
  return withTimeout(answer, timeoutMs, (failed) => {
    metrics.redisDuration.observe({ op }, (performance.now() - started) / 1000)
    if (failed) metrics.redisErrors.inc({ op })
  })
}
