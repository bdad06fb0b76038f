import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { Log } from '../logger.js'
import { OutageLog } from '../shared/outage-log.js'
import { onceWithin } from '../shared/wait.js'
import { SentinelWatch, type SentinelAddress } from './sentinel-watch.js'

export type RedisClient = Redis | Cluster

export interface RedisSettings {
  /** `redis://` or `rediss://` of a single server. */
  url?: string
  /** Comma-separated `host:port` seeds of a Redis Cluster (wins over `url`). */
  clusterNodes?: string
  /**
   * The primary as Sentinel names it: connections ask `host:port,…` Sentinels for its address
   * (`url` then only gives the primary's password and database).
   */
  sentinel?: { sentinels: string; name: string; password?: string }
}

/** Every key matching `pattern`, on every primary of a cluster (SCAN: for admin calls, never a hot path). */
export async function scanKeys(redis: RedisClient, pattern: string): Promise<string[]> {
  const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
  const found = new Set<string>()
  for (const node of nodes) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500)
      cursor = next
      for (const key of keys) found.add(key)
    } while (cursor !== '0')
  }
  return [...found]
}

/** How long start-up waits for the main connection before serving anyway (stores then fail fast). */
const FIRST_CONNECT_MS = 2000

/** Reconnect delays: doubling from 100 ms up to `maxMs`. */
const backoff = (maxMs: number) => (times: number) => Math.min(50 * 2 ** Math.min(times, 5), maxMs)

/**
 * Fail fast (no offline queue) so a dead Redis costs a bounded wait, never a growing backlog;
 * reconnect forever in the background. Created lazily: ioredis refuses commands sent before
 * the connection is ready when the offline queue is off (DESIGN pitfalls).
 */
const BASE: RedisOptions = {
  lazyConnect: true,
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 2000,
  retryStrategy: backoff(1000)
}

/**
 * Through Sentinel: every (re)connect asks a Sentinel for the primary, and a READONLY answer (a
 * primary demoted under a connection we kept) drops the connection to ask again. While there is
 * no primary, retry every 250 ms at most: a try is one question to a Sentinel, and the new
 * primary is reached within 250 ms of its promotion (measured: 1 s retries left the gateway
 * ~0.5 s behind the Sentinels). A switch with the old primary alive: see SentinelWatch.
 */
function sentinelOptions({ sentinels, name, password }: NonNullable<RedisSettings['sentinel']>): RedisOptions {
  return {
    sentinels: hostPorts(sentinels),
    name,
    sentinelPassword: password,
    retryStrategy: backoff(250),
    reconnectOnError: (err) => err.message.startsWith('READONLY')
  }
}

function hostPorts(list: string): { host: string; port: number }[] {
  return list.split(',').map((hostPort) => {
    const [host, port] = hostPort.split(':')
    return { host, port: Number(port) }
  })
}

/**
 * Every Redis connection of one gateway: the shared `main` one (stores) and dedicated ones for
 * blocking reads, each logging one line when it goes down and one when it is back.
 */
export class RedisConnections {
  readonly main: RedisClient
  private readonly open: RedisClient[] = []
  private readonly watch: SentinelWatch | null = null

  constructor(
    private readonly settings: RedisSettings,
    private readonly log: Log
  ) {
    this.main = this.connect('main')
    const { sentinel } = settings
    if (sentinel) {
      this.watch = new SentinelWatch(hostPorts(sentinel.sentinels), sentinel.name, sentinel.password, log, (primary) =>
        this.leaveOldPrimary(primary)
      )
    }
  }

  /**
   * Drops the connections that are up but not to `primary`: they reconnect through Sentinel at
   * once. Those not up are left alone: their next try asks a Sentinel anyway.
   */
  private leaveOldPrimary(primary: SentinelAddress): void {
    for (const client of this.open) {
      if (!(client instanceof Redis) || client.status !== 'ready') continue
      const { remoteAddress, remotePort } = client.stream
      if (remoteAddress !== primary.host || remotePort !== primary.port) client.disconnect(true)
    }
  }

  /**
   * A new connection (blocking reads hold theirs: XREADGROUP; a subscriber holds one for sharded
   * pub/sub), closed by close(). A subscriber resubscribes itself (src/redis/subscriber.ts), so
   * ioredis's own resubscription is off; on a Cluster it gets one subscriber connection per primary.
   */
  connect(name: string, { subscriber = false } = {}): RedisClient {
    const { url, clusterNodes, sentinel } = this.settings
    const client: RedisClient = clusterNodes
      ? new Cluster(hostPorts(clusterNodes), {
          lazyConnect: true,
          enableOfflineQueue: false,
          shardedSubscribers: subscriber,
          redisOptions: { ...BASE, connectionName: `moltbridge-${name}` },
          clusterRetryStrategy: BASE.retryStrategy
        })
      : new Redis(url ?? 'redis://127.0.0.1:6379', {
          ...BASE,
          ...(sentinel && sentinelOptions(sentinel)),
          connectionName: `moltbridge-${name}`,
          autoResubscribe: !subscriber
        })
    const outage = new OutageLog(this.log, { down: 'redis unavailable', up: 'redis available again' }, { redis: name })
    client.on('error', (err: Error) => outage.down(err))
    client.on('ready', () => outage.up())
    client.connect().catch(() => {
      /* reported by the error listener; ioredis keeps retrying */
    })
    this.open.push(client)
    return client
  }

  /** Waits (bounded) for the main connection's first answer, so a healthy start serves at once. */
  async ready(): Promise<void> {
    if (this.main.status !== 'ready') await onceWithin(this.main, 'ready', FIRST_CONNECT_MS)
  }

  /** The readiness check: null when Redis answers, else why not. */
  async check(): Promise<string | null> {
    if (this.main.status !== 'ready') return `not connected (${this.main.status})`
    await this.main.ping()
    return null
  }

  /**
   * Commands issued in the same tick leave in one socket write (ioredis autopipelining): the hot
   * paths issue several per request, and a write per command cost ~20% of the CPU. Only once
   * every store has defined its scripts: a script defined while an autopipeline is pending is
   * missing from that pipeline, and ioredis then crashes ("results[i] is not iterable"). The
   * blocking connections stay as they are: one command at a time anyway.
   */
  pipelineAutomatically(): void {
    this.main.options.enableAutoPipelining = true
  }

  async close(): Promise<void> {
    this.watch?.close()
    await Promise.all(this.open.map((client) => client.quit().catch(() => client.disconnect())))
  }
}
