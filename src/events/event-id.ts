/**
 * Event ids are Redis stream ids (`<ms>-<seq>`): XADD on one global stream hands them out in a
 * total order across all replicas, and the memory bus makes them in the same format.
 */
const ID = /^(\d{1,15})-(\d{1,15})$/

export interface ParsedId {
  ms: number
  seq: number
}

export function parseEventId(id: string): ParsedId | null {
  const match = ID.exec(id)
  return match ? { ms: Number(match[1]), seq: Number(match[2]) } : null
}

export function isEventId(id: string): boolean {
  return parseEventId(id) !== null
}

/** Negative, zero or positive like a sort comparator; ids must be valid. */
export function compareEventIds(left: string, right: string): number {
  const first = parseEventId(left)
  const second = parseEventId(right)
  if (!first || !second) throw new Error('invalid event id')
  return first.ms - second.ms || first.seq - second.seq
}

/** Fixed-width form whose byte order is the id order (sorted-set members, ZRANGEBYLEX). */
export function lexEventId(id: string): string {
  const parsed = parseEventId(id)
  if (!parsed) throw new Error('invalid event id')
  return `${String(parsed.ms).padStart(15, '0')}-${String(parsed.seq).padStart(15, '0')}`
}

/** The id a new event gets after `last` at time `nowMs` (the memory bus's XADD). */
export function nextEventId(last: string | null, nowMs: number): string {
  const prev = last ? parseEventId(last) : null
  if (prev && prev.ms >= nowMs) return `${prev.ms}-${prev.seq + 1}`
  return `${nowMs}-0`
}

/** Back from the fixed-width form. */
export function eventIdFromLex(lex: string): string {
  const [ms, seq] = lex.split('-')
  return `${Number(ms)}-${Number(seq)}`
}
