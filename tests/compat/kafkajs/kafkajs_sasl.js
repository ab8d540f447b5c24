// kafkajs 2.x over SASL_PLAINTEXT (run by tests/compat/sasl/test_sasl.py): PLAIN and
// SCRAM-SHA-512 producers whose records come back through a consumer group; a wrong password
// fails with KafkaJSSASLAuthenticationError and writes nothing.
// Usage: node kafkajs_sasl.js BOOTSTRAP. Exit 0 only when every check passed.
'use strict'
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap] = process.argv.slice(2)
let failures = 0
function check (ok, what, detail) {
  console.log((ok ? 'ok: ' : 'FAIL: ') + what + (ok || detail === undefined ? '' : ': ' + detail))
  if (!ok) failures++
}

function client (mechanism, username, password) {
  return new Kafka({
    clientId: 'laminar-kafkajs-sasl',
    brokers: [bootstrap],
    sasl: { mechanism, username, password },
    logLevel: logLevel.NOTHING,
    retry: { retries: 1, initialRetryTime: 100 }
  })
}

async function roundTrip (mechanism, username, password, topic) {
  const k = client(mechanism, username, password)
  const p = k.producer()
  await p.connect()
  const msgs = []
  for (let i = 0; i < 20; i++) msgs.push({ key: 'k' + i, value: mechanism + '-' + i })
  await p.send({ topic, messages: msgs })
  await p.disconnect()
  const c = k.consumer({ groupId: 'js-' + topic })
  await c.connect()
  await c.subscribe({ topic, fromBeginning: true })
  const got = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('timeout, got ' + got.length)), 30000)
    c.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString())
        if (got.length === msgs.length) { clearTimeout(timer); resolve() }
      }
    }).catch(reject)
  })
  await c.disconnect()
  check(got.join(',') === msgs.map(m => m.value).join(','),
    `kafkajs ${mechanism} as ${username}: 20 records produced and consumed in a group`)
}

async function main () {
  await roundTrip('plain', 'alice', 'alice-secret', 'js-plain')
  await roundTrip('scram-sha-512', 'bob', 'bob-secret', 'js-scram')
  for (const [mech, user, pw] of [['scram-sha-512', 'bob', 'wrong'], ['plain', 'nobody', 'x']]) {
    const p = client(mech, user, pw).producer()
    try {
      await p.connect()
      await p.send({ topic: 'js-plain', messages: [{ value: 'must-not-exist' }] })
      check(false, `kafkajs ${mech} ${user}/${pw} refused`)
    } catch (e) {
      check(e.name === 'KafkaJSSASLAuthenticationError',
        `kafkajs ${mech} ${user}/${pw} refused (${e.name}: ${e.message.slice(0, 80)})`, e.name)
    }
  }
  const admin = client('plain', 'admin', 'admin-secret').admin()
  await admin.connect()
  const offs = await admin.fetchTopicOffsets('js-plain')
  check(offs[0].high === '20', 'kafkajs: the refused clients wrote nothing', offs[0].high)
  await admin.disconnect()
}

main().then(() => process.exit(failures ? 1 : 0),
  e => { console.log('FAIL: ' + e.stack); process.exit(1) })
