import { startMoltbook, type MoltbookOptions, type MoltbookSimulator } from '../../src/simulators/moltbook.js'
import type { Teardown } from './app.js'

/** A Moltbook simulator on a free loopback port, closed when the test ends. */
export async function moltbook(t: Teardown, options: MoltbookOptions = {}): Promise<MoltbookSimulator> {
  const sim = await startMoltbook(options)
  t.teardown(() => sim.close())
  return sim
}

/** Polls until `check` holds (bounded: fails with `what` after `timeoutMs`). */
export async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}
