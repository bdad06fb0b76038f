import t from 'tap'
import { failoverUnderSse } from '../helpers/failover.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'

t.test('three replicas behind nginx on a 3-primary Redis Cluster: leader failover and replica kill under SSE', async (t) => {
  const cluster = await startRedisCluster(t)
  await failoverUnderSse(t, { REDIS_CLUSTER_NODES: cluster.nodes })
})
