import { Redis } from 'ioredis'
import type { Teardown } from './app.js'
import { freePort } from './ports.js'
import { startRedisServer, type RedisServer } from './redis-server.js'
import { waitFor } from './wait.js'

export interface RedisSentinelSet {
  /** `host:port,...` as REDIS_SENTINELS takes it. */
  sentinels: string
  /** The monitored primary's name (REDIS_SENTINEL_NAME). */
  name: string
  /** The data nodes as started: the primary first, then its replicas. */
  servers: RedisServer[]
  downAfterMs: number
  /** The port of the node the Sentinels name as primary now (the first Sentinel that answers). */
  primaryPort(): Promise<number>
  /** A switch with the primary alive (`SENTINEL FAILOVER`, as for maintenance); resolves once it is done. */
  switchPrimary(): Promise<void>
}

export interface SentinelOptions {
  replicas?: number
  /** Silence after which a Sentinel thinks the primary down (`down-after-milliseconds`). */
  downAfterMs?: number
}

/** Asks one Sentinel or data node on loopback, and disconnects. */
export async function ask<T>(port: number, command: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  client.on('error', () => {})
  try {
    await client.connect()
    return await command(client)
  } finally {
    client.disconnect()
  }
}

/** SENTINEL MASTER's flat name/value list as a record. */
function fields(reply: unknown): Record<string, string> {
  const list = Array.isArray(reply) ? reply.map(String) : []
  return Object.fromEntries(list.flatMap((v, i) => (i % 2 ? [] : [[v, list[i + 1]]])))
}

/**
 * A primary, `replicas` replicas (`--replicaof`) and three Sentinels (quorum 2) on free loopback
 * ports, each in a temp dir of its own (Sentinels rewrite their config file), ready once every
 * Sentinel sees the replicas and the two other Sentinels: a failover can be voted from then on.
 * Every process is killed when the test ends.
 */
export async function startRedisSentinel(t: Teardown, options: SentinelOptions = {}): Promise<RedisSentinelSet> {
  const name = `mbt-primary-${Math.random().toString(36).slice(2, 8)}`
  const downAfterMs = options.downAfterMs ?? 1000
  const replicaCount = options.replicas ?? 1
  const all: RedisServer[] = []
  t.teardown(async () => {
    await Promise.all(
      all.map(async (server) => {
        await server.kill()
        await server.stop() // removes its dir
      })
    )
  })
  const primary = await startRedisServer()
  all.push(primary)
  for (let i = 0; i < replicaCount; i++) {
    all.push(await startRedisServer({ args: ['--replicaof', '127.0.0.1', String(primary.port)] }))
  }
  const servers = [...all]
  const config = [
    `sentinel monitor ${name} 127.0.0.1 ${primary.port} 2`,
    `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
    `sentinel failover-timeout ${name} 3000`,
    `sentinel parallel-syncs ${name} 1`,
    'sentinel resolve-hostnames no',
    ''
  ].join('\n')
  const ports = await Promise.all([0, 1, 2].map(() => freePort()))
  for (const port of ports) all.push(await startRedisServer({ port, config, args: ['--sentinel'] }))

  const linked = (port: number) => ask(port, (c) => c.info('replication')).then((info) => info.includes('master_link_status:up'))
  await waitFor('replicas in sync', async () => (await Promise.all(servers.slice(1).map((s) => linked(s.port)))).every(Boolean), 10_000)
  const sees = async (port: number) => {
    const master = fields(await ask(port, (c) => c.call('SENTINEL', 'MASTER', name)))
    return Number(master['num-slaves']) >= replicaCount && Number(master['num-other-sentinels']) === 2
  }
  await waitFor('Sentinels see the replicas and each other', async () => (await Promise.all(ports.map(sees))).every(Boolean), 20_000)

  const primaryPort = async () => {
    for (const port of ports) {
      const address = await ask(port, (c) => c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)).catch(() => null)
      if (Array.isArray(address)) return Number(address[1])
    }
    throw new Error('no Sentinel answered')
  }
  const startFailover = () => ask(ports[0], (c) => c.call('SENTINEL', 'FAILOVER', name)).then(() => true, () => false)

  return {
    sentinels: ports.map((p) => `127.0.0.1:${p}`).join(','),
    name,
    servers,
    downAfterMs,
    primaryPort,
    async switchPrimary() {
      const before = await primaryPort()
      // Refused (NOGOODSLAVE) until a Sentinel has seen a replica in sync recently: ask again.
      await waitFor('a Sentinel to start the failover', startFailover, 30_000)
      await waitFor('the Sentinels to name the new primary', async () => (await primaryPort()) !== before, 20_000)
    }
  }
}
