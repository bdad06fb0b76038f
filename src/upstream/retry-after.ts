/**
 * Milliseconds to wait from an HTTP `Retry-After` value (delay seconds or an HTTP date,
 * RFC 9110 10.2.3); `fallbackMs` when absent or unreadable. Never negative.
 */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number, fallbackMs = 1000): number {
  const text = (Array.isArray(value) ? value[0] : value)?.trim()
  if (!text) return fallbackMs
  if (/^\d+$/.test(text)) return Number(text) * 1000
  const date = Date.parse(text)
  if (Number.isNaN(date)) return fallbackMs
  return Math.max(0, date - nowMs)
}
