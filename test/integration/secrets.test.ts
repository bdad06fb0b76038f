import t from 'tap'
import { buildTestApp, logCapture } from '../helpers/app.js'
import { openclawEnv, startTestOpenClaw } from '../helpers/openclaw.js'
import { mint } from '../helpers/tokens.js'

const rating = { user_id: 'u-secret', item_id: 'i-secret', timestamp: 1721234567, rating: 1.5 }

for (const level of ['debug', 'info']) {
  t.test(`at LOG_LEVEL ${level} neither the OpenClaw key nor a JWT reaches a log line or an answer`, async (t) => {
    const sim = await startTestOpenClaw(t, { apiKey: `oc-secret-${level}-9d8e7f6a5b4c` })
    const logs = logCapture()
    const app = await buildTestApp(t, { ...openclawEnv(sim, 1500), LOG_LEVEL: level }, { logStream: logs.stream })
    const jwt = await mint({ sub: 'u-secret', agent_id: 'a-secret' })
    const authorization = `Bearer ${jwt}`
    const forged = await mint({ sub: 'u-secret', agent_id: 'a-secret' }, { key: 'some-other-secret-that-is-long-enough' })
    const post = (auth: string, payload: object = rating) =>
      app.inject({ method: 'POST', url: '/v1/rating', headers: { authorization: auth }, payload })

    const answers = [await post(authorization)]
    t.equal(answers[0].statusCode, 200, 'success')
    await sim.set({ errorRate: 1 })
    answers.push(await post(authorization))
    t.equal(answers[1].statusCode, 502, 'upstream 500')
    await sim.set({ errorRate: 0, stall: true })
    answers.push(await post(authorization))
    t.equal(answers[2].statusCode, 504, 'upstream timeout')
    await sim.set({ stall: false, down: true })
    answers.push(await post(authorization))
    t.equal(answers[3].statusCode, 502, 'upstream down')
    await sim.set({ down: false })
    answers.push(await post(`Bearer ${forged}`))
    t.equal(answers[4].statusCode, 401, 'wrongly signed token: 401')
    answers.push(await post(authorization, { ...rating, rating: 9 }))
    t.equal(answers[5].statusCode, 400, 'bad body')
    answers.push(await app.inject('/metrics'))

    t.ok(logs.lines.length > 0, 'logs were captured')
    const secrets = { 'OpenClaw key': sim.apiKey, JWT: jwt, 'forged JWT': forged }
    for (const [name, secret] of Object.entries(secrets)) {
      t.notOk(logs.lines.find((line) => line.includes(secret)), `${name} not in any log line`)
      t.notOk(answers.find((a) => a.body.includes(secret)), `${name} not in any answer`)
      // The signature alone would be enough to abuse a token.
      const tail = secret.slice(-20)
      t.notOk(logs.lines.find((line) => line.includes(tail)), `no piece of the ${name} in the logs`)
    }
  })
}

t.test('defect 11: a JWT anywhere in a URL, or a ticket, never reaches a log line or a 404 body', async (t) => {
  const logs = logCapture()
  const app = await buildTestApp(t, { LOG_LEVEL: 'info' }, { logStream: logs.stream, memory: true })
  const jwt = await mint({ sub: 'u-url', agent_id: 'a-url' })
  const ticket = 'Tk7_' + 'q'.repeat(39)
  const percentEncoded = [...jwt].map((char) => `%${char.charCodeAt(0).toString(16).padStart(2, '0')}`).join('')
  const urls = [
    `/v1/scores?items=a&foo=${jwt}`,
    `/v1/scores?%74oken=${jwt}`,
    `/v1/scores?items=a&q=${percentEncoded}`,
    `/v1/scores?items=a&q=${encodeURIComponent(percentEncoded)}`,
    `/v1/scores?items=a&next=${encodeURIComponent(`https://example.com/cb?t=${jwt}`)}`,
    `/nope?x=${jwt}`,
    `/nope/${jwt}/more`,
    `/events/personalized-rating?ticket=${ticket}`,
    `/events/personalized-rating?%74icket=${ticket}`,
    `/events/personalized-rating?TICKET=${ticket}`
  ]
  const answers = []
  for (const url of urls) answers.push(await app.inject({ url }))
  t.ok(answers.every((res) => res.statusCode === 401 || res.statusCode === 404), 'each one refused or not found')
  t.ok(logs.lines.length >= urls.length, 'every request was logged')
  const signature = jwt.split('.')[2]
  for (const [name, secret] of Object.entries({ JWT: jwt, 'JWT signature': signature, ticket })) {
    t.notOk(logs.lines.find((line) => line.includes(secret)), `the ${name} is in no log line`)
    t.notOk(answers.find((res) => res.body.includes(secret)), `the ${name} is in no answer`)
  }
  t.notOk(logs.lines.find((line) => line.includes(percentEncoded.slice(-60))), 'nor its percent-encoded form')
  t.ok(logs.lines.some((line) => line.includes('/v1/scores?items=a&foo=[REDACTED]')), 'the rest of the URL is still logged')
  t.ok(logs.lines.some((line) => line.includes('Route GET:/nope?x=[REDACTED] not found')), 'a 404 names the route, redacted')
})
