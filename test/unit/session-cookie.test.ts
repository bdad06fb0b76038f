import t from 'tap'
import { SESSION_COOKIE, SessionCookie, type CookieJar } from '../../src/auth/session.js'

/** A jar that keeps what was set or cleared, with its attributes. */
function jar() {
  const calls: { op: 'set' | 'clear'; name: string; value?: string; options: object }[] = []
  const cookies: CookieJar = {
    setCookie: (name, value, options) => calls.push({ op: 'set', name, value, options }),
    clearCookie: (name, options) => calls.push({ op: 'clear', name, options })
  }
  return { cookies, calls }
}

const NOW_S = 1_800_000_000

t.test('the cookie lasts what the token has left, never 0 (which would delete it)', async (t) => {
  const session = new SessionCookie({ secure: true, clock: () => NOW_S * 1000 + 999 })
  const cases: [number | undefined, number | undefined, string][] = [
    [NOW_S + 900, 900, 'the rest of the token life'],
    [NOW_S + 1, 1, 'one second left'],
    [NOW_S - 3, 1, 'expired inside the clock tolerance (the token was accepted): one second, not Max-Age=0'],
    [undefined, undefined, 'no exp: no Max-Age, a browser-session cookie']
  ]
  for (const [exp, maxAge, name] of cases) {
    const { cookies, calls } = jar()
    t.equal(session.set(cookies, 'jwt', exp), maxAge, name)
    t.same(calls, [
      {
        op: 'set',
        name: SESSION_COOKIE,
        value: 'jwt',
        options: { httpOnly: true, sameSite: 'lax', path: '/events', secure: true, ...(maxAge === undefined ? {} : { maxAge }) }
      }
    ])
  }
})

t.test('clearing uses the same name, path and attributes (or the browser keeps the cookie)', async (t) => {
  const { cookies, calls } = jar()
  new SessionCookie({ secure: false }).clear(cookies)
  t.same(calls, [{ op: 'clear', name: SESSION_COOKIE, options: { httpOnly: true, sameSite: 'lax', path: '/events', secure: false } }])
})
