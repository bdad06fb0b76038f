/**
 * Child process of the benchmark: opens many SSE connections (like EventSource, raw HTTP so a
 * thousand of them stay cheap) and reports, per connection, how many events arrived and how
 * long each took from the moment the benchmark sent its rating (the item id starts with `t<ms>`).
 */
import { request, Agent } from 'node:http'

export interface ClientsCommand {
  url: string
  /** One Authorization header per connection (or one empty string for none). */
  tokens: string[]
  /** Open connections this many at a time. */
  openBatch: number
}

export type ClientsReport =
  | { type: 'open'; opened: number; failed: number }
  /** Events received since the previous `stats` (one latency each), and when the latest came. */
  | { type: 'stats'; received: number; latencies: number[]; lastAt: number }

const agent = new Agent({ keepAlive: false, maxSockets: Infinity })
let latencies: number[] = []
/** Date.now() of the latest event received. */
let lastAt = 0
const sockets: { destroy(): void }[] = []

function connect(url: string, token: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(url, { agent, headers: token ? { authorization: `Bearer ${token}`, accept: 'text/event-stream' } : {} })
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        res.resume()
        return resolve(false)
      }
      sockets.push(res)
      res.setEncoding('utf8')
      let buffer = ''
      res.on('data', (chunk: string) => {
        buffer += chunk
        let end
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const message = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          const data = message.split('\n').find((line) => line.startsWith('data:'))
          if (!data || message.includes('\nevent:') || message.startsWith('event:')) continue
          const event = JSON.parse(data.slice(5)) as { item_id: string }
          lastAt = Date.now()
          latencies.push(lastAt - Number.parseInt(event.item_id.slice(1), 10))
        }
      })
      res.on('error', () => {})
      resolve(true)
    })
    req.on('error', () => resolve(false))
    req.end()
  })
}

process.on('message', async (message: { cmd: 'open'; command: ClientsCommand } | { cmd: 'stats' }) => {
  if (message.cmd === 'open') {
    const { url, tokens, openBatch } = message.command
    let opened = 0
    let failed = 0
    for (let i = 0; i < tokens.length; i += openBatch) {
      const batch = await Promise.all(tokens.slice(i, i + openBatch).map((token) => connect(url, token)))
      for (const ok of batch) ok ? opened++ : failed++
    }
    process.send?.({ type: 'open', opened, failed } satisfies ClientsReport)
  } else {
    process.send?.({ type: 'stats', received: latencies.length, latencies, lastAt } satisfies ClientsReport)
    latencies = []
  }
})

process.on('disconnect', () => {
  for (const s of sockets) s.destroy()
  process.exit(0)
})
