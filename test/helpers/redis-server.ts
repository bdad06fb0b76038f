import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'

export interface RedisServer {
  url: string
  port: number
  /** Stops the server (SIGTERM, waits for exit); clients see a dead Redis. */
  stop(): Promise<void>
  /** Kills it (SIGKILL, waits for exit): a crash, nothing flushed or handed over. */
  kill(): Promise<void>
  /** Starts it again on the same port (after stop, or stops it first). */
  restart(): Promise<void>
  /** Freezes the process (SIGSTOP): connections stay open, commands get no answer. */
  pause(): void
  /** Unfreezes it (SIGCONT). */
  resume(): void
}

export interface RedisServerOptions {
  port?: number
  /** Extra redis-server arguments, for example ['--cluster-enabled', 'yes']. */
  args?: string[]
  /** A config file's text, written into the server's own dir and given first (Sentinel needs a file it can rewrite). */
  config?: string
}

async function waitForPing(url: string, deadline: number): Promise<void> {
  for (;;) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      await client.connect()
      await client.ping()
      return
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`redis-server at ${url} did not start: ${(err as Error).message}`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    } finally {
      client.disconnect()
    }
  }
}

/** A real redis-server of its own, in a temp dir, no persistence. Stop it in t.teardown. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const port = options.port ?? (await freePort())
  const dir = await mkdtemp(join(tmpdir(), 'mb-redis-'))
  const url = `redis://127.0.0.1:${port}`
  let child: ChildProcess | null = null

  const start = async () => {
    await mkdir(dir, { recursive: true }) // stop() removes it
    const config = join(dir, 'redis.conf')
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...(options.args ?? [])]
    if (options.config !== undefined) {
      await writeFile(config, options.config)
      args.unshift(config)
    }
    const proc = spawn('redis-server', args, { stdio: 'ignore' })
    child = proc
    const exited = new Promise<never>((_, reject) =>
      proc.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)))
    )
    exited.catch(() => {})
    await Promise.race([waitForPing(url, Date.now() + 10_000), exited])
  }

  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') => {
    const proc = child
    child = null
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise((resolve) => proc.once('exit', resolve))
    proc.kill('SIGCONT') // a paused server handles SIGTERM only once resumed
    proc.kill(signal)
    await exited
  }

  await start()
  return {
    url,
    port,
    async stop() {
      await stop()
      await rm(dir, { recursive: true, force: true }).catch(() => {})
    },
    kill: () => stop('SIGKILL'),
    async restart() {
      await stop()
      await start()
    },
    pause: () => void child?.kill('SIGSTOP'),
    resume: () => void child?.kill('SIGCONT')
  }
}
