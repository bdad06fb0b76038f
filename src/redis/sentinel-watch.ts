import { Redis } from 'ioredis'
import type { Log } from '../logger.js'
import { OutageLog } from '../shared/outage-log.js'

export interface SentinelAddress {
  host: string
  port: number
}

/**
 * Subscribes to `+switch-master` on every Sentinel and calls `onSwitch` with the new address when
 * the primary named `name` moved (once per Sentinel that tells): a primary demoted alive (a manual failover, a healed partition) keeps accepting
 * writes for seconds after its replica was promoted, until Sentinel reconfigures it, and what it
 * takes meanwhile is discarded then. One subscriber per Sentinel for all the connections of a
 * gateway (ioredis's per-connection `failoverDetector` also cuts reconnects in progress, which
 * ioredis 6 then abandons for good: status `end`).
 */
export class SentinelWatch {
  private readonly subscribers: Redis[]

  constructor(sentinels: SentinelAddress[], name: string, password: string | undefined, log: Log, onSwitch: (primary: SentinelAddress) => void) {
    this.subscribers = sentinels.map(({ host, port }) => {
      const client = new Redis({ host, port, password, retryStrategy: (times) => Math.min(100 * times, 1000) })
      const outage = new OutageLog(log, { down: 'redis sentinel unavailable', up: 'redis sentinel available again' }, { sentinel: `${host}:${port}` })
      client.on('error', (err: Error) => outage.down(err))
      client.on('ready', () => outage.up())
      // `<name> <old ip> <old port> <new ip> <new port>`
      client.on('message', (_channel: string, message: string) => {
        const [master, , , newHost, newPort] = message.split(' ')
        if (master === name) onSwitch({ host: newHost, port: Number(newPort) })
      })
      client.subscribe('+switch-master').catch(() => {
        /* reported by the error listener; resubscribed on reconnect */
      })
      return client
    })
  }

  close(): void {
    for (const client of this.subscribers) client.disconnect()
  }
}
