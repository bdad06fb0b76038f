import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The repository's public/ directory, found both from src/ (tests) and from dist/src/ (built). */
export function publicDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir)
    if (parent === dir) throw new Error('public/: package.json not found above ' + fileURLToPath(import.meta.url))
    dir = parent
  }
  return join(dir, 'public')
}
