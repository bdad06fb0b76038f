import { SignJWT } from 'jose'
import { startOpenClaw, type OpenClawOptions, type OpenClawSimulator } from '../../src/simulators/openclaw.js'
import { TEST_SECRET, type Teardown } from './app.js'

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

/** Authorization header of an HS256 token for a caller (sub = user, agent_id = agent). */
export async function bearer(sub: string, agentId = sub): Promise<string> {
  const jwt = await new SignJWT({ agent_id: agentId })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(sub)
    .setIssuedAt()
    .setExpirationTime('10m')
    .sign(new TextEncoder().encode(TEST_SECRET))
  return `Bearer ${jwt}`
}
