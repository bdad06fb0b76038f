/**
 * A tiny seeded PRNG (mulberry32): the same seed gives the same sequence, so a chaos run that
 * failed can be replayed with its seed. Not for anything secret.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A fresh 32-bit seed (print it: it is what replays the run). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 4294967296)
}
