import { clampDelay } from './clock.js'

/**
 * `promise`, or a rejection once `ms` passed without an answer. One promise and one timer
 * (it sits on the bucket-decision hot path: no Promise.race or finally chain). `settled`, when
 * given, hears once how it ended (a late answer after the deadline is not reported).
 */
export function withTimeout<T>(promise: Promise<T>, ms: number, settled?: (failed: boolean) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let late = false
    const timer = setTimeout(() => {
      late = true
      settled?.(true)
      reject(new Error(`no answer within ${ms} ms`))
    }, clampDelay(ms))
    promise.then(
      (value) => {
        if (late) return
        clearTimeout(timer)
        settled?.(false)
        resolve(value)
      },
      (err: unknown) => {
        if (late) return
        clearTimeout(timer)
        settled?.(true)
        reject(err)
      }
    )
  })
}
