import t from 'tap'
import { REDIS_URL } from '../helpers/app.js'
import { failoverUnderSse } from '../helpers/failover.js'

t.test('three replicas behind nginx on one Redis: leader failover and replica kill under SSE', (t) => failoverUnderSse(t, { REDIS_URL }))
