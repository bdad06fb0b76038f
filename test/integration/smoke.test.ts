import t from 'tap'
import { buildTestApp } from '../helpers/app.js'

t.test('healthz answers and unknown routes are 404', async (t) => {
  const app = await buildTestApp(t)
  const health = await app.inject('/healthz')
  t.equal(health.statusCode, 200)
  const missing = await app.inject('/nope')
  t.equal(missing.statusCode, 404)
  const docs = await app.inject('/docs/json')
  t.equal(docs.statusCode, 200)
})
