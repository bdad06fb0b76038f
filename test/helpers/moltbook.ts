import { startMoltbook, type MoltbookOptions, type MoltbookSimulator } from '../../src/simulators/moltbook.js'
import type { Teardown } from './app.js'

/** A Moltbook simulator on a free loopback port, closed when the test ends. */
export async function moltbook(t: Teardown, options: MoltbookOptions = {}): Promise<MoltbookSimulator> {
  const sim = await startMoltbook(options)
  t.teardown(() => sim.close())
  return sim
}
