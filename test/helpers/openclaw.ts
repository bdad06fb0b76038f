import { startOpenClaw, type OpenClawOptions, type OpenClawSimulator } from '../../src/simulators/openclaw.js'
import type { Teardown } from './app.js'

/** A real OpenClaw simulator on a free port, closed when the test ends. */
export async function startTestOpenClaw(t: Teardown, options: OpenClawOptions = {}): Promise<OpenClawSimulator> {
  const sim = await startOpenClaw({ apiKey: 'oc-test-key-7f3a9c1e5b', ...options })
  t.teardown(() => sim.close())
  return sim
}

/** The gateway settings that point it at a simulator. */
export function openclawEnv(sim: OpenClawSimulator, timeoutMs?: number): Record<string, string> {
  const env: Record<string, string> = { OPENCLAW_URL: sim.url, OPENCLAW_API_KEY: sim.apiKey }
  if (timeoutMs !== undefined) env.OPENCLAW_TIMEOUT_MS = String(timeoutMs)
  return env
}

