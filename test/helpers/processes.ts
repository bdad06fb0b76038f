import { spawn, type ChildProcess } from 'node:child_process'
import { mkdir, readdir, rmdir, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import type { Teardown } from './app.js'
import { freePort } from './ports.js'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const ENTRY = join(ROOT, 'dist/src/server.js')
const HEALTHY_WITHIN_MS = 60_000
const SOURCES = ['src', 'plugins', 'routes', 'bench', 'tsconfig.json', 'tsconfig.build.json', 'package.json']
/** Several test files may build at once: one builds, the others wait and reuse its output. */
const LOCK = join(tmpdir(), `moltbridge-build-${Buffer.from(ROOT).toString('base64url').slice(-24)}.lock`)

async function newestMtime(path: string): Promise<number> {
  const info = await stat(path).catch(() => null)
  if (!info) return 0
  if (!info.isDirectory()) return info.mtimeMs
  const entries = await readdir(path)
  const times = await Promise.all(entries.map((e) => newestMtime(join(path, e))))
  return Math.max(info.mtimeMs, ...times)
}

function run(command: string, args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d))
    child.stderr.on('data', (d: Buffer) => (output += d))
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, output }))
  })
}

/** `npm run build` (the real entry the replicas run), skipped when dist is newer than every source. */
export async function buildGateway(): Promise<void> {
  const deadline = Date.now() + 180_000
  for (;;) {
    try {
      await mkdir(LOCK)
      break
    } catch {
      const held = await stat(LOCK).catch(() => null)
      if (held && Date.now() - held.mtimeMs > 180_000) await rmdir(LOCK).catch(() => {}) // a crashed builder
      if (Date.now() > deadline) throw new Error(`build lock ${LOCK} held too long`)
      await sleep(250)
    }
  }
  try {
    const sources = Math.max(...(await Promise.all(SOURCES.map((s) => newestMtime(join(ROOT, s))))))
    // tsc rewrites every output, so the entry's time is the build's (`npm ci` builds in `prepare`)
    if ((await newestMtime(ENTRY)) > sources) return
    const { code, output } = await run('npm', ['run', 'build', '--silent'])
    if (code !== 0) throw new Error(`npm run build failed (exit ${code}):\n${output}`)
  } finally {
    await rmdir(LOCK).catch(() => {})
  }
}

export interface GatewayProcess {
  name: string
  port: number
  url: string
  pid: number
  /** The last lines the process wrote (stdout and stderr), for failure messages. */
  output(): string
  alive(): boolean
  /** The exit code once the process has exited (null while running or when killed by a signal). */
  exitCode(): number | null
  /** Sends the signal and resolves once the process has exited (SIGKILL after 10 s if it lingers). */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>
}

const running = new Set<ChildProcess>()
// A test runner that gives up on a file must not leave replicas behind.
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL')
})

/** Settings every replica of a suite gets unless the test overrides them. */
const DEFAULT_ENV = { HOST: '127.0.0.1', LOG_LEVEL: 'warn', DRAIN_MS: '200', IP_RATE_LIMIT_MAX: '0' }

/**
 * One gateway process from the built entry (`node dist/src/server.js`) on a free loopback port,
 * ready once /healthz answers; stopped when the test ends, whatever happened. The environment is
 * built from scratch (PATH only from ours), so the test runner's loaders never reach the child.
 */
export async function startGateway(
  t: Teardown,
  name: string,
  env: Record<string, string>,
  port?: number
): Promise<GatewayProcess> {
  const listenPort = port ?? (await freePort())
  const child = spawn(process.execPath, [ENTRY], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...DEFAULT_ENV, ...env, PORT: String(listenPort) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  running.add(child)
  const lines: string[] = []
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      lines.push(line)
      if (lines.length > 200) lines.shift()
    })
  }
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      running.delete(child)
      resolve()
    })
  })
  const alive = () => child.exitCode === null && child.signalCode === null
  const stop = async (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') => {
    if (!alive()) return
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }
  t.teardown(() => stop())

  const url = `http://127.0.0.1:${listenPort}`
  const output = () => lines.join('\n')
  // A cold start takes ~1 s here; a CI machine running other test files beside it can take far longer.
  const deadline = Date.now() + HEALTHY_WITHIN_MS
  for (;;) {
    if (!alive()) throw new Error(`gateway ${name} exited before it was healthy:\n${output()}`)
    const ok = await fetch(`${url}/healthz`).then(
      (r) => r.ok,
      () => false
    )
    if (ok) break
    if (Date.now() > deadline) {
      await stop('SIGKILL')
      throw new Error(`gateway ${name} not healthy within ${HEALTHY_WITHIN_MS / 1000} s:\n${output()}`)
    }
    await sleep(100)
  }
  const exitCode = () => child.exitCode
  return { name, port: listenPort, url, pid: child.pid ?? -1, output, alive, exitCode, stop }
}

/** `count` replicas with the same settings (named gw1, gw2, ...), started in parallel. */
export async function startGateways(t: Teardown, count: number, env: Record<string, string>): Promise<GatewayProcess[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => startGateway(t, `gw${i + 1}`, env)))
}
