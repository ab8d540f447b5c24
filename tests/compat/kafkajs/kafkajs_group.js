// kafkajs 2.x consumer groups against laminar (issue 5): an idempotent producer writes keyed
// records, two consumers of one group read them all (each with a share of the partitions,
// seen in GROUP_JOIN events), offsets are committed (admin.fetchOffsets = log end), then
// admin.describeGroups / listGroups / deleteGroups.
// Usage: node kafkajs_group.js BOOTSTRAP. Exit 0 only when every check passed.
'use strict'
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap] = process.argv.slice(2)
let failures = 0
function check (ok, what, detail) {
  console.log((ok ? 'ok: ' : 'FAIL: ') + what + (ok || detail === undefined ? '' : ': ' +
    JSON.stringify(detail)))
  if (!ok) failures++
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function waitFor (cond, ms, what) {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + what)
    await sleep(50)
  }
}

async function main () {
  const kafka = new Kafka({
    clientId: 'laminar-kafkajs-group',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    retry: { retries: 5, initialRetryTime: 100 }
  })
  const topic = 'kafkajs-group-topic'
  const groupId = 'kafkajs-group'
  const N = 120
  const admin = kafka.admin()
  await admin.connect()
  await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true })

  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 })
  await producer.connect()
  for (let i = 0; i < N; i += 20) {
    const messages = []
    for (let j = i; j < i + 20; j++) {
      messages.push({ key: 'k' + j, value: 'v' + j, partition: j % 4 })
    }
    await producer.send({ topic, messages })
  }
  await producer.disconnect()

  const seen = new Set()
  const joins = {}
  const consumers = []
  for (const name of ['a', 'b']) {
    const c = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500,
      maxWaitTimeInMs: 100 })
    c.on(c.events.GROUP_JOIN, (e) => { joins[name] = e.payload.memberAssignment })
    await c.connect()
    await c.subscribe({ topic, fromBeginning: true })
    await c.run({ eachMessage: async ({ message }) => { seen.add(message.value.toString()) } })
    consumers.push(c)
  }
  await waitFor(() => seen.size === N, 60000, 'every record')
  await waitFor(() => {
    const a = (joins.a || {})[topic] || []
    const b = (joins.b || {})[topic] || []
    return a.length + b.length === 4 && a.length > 0 && b.length > 0
  }, 60000, 'both members with partitions')
  check(true, 'two members share the 4 partitions: ' + JSON.stringify(joins))
  check(seen.size === N, 'read all ' + N + ' records')
  const described = await admin.describeGroups([groupId])
  const g = described.groups[0]
  check(g.state === 'Stable' && g.members.length === 2 && g.protocolType === 'consumer',
    'describeGroups: Stable with two members', g)
  for (const c of consumers) await c.disconnect()
  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] })
  const total = offsets[0].partitions.reduce((s, p) => s + Number(p.offset), 0)
  check(total === N, 'committed offsets sum to ' + N, offsets)
  const listed = await admin.listGroups()
  check(listed.groups.some((x) => x.groupId === groupId), 'listGroups', listed)
  await admin.deleteGroups([groupId])
  const after = await admin.listGroups()
  check(!after.groups.some((x) => x.groupId === groupId), 'deleteGroups', after)
  await admin.disconnect()
  console.log(failures === 0 ? 'ALL OK' : failures + ' FAILURES')
  process.exit(failures === 0 ? 0 : 1)
}

main().catch((e) => {
  console.log('FAIL: ' + (e.stack || e))
  process.exit(1)
})
