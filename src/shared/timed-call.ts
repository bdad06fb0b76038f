import type { Histogram, Counter } from 'prom-client'
import { withTimeout } from './timeout.js'

/** The two metrics every store call reports, labelled by operation. */
export interface CallMetrics {
  redisDuration: Histogram<'op'>
  redisErrors: Counter<'op'>
}

/**
 * A store call with a deadline, timed and counted by operation: a hung Redis answers with a
 * rejection after `timeoutMs`, never a hang.
 */
export async function timedCall<T>(metrics: CallMetrics, op: string, timeoutMs: number, call: () => Promise<T>): Promise<T> {
  const end = metrics.redisDuration.startTimer({ op })
  try {
    return await withTimeout(call(), timeoutMs)
  } catch (err) {
    metrics.redisErrors.inc({ op })
    throw err
  } finally {
    end()
  }
}
