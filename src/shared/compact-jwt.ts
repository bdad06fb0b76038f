/**
 * Compact JWTs (a JWS, or a JWE) found in text: three to five base64url parts joined by dots,
 * starting where a base64url run starts, whose first part (the JOSE header) is base64url JSON, an
 * object. The header check keeps host names and versions (`a.b.c`) from looking like tokens.
 */
const CANDIDATE = /(?<![A-Za-z0-9_-])[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*){2,4}/g
/** Enough of a header to see its `{` after some whitespace. */
const HEADER_PREFIX = 12

/** Query parameters that clients use for bearer tokens, whatever their value looks like. */
export const TOKEN_PARAMS: ReadonlySet<string> = new Set(['token', 'access_token', 'jwt', 'id_token'])

function isJoseHeader(candidate: string): boolean {
  const header = candidate.slice(0, Math.min(candidate.indexOf('.'), HEADER_PREFIX))
  return /^\s*\{/.test(Buffer.from(header, 'base64url').toString('latin1'))
}

/** True when `text` holds a compact JWT anywhere. */
export function containsJwt(text: string): boolean {
  for (const [candidate] of text.matchAll(CANDIDATE)) if (isJoseHeader(candidate)) return true
  return false
}
