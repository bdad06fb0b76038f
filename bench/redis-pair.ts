import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * A primary and one replica of their own (no persistence, loopback), for the scenario that needs a
 * replica to answer WAIT; resolves once the replica is in sync. `stop()` kills both.
 */
export async function startRedisPair(): Promise<{ url: string; stop(): void }> {
  const [primary, replica] = [await freePort(), await freePort()]
  const dir = mkdtempSync(join(os.tmpdir(), 'mb-bench-redis-'))
  const server = (port: number, extra: string[]) =>
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extra], { stdio: 'ignore' })
  const children = [server(primary, []), server(replica, ['--replicaof', '127.0.0.1', String(primary)])]
  const stop = () => {
    for (const child of children) child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
  const client = new Redis({ port: replica, host: '127.0.0.1', retryStrategy: () => 50, maxRetriesPerRequest: null })
  client.on('error', () => {}) // refused until the replica listens
  try {
    for (let i = 0; i < 200; i++) {
      if ((await client.info('replication')).includes('master_link_status:up')) return { url: `redis://127.0.0.1:${primary}`, stop }
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
    throw new Error('the bench replica did not sync with its primary')
  } catch (err) {
    stop()
    throw err
  } finally {
    client.disconnect()
  }
}
