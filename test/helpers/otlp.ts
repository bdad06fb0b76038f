import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Teardown } from './app.js'

/** One span as an OTLP/HTTP JSON export carries it, with its resource's attributes beside. */
export interface ReceivedSpan {
  traceId: string
  spanId: string
  /** '' for a root span. */
  parentSpanId: string
  name: string
  attributes: Record<string, string | number | boolean>
  /** service.instance.id of the exporting process: which replica. */
  instance: string
}

interface OtlpValue {
  stringValue?: string
  intValue?: string | number
  doubleValue?: number
  boolValue?: boolean
}
interface OtlpAttribute {
  key: string
  value: OtlpValue
}
interface OtlpExport {
  resourceSpans?: {
    resource?: { attributes?: OtlpAttribute[] }
    scopeSpans?: { spans?: { traceId: string; spanId: string; parentSpanId?: string; name: string; attributes?: OtlpAttribute[] }[] }[]
  }[]
}

function attributesOf(list: OtlpAttribute[] = []): ReceivedSpan['attributes'] {
  const value = ({ stringValue, intValue, doubleValue, boolValue }: OtlpValue) => stringValue ?? (intValue !== undefined ? Number(intValue) : (doubleValue ?? boolValue ?? ''))
  return Object.fromEntries(list.map((attribute) => [attribute.key, value(attribute.value)]))
}

/**
 * A real OTLP/HTTP receiver (JSON encoding, POST /v1/traces), as a collector would run it: what
 * the gateways export, span by span, and every raw body (to look for secrets).
 */
export async function startOtlpReceiver(t: Teardown) {
  const spans: ReceivedSpan[] = []
  const bodies: string[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces' || !req.headers['content-type']?.includes('json')) {
        res.writeHead(415).end()
        return
      }
      bodies.push(body)
      const exported = JSON.parse(body) as OtlpExport
      for (const { resource, scopeSpans = [] } of exported.resourceSpans ?? []) {
        const instance = String(attributesOf(resource?.attributes)['service.instance.id'] ?? '')
        for (const scope of scopeSpans) {
          for (const span of scope.spans ?? []) {
            const { traceId, spanId, parentSpanId = '', name } = span
            spans.push({ traceId, spanId, parentSpanId, name, attributes: attributesOf(span.attributes), instance })
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { url, spans, bodies }
}
