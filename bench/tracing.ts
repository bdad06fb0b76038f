import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tracedSync } from '../src/tracing/spans.js'

/** An OTLP/HTTP endpoint that takes every export and keeps only a count of spans (a collector's cheapest stand-in). */
export async function startOtlpSink() {
  let spans = 0
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      spans += body.split('"spanId"').length - 1
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    spans: () => spans,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

/**
 * Nanoseconds a span wrapper adds while tracing is off (this process never enables it): the
 * same work called through `tracedSync` and directly, best of five rounds each.
 */
export function tracedOffCostNs(): number {
  const calls = 5_000_000
  let sink = 0
  const work = () => (sink = (sink + 1) | 0)
  const round = (run: () => void) => {
    const started = process.hrtime.bigint()
    run()
    return Number(process.hrtime.bigint() - started) / calls
  }
  const direct = () => {
    for (let i = 0; i < calls; i++) work()
  }
  const wrapped = () => {
    for (let i = 0; i < calls; i++) tracedSync('bench', work)
  }
  let best = Infinity
  for (let i = 0; i < 5; i++) best = Math.min(best, round(wrapped) - round(direct))
  return Math.max(0, best)
}
