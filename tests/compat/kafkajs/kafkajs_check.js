// kafkajs 2.x against laminar: admin createTopics / fetchTopicMetadata / describeConfigs /
// alterConfigs / createPartitions / deleteTopics, a producer sending keyed records with
// headers (no codec and gzip), and the records counted back through admin.fetchTopicOffsets.
// kafkajs consumers need consumer groups (JoinGroup/SyncGroup, issue 5), so reading back the
// records themselves is left to the group work; the offsets prove every record was appended.
// Usage: node kafkajs_check.js BOOTSTRAP NODE_ID. Exit 0 only when every check passed.
'use strict'
const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = require('kafkajs')

const [bootstrap, nodeIdArg] = process.argv.slice(2)
const nodeId = Number(nodeIdArg)
let failures = 0
function check (ok, what, detail) {
  if (ok) {
    console.log('ok: ' + what)
  } else {
    failures++
    console.log('FAIL: ' + what + (detail === undefined ? '' : ': ' + JSON.stringify(detail)))
  }
}

async function configsOf (admin, topic, names) {
  const r = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: names }],
    includeSynonyms: false
  })
  const out = {}
  for (const e of r.resources[0].configEntries) out[e.configName] = e
  return { resource: r.resources[0], entries: out }
}

async function main () {
  const kafka = new Kafka({
    clientId: 'laminar-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    retry: { retries: 3, initialRetryTime: 100 }
  })
  const admin = kafka.admin()
  await admin.connect()
  const topic = 'kafkajs-topic'

  const created = await admin.createTopics({
    topics: [{
      topic,
      numPartitions: 3,
      replicationFactor: 1,
      configEntries: [{ name: 'retention.ms', value: '3600000' }]
    }],
    waitForLeaders: true
  })
  check(created === true, 'createTopics', created)
  const again = await admin.createTopics({ topics: [{ topic, numPartitions: 3 }] })
  check(again === false, 'createTopics of an existing topic returns false', again)
  let err = null
  try {
    await admin.createTopics({
      topics: [{ topic: 'kafkajs-rf3', numPartitions: 1, replicationFactor: 3 }]
    })
  } catch (e) { err = e }
  check(err !== null && /replication/i.test(String(err.message) + JSON.stringify(err.errors || [])),
    'createTopics with replication factor 3 fails', err && err.message)

  const topics = await admin.listTopics()
  check(topics.includes(topic) && !topics.includes('kafkajs-rf3'), 'listTopics', topics)

  let md = await admin.fetchTopicMetadata({ topics: [topic] })
  const parts = md.topics[0].partitions
  check(parts.length === 3 && parts.every(p => p.leader === nodeId && p.partitionErrorCode === 0),
    'fetchTopicMetadata: 3 partitions led by node ' + nodeId, parts)

  let c = await configsOf(admin, topic, ['retention.ms', 'cleanup.policy', 'segment.bytes'])
  check(c.resource.errorCode === 0, 'describeConfigs', c.resource)
  check(c.entries['retention.ms'] && c.entries['retention.ms'].configValue === '3600000' &&
        c.entries['retention.ms'].isDefault === false, 'describeConfigs retention.ms override',
  c.entries['retention.ms'])
  check(c.entries['segment.bytes'] && c.entries['segment.bytes'].configValue === '1073741824' &&
        c.entries['segment.bytes'].isDefault === true, 'describeConfigs segment.bytes default',
  c.entries['segment.bytes'])
  check(Object.keys(c.entries).length === 3, 'describeConfigs honours configNames',
    Object.keys(c.entries))

  // AlterConfigs replaces the whole set: retention.ms goes back to its default.
  await admin.alterConfigs({
    validateOnly: false,
    resources: [{
      type: ConfigResourceTypes.TOPIC,
      name: topic,
      configEntries: [{ name: 'cleanup.policy', value: 'compact' }]
    }]
  })
  c = await configsOf(admin, topic, ['retention.ms', 'cleanup.policy'])
  check(c.entries['cleanup.policy'].configValue === 'compact' &&
        c.entries['retention.ms'].configValue === '604800000', 'alterConfigs replaces overrides',
  c.entries)
  err = null
  try {
    await admin.alterConfigs({
      resources: [{
        type: ConfigResourceTypes.TOPIC,
        name: topic,
        configEntries: [{ name: 'retention.ms', value: 'never' }]
      }]
    })
  } catch (e) { err = e }
  check(err !== null && /INVALID_CONFIG|invalid/i.test(String(err.type) + String(err.message)),
    'alterConfigs with an invalid value fails', err && [err.type, err.message])

  await admin.createPartitions({ topicPartitions: [{ topic, count: 4 }] })
  md = await admin.fetchTopicMetadata({ topics: [topic] })
  check(md.topics[0].partitions.length === 4, 'createPartitions to 4',
    md.topics[0].partitions.length)

  const cluster = await admin.describeCluster()
  check(cluster.brokers.length === 1 && cluster.brokers[0].nodeId === nodeId &&
        cluster.controller === nodeId && typeof cluster.clusterId === 'string' &&
        cluster.clusterId.length > 0, 'describeCluster', cluster)

  // Producer: per partition p, 50 * (p + 1) records, half without a codec, half gzip.
  const producer = kafka.producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const expected = [0, 0, 0, 0]
  for (const compression of [CompressionTypes.None, CompressionTypes.GZIP]) {
    const messages = []
    for (let p = 0; p < 4; p++) {
      for (let i = 0; i < 25 * (p + 1); i++) {
        messages.push({
          partition: p, key: 'k' + p + '-' + i, value: 'v'.repeat(i + 1), headers: { h: 'x' + i }
        })
        expected[p]++
      }
    }
    const res = await producer.send({ topic, acks: -1, compression, messages })
    check(res.length === 4 && res.every(r => r.errorCode === 0),
      'producer.send (' + (compression === 0 ? 'none' : 'gzip') + ')', res)
  }
  await producer.disconnect()

  const offsets = await admin.fetchTopicOffsets(topic)
  offsets.sort((a, b) => a.partition - b.partition)
  check(offsets.length === 4 &&
        offsets.every(o => Number(o.low) === 0 && Number(o.high) === expected[o.partition]),
    'fetchTopicOffsets count every record sent ' + JSON.stringify(expected), offsets)

  await admin.deleteTopics({ topics: [topic] })
  const after = await admin.listTopics()
  check(!after.includes(topic), 'deleteTopics', after)
  err = null
  try { await admin.deleteTopics({ topics: ['kafkajs-missing'] }) } catch (e) { err = e }
  check(err !== null, 'deleteTopics of a missing topic fails')

  await admin.disconnect()
}

const t0 = Date.now()
main().then(() => {
  const verdict = failures === 0 ? 'all checks passed' : failures + ' check(s) failed'
  console.log('kafkajs: ' + verdict + ' in ' + (Date.now() - t0) + ' ms')
  process.exit(failures === 0 ? 0 : 1)
}, (e) => {
  console.log('FAIL: exception: ' + (e && e.stack ? e.stack : e))
  process.exit(1)
})
