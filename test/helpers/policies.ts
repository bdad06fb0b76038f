import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Teardown } from './app.js'

/** A BUCKETS_FILE holding `content` (a policy list, or anything a test wants refused), removed when the test ends. */
export async function policiesFile(t: Teardown, content: unknown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mb-buckets-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'buckets.json')
  await writeFile(file, JSON.stringify(content))
  return file
}
