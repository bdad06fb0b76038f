/** What the feed socket needs around `ws`: buffers, a loggable URL, a dead-peer watch. */
import { WebSocket, type RawData } from 'ws'
import { clampDelay } from '../shared/clock.js'

export function toBuffer(data: RawData): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data)
  return Buffer.isBuffer(data) ? data : Buffer.from(data)
}

/** The URL as it may be logged: no userinfo, no query (either may carry credentials). */
export function loggable(url: string): string {
  const parsed = new URL(url)
  return `${parsed.origin}${parsed.pathname}`
}

/**
 * Dead peer: no pong by the next ping, and the socket is terminated. Not while paused: pongs are
 * not read then. Returns the ping interval, to clear on close.
 */
export function watchPeer(ws: WebSocket, pingMs: number, paused: () => boolean, onSilent: () => void): NodeJS.Timeout {
  let awaitingPong = false
  ws.on('pong', () => {
    awaitingPong = false
  })
  return setInterval(() => {
    if (paused()) {
      awaitingPong = false
    } else if (awaitingPong) {
      onSilent()
      ws.terminate()
    } else {
      awaitingPong = true
      ws.ping()
    }
  }, clampDelay(pingMs)).unref()
}
