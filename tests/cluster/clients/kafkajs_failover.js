// kafkajs for test_clients.py: a producer or a group consumer speaking the line protocol
// described in pyclients.py (NODE_PATH = tests/compat/kafkajs/node_modules).
//
//   node kafkajs_failover.js produce BOOTSTRAP TOPIC PREFIX  (idempotent, acks=all)
//   node kafkajs_failover.js consume BOOTSTRAP TOPIC GROUP   (commit after each batch)
//
// Both finish when stdin closes.
'use strict'
const { Kafka, logLevel } = require('kafkajs')

const [mode, bootstrap, topic, arg] = process.argv.slice(2)
const out = (line) => process.stdout.write(line + '\n')
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

let done = false
process.stdin.on('data', () => {})
process.stdin.on('end', () => { done = true })

const kafka = new Kafka({
  clientId: 'laminar-failover-' + mode,
  brokers: bootstrap.split(','),
  logLevel: logLevel.ERROR,
  // a leader's election takes 2-4 s: keep retrying for longer than that
  retry: { retries: 30, initialRetryTime: 100, maxRetryTime: 1000 }
})

async function produce (prefix) {
  // kafkajs's idempotent producer needs one request in flight
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1,
    metadataMaxAge: 1000 })
  await producer.connect()
  let seq = 0
  let batch = 0
  while (!done) {
    // ten records a send to one partition (in turn), about 100 a second; the answer's
    // baseOffset is the first record's offset, the others follow in the order given
    const partition = batch++ % 3
    const values = []
    for (let i = 0; i < 10; i++) values.push(prefix + '-' + String(seq++).padStart(7, '0'))
    try {
      const res = await producer.send({ topic, acks: -1,
        messages: values.map((v) => ({ key: v, value: v, partition })) })
      const base = Number(res[0].baseOffset)
      values.forEach((v, i) => out('ACK ' + v + ' ' + res[0].partition + ' ' + (base + i)))
    } catch (e) {
      for (const v of values) out('NACK ' + v + ' ' + String(e).replace(/\n/g, ' '))
    }
    await sleep(100)
  }
  await producer.disconnect()
  out('DONE sent=' + seq)
  process.exit(0) // kafkajs keeps timers alive
}

async function consume (group) {
  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 10000,
    heartbeatInterval: 500, maxWaitTimeInMs: 200, metadataMaxAge: 1000 })
  consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
    for (const t of e.payload.topics) {
      for (const p of t.partitions) out('COMMITTED ' + p.partition + ' ' + p.offset)
    }
  })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    autoCommit: true,
    eachBatchAutoResolve: true,
    eachBatch: async ({ batch }) => {
      for (const m of batch.messages) {
        out('READ ' + m.value.toString() + ' ' + batch.partition + ' ' + m.offset)
      }
    }
  })
  while (!done) await sleep(100)
  await consumer.disconnect() // commits what was read, leaves the group
  out('DONE')
  process.exit(0)
}

const run = mode === 'produce' ? produce : consume
run(arg).catch((e) => {
  out('FATAL ' + String(e.stack || e).replace(/\n/g, ' '))
  process.exit(2)
})
