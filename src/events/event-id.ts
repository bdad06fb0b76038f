/**
 * Event ids are Redis stream ids (`<ms>-<seq>`), ordered within one history: a user's events
 * by the XADD on that user's stream, a `ratings:all` partition's by the XADD on the partition.
 * The memory store makes them in the same format.
 */
const ID = /^(\d{1,15})-(\d{1,15})$/

/** The id before every event: the position of a history that holds nothing yet. */
export const START_ID = '0-0'

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

/** The id a new event gets after `last` at time `nowMs` (the memory store's XADD). */
export function nextEventId(last: string | null, nowMs: number): string {
  const prev = last ? parseEventId(last) : null
  if (prev && prev.ms >= nowMs) return `${prev.ms}-${prev.seq + 1}`
  return `${nowMs}-0`
}

/**
 * A stream's position over the histories it reads: one id per history, joined by `.` (a user
 * stream reads one history, so its position is a plain event id; `ratings:all` reads every
 * partition). Each part only grows, so a later position never sorts before an earlier one,
 * compared part by part or as digit runs (the browser client's order).
 */
export type Position = readonly string[]

const SEPARATOR = '.'

export function formatPosition(position: Position): string {
  return position.join(SEPARATOR)
}

/** The position in an SSE id, or null when it is not `parts` event ids. */
export function parsePosition(text: string, parts: number): Position | null {
  const ids = text.split(SEPARATOR)
  return ids.length === parts && ids.every(isEventId) ? ids : null
}
