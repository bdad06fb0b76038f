import { execFile } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import type { Teardown } from './app.js'
import { freePort } from './ports.js'
import { startRedisServer, type RedisServer } from './redis-server.js'

const exec = promisify(execFile)

export interface RedisCluster {
  /** `host:port,...` as REDIS_CLUSTER_NODES takes it. */
  nodes: string
  ports: number[]
  stop(): Promise<void>
}

async function clusterState(port: number): Promise<string> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0 })
  client.on('error', () => {})
  try {
    await client.connect()
    const info = await client.cluster('INFO')
    return /cluster_state:(\w+)/.exec(info)?.[1] ?? 'unknown'
  } finally {
    client.disconnect()
  }
}

/**
 * A real Redis Cluster of `primaries` nodes (no replicas) on free loopback ports, each in its own
 * temp dir (the cluster bus on a port of its own, `--cluster-port`), created with
 * `redis-cli --cluster create` and ready once every node reports `cluster_state:ok`.
 */
export async function startRedisCluster(t: Teardown, primaries = 3): Promise<RedisCluster> {
  const servers: RedisServer[] = []
  const stop = async () => {
    await Promise.all(servers.map((s) => s.stop()))
  }
  t.teardown(stop)
  for (let i = 0; i < primaries; i++) {
    const bus = await freePort()
    servers.push(
      await startRedisServer({
        args: ['--cluster-enabled', 'yes', '--cluster-port', String(bus), '--cluster-node-timeout', '3000']
      })
    )
  }
  const ports = servers.map((s) => s.port)
  const addresses = ports.map((p) => `127.0.0.1:${p}`)
  await exec('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes'], {
    timeout: 30_000
  })
  const deadline = Date.now() + 20_000
  while ((await Promise.all(ports.map(clusterState))).some((state) => state !== 'ok')) {
    if (Date.now() > deadline) throw new Error('redis cluster did not reach cluster_state:ok')
    await sleep(100)
  }
  return { nodes: addresses.join(','), ports, stop }
}
