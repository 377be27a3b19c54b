// The agent's pipeline in one process with a real collector on 127.0.0.1:
// hostile lines, heartbeats, declared gaps, a collector ahead of the
// checkpoint, and a signing key replaced at runtime.
import { appendFileSync, copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import t from 'tap'
import { AuditAgent } from '../../agent/agent.ts'
import { generateKeyPair } from '../../agent/keygen.ts'
import { RECORD_PREFIX } from '../../collector/export.ts'
import { startCollector } from '../../collector/server.ts'
import { verifyStore } from '../../collector/verify.ts'
import { loadTrustedKeys } from '../../proto/keys.ts'
import { agentRig, exportRecords, until } from './agent-rig.ts'

const event = (i: number) => `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"${String(i).padStart(8, '0')}-1111-4000-8000-000000000000","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"u"},"stageTimestamp":"2026-11-25T10:00:00.000000Z"}`
/** Waits until the collector's export holds a line containing `text` (an auditID, or part of one). */
const untilStored = (store: string, text: string, what: string) => until(what, async () => (await exportRecords(store)).some((l) => l.includes(text)))

const notes = (lines: string[], kind: string) => lines.filter((l) => l.startsWith(RECORD_PREFIX)).map((l) => JSON.parse(l.slice(RECORD_PREFIX.length))).filter((n) => n.kind === kind)

t.test('hostile lines: not JSON and invalid UTF-8 ship as unparsed evidence; a 5 MiB line is quarantined on the node', async (t) => {
  const s = await agentRig(t)
  const big = Buffer.concat([Buffer.from('{"kind":"Event","x":"'), Buffer.alloc(5 * 1024 * 1024, 0x61), Buffer.from('"}')])
  const invalid = Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]) // {"\xff\xfe"}
  writeFileSync(s.logPath, Buffer.concat([Buffer.from(`${event(1)}\nthis is not json\n`), invalid, Buffer.from('\n'), big, Buffer.from(`\n${event(2)}\n`)]))
  const agent = await s.start()
  await untilStored(s.store, '00000002-1111', 'five records')
  const lines = await exportRecords(s.store)
  const unparsed = notes(lines, 'unparsed')
  t.equal(unparsed.length, 2)
  t.match(unparsed[0].reason, /JSON/i)
  t.match(unparsed[1].reason, /UTF-8/)
  t.ok(lines.includes(invalid.toString('latin1')), 'the invalid bytes ship exactly as read')
  const [q] = notes(lines, 'quarantine')
  t.equal(q.length, big.length)
  t.equal(q.offset, event(1).length + 1 + 'this is not json'.length + 1 + invalid.length + 1)
  t.ok(existsSync(q.storedAs) && readFileSync(q.storedAs).equals(big), 'the line is kept in the quarantine directory')
})

t.test('silence is visible: heartbeats keep coming when nothing is written', async (t) => {
  const s = await agentRig(t, (c) => { c.batch.heartbeatIntervalMs = 100 })
  writeFileSync(s.logPath, `${event(1)}\n`)
  const agent = await s.start()
  await until('three heartbeats', async () => notes(await exportRecords(s.store), 'heartbeat').length >= 3)
  t.pass('heartbeats sealed and stored')
})

t.test('a file that shrinks is declared as a gap in the stream', async (t) => {
  const s = await agentRig(t)
  writeFileSync(s.logPath, `${event(1)}\n${event(2)}\n`)
  const agent = await s.start()
  await until('two events', async () => (await exportRecords(s.store)).filter((l) => l.startsWith('{')).length === 2)
  truncateSync(s.logPath, 0)
  appendFileSync(s.logPath, `${event(3)}\n`)
  await untilStored(s.store, '00000003-1111', 'the event after the gap')
  const [gap] = notes(await exportRecords(s.store), 'gap')
  t.equal(gap.fromOffset, 2 * (event(1).length + 1))
  t.match(gap.reason, /shrank/)
})

t.test('a checkpoint that cannot be written does not stop shipping; the next acknowledgement writes it', async (t) => {
  const s = await agentRig(t)
  writeFileSync(s.logPath, `${event(1)}\n`)
  const agent = await s.start()
  await untilStored(s.store, '00000001-1111', 'the first event')
  await agent.drained()
  const checkpoint = join(s.config.stateDir, 'checkpoint.json')
  // A directory where the checkpoint goes: the rename over it fails.
  rmSync(checkpoint)
  mkdirSync(checkpoint)
  appendFileSync(s.logPath, `${event(2)}\n`)
  await untilStored(s.store, '00000002-1111', 'the second event')
  await until('the failed write logged', () => s.logs.some((l) => l.includes('writing the checkpoint failed')))
  t.same(readdirSync(s.config.stateDir).filter((f) => f.endsWith('.tmp')), [], 'no temp file left by the failed writes')
  rmdirSync(checkpoint)
  appendFileSync(s.logPath, `${event(3)}\n`)
  await untilStored(s.store, '00000003-1111', 'the third event')
  await agent.drained()
  const saved = JSON.parse(readFileSync(checkpoint, 'utf8'))
  t.equal(saved.nextSequence, (await s.collector.store.head('node-a'))!.sequence + 1, 'the checkpoint stands at the collector\'s head')
  t.equal(saved.position.offset, 3 * (event(1).length + 1), 'and at the end of the log')
})

t.test('the collector is ahead of the checkpoint (crash between ack and checkpoint): the agent continues after its head, no fork, no duplicate', async (t) => {
  const s = await agentRig(t)
  writeFileSync(s.logPath, `${event(1)}\n`)
  const first = await s.start()
  await untilStored(s.store, '00000001-1111', 'the first event')
  await first.drained()
  await first.stop()
  const checkpoint = join(s.config.stateDir, 'checkpoint.json')
  const old = readFileSync(checkpoint)
  // Ship more, then put the old checkpoint back: as if the agent died before writing the new one.
  appendFileSync(s.logPath, `${event(2)}\n`)
  const second = await s.start()
  await untilStored(s.store, '00000002-1111', 'the second event')
  await second.drained()
  await second.stop()
  writeFileSync(checkpoint, old)
  appendFileSync(s.logPath, `${event(3)}\n`)
  const third = await s.start()
  await untilStored(s.store, '00000003-1111', 'the third event')
  const events = (await exportRecords(s.store)).filter((l) => l.startsWith('{'))
  t.same(events, [event(1), event(2), event(3)], 'each event once, in order')
  const result = await verifyStore(s.store, loadTrustedKeys([s.keys.publicKeyFile]))
  t.equal(result.ok, true, JSON.stringify(result.problem))
})

t.test('the collector is behind the checkpoint (it lost batches, or an acknowledgement lied): the agent reads again from after its head, skipping nothing', async (t) => {
  const s = await agentRig(t)
  const port = Number(new URL(s.config.collector.urls[0]!).port)
  writeFileSync(s.logPath, `${event(1)}\n`)
  const first = await s.start()
  await untilStored(s.store, '00000001-1111', 'the first event')
  await first.drained()
  await first.stop()
  // The store as it was then: the collector that answers later holds only this.
  await s.collector.close()
  const behind = join(s.dir, 'store-behind')
  cpSync(s.store, behind, { recursive: true })
  const ahead = await startCollector({ listen: { host: '127.0.0.1', port }, storeDir: s.store, trustedKeys: loadTrustedKeys([s.keys.publicKeyFile]) })
  appendFileSync(s.logPath, `${event(2)}\n${event(3)}\n`)
  const second = await s.start()
  await untilStored(s.store, '00000003-1111', 'the second and third events')
  await second.drained()
  await second.stop()
  await ahead.close()
  const collector = await startCollector({ listen: { host: '127.0.0.1', port }, storeDir: behind, trustedKeys: loadTrustedKeys([s.keys.publicKeyFile]) })
  s.closeLater(() => collector.close())
  appendFileSync(s.logPath, `${event(4)}\n`)
  await s.start()
  await untilStored(behind, '00000004-1111', 'the fourth event')
  const events = (await exportRecords(behind)).filter((l) => l.startsWith('{'))
  t.same(events, [event(1), event(2), event(3), event(4)], 'what the collector lacked was sent again, each event once')
  t.ok(s.logs.some((l) => l.includes('reading again from after its head')), 'the log says why')
  const result = await verifyStore(behind, loadTrustedKeys([s.keys.publicKeyFile]))
  t.equal(result.ok, true, JSON.stringify(result.problem))
})

t.test('a new signing key file is picked up at runtime; the chain continues under the new key id', async (t) => {
  let reload = 0
  const s = await agentRig(t, (c) => { c.signing.reloadIntervalMs = 100 })
  const next = generateKeyPair(join(s.dir, 'next'))
  await s.collector.close()
  const both = loadTrustedKeys([s.keys.publicKeyFile, next.publicKeyFile])
  const collector = await startCollector({ listen: { host: '127.0.0.1', port: Number(new URL(s.config.collector.urls[0]!).port) }, storeDir: s.store, trustedKeys: both })
  s.closeLater(() => collector.close())
  writeFileSync(s.logPath, `${event(1)}\n`)
  const agent = await s.start()
  await untilStored(s.store, '00000001-1111', 'the first event')
  copyFileSync(next.keyFile, `${s.keys.keyFile}.new`)
  renameSync(`${s.keys.keyFile}.new`, s.keys.keyFile)
  reload++
  await new Promise((r) => setTimeout(r, 400))
  appendFileSync(s.logPath, `${event(2)}\n`)
  await untilStored(s.store, '00000002-1111', 'the second event')
  const result = await verifyStore(s.store, both)
  t.equal(result.ok, true, JSON.stringify(result.problem))
  const oldOnly = await verifyStore(s.store, loadTrustedKeys([s.keys.publicKeyFile]))
  t.equal(oldOnly.ok, false, 'later batches are signed by the new key')
  t.equal(reload, 1)
})

t.test('secret values, and the paths the config adds, are redacted before they ship; the line is marked with the paths removed', async (t) => {
  const s = await agentRig(t, (c) => {
    c.redact.extraPaths = { configmaps: ['requestObject.data.*'] }
  })
  const secret = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"5ec12e70-1111-4000-8000-000000000000","stage":"ResponseComplete","verb":"get","user":{"username":"alice"},"objectRef":{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"},"responseObject":{"kind":"Secret","data":{"password":"aHVudGVyMg=="}},"stageTimestamp":"2026-11-25T10:00:00.000000Z"}`
  const configMap = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"c0f16000-1111-4000-8000-000000000000","stage":"ResponseComplete","verb":"create","user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"default","name":"app","apiVersion":"v1"},"requestObject":{"kind":"ConfigMap","data":{"dsn":"postgres://app:hunter2@db"}},"stageTimestamp":"2026-11-25T10:00:01.000000Z"}`
  writeFileSync(s.logPath, `${secret}\n${configMap}\n`)
  await s.start()
  await untilStored(s.store, 'c0f16000', 'both events')
  const lines = await exportRecords(s.store)
  t.same(notes(lines, 'redacted').map((n) => n.paths), [['responseObject.data.password'], ['requestObject.data.dsn']])
  const shipped = lines.find((l) => l.includes('5ec12e70'))!
  t.notMatch(shipped, /aHVudGVyMg/)
  t.equal(shipped, secret.replace('"aHVudGVyMg=="', shipped.match(/"auditrail:redacted:sha256:[0-9a-f]{16}"/)![0]))
  t.notMatch(lines.find((l) => l.includes('c0f16000') && !l.startsWith('#'))!, /hunter2/)
})

t.test('guardrail findings travel in the batch of their event, are counted, and reach onFinding at once', async (t) => {
  const rulesDir = t.testdir({ 'mine.yaml': 'id: list-by-u\ntitle: u lists\nseverity: high\nmatch:\n  verbs: [list]\n  users: [u]\noutput: "{{ event.user.username }} listed {{ event.requestURI }}"\n' })
  const s = await agentRig(t, (c) => {
    c.rules.dirs = [rulesDir]
  })
  const privileged = JSON.stringify({
    kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'Request', auditID: 'priv-0001', stage: 'ResponseComplete', verb: 'create', requestURI: '/api/v1/namespaces/default/pods',
    user: { username: 'mallory', groups: ['system:authenticated'] }, objectRef: { resource: 'pods', namespace: 'default', name: 'x', apiVersion: 'v1' }, responseStatus: { code: 201 },
    requestObject: { kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'c', image: 'busybox', securityContext: { privileged: true } }] } },
    stageTimestamp: '2026-11-25T10:00:00.000000Z',
  })
  writeFileSync(s.logPath, `${event(1)}\n${privileged}\n`)
  const seen: string[] = []
  const agent = new AuditAgent(s.config, { logger: pino({ level: 'silent' }), onFinding: (f, ev) => void seen.push(`${f.id}@${ev.auditID}`) })
  s.closeLater(() => agent.stop())
  await agent.start()
  await untilStored(s.store, 'priv-0001', 'both lines')
  const lines = await exportRecords(s.store)
  const findings = notes(lines, 'finding')
  t.same(findings.map((f) => [f.id, f.severity, f.auditId]), [['list-by-u', 'high', '00000001-1111-4000-8000-000000000000'], ['pod-created', 'info', 'priv-0001'], ['privileged-container', 'high', 'priv-0001']])
  t.equal(findings[0].message, 'u listed /api/v1/pods')
  // Finding notes stand right before the line they are about.
  const at = lines.findIndex((l) => !l.startsWith('#') && l.includes('priv-0001'))
  t.same(lines.slice(at - 2, at).map((l) => JSON.parse(l.slice(RECORD_PREFIX.length)).id), ['pod-created', 'privileged-container'])
  t.same(seen, ['list-by-u@00000001-1111-4000-8000-000000000000', 'pod-created@priv-0001', 'privileged-container@priv-0001'])
  const counted = (await agent.metrics.findings.get()).values.map((v) => `${v.labels.id}:${v.labels.severity}:${v.value}`).sort()
  t.same(counted, ['list-by-u:high:1', 'pod-created:info:1', 'privileged-container:high:1'])
})

t.test('findings group: onFinding hears a group open, grow and end; every matched event keeps its finding, tagged with its group, in the batch', async (t) => {
  const rulesDir = t.testdir({ 'mine.yaml': 'id: list-by-u\ntitle: u lists\nseverity: high\nmatch:\n  verbs: [list]\n  users: [u]\ngroup: { by: [user], window: 1m }\n' })
  const s = await agentRig(t, (c) => {
    c.rules.dirs = [rulesDir]
    c.rules.builtin = false
  })
  const at = (i: number, time: string) => event(i).replace('2026-11-25T10:00:00.000000Z', time)
  // Three in the minute, then one two minutes on: the first group ends, a second opens.
  writeFileSync(s.logPath, [at(1, '2026-11-25T10:00:00.000000Z'), at(2, '2026-11-25T10:00:10.000000Z'), at(3, '2026-11-25T10:00:20.000000Z'), at(4, '2026-11-25T10:02:00.000000Z')].join('\n') + '\n')
  const seen: string[] = []
  const agent = new AuditAgent(s.config, { logger: pino({ level: 'silent' }), onFinding: (f, ev) => void seen.push(`${f.details.groupState}:${f.details.groupCount}:${ev.auditID.slice(0, 8)}`) })
  s.closeLater(() => agent.stop())
  await agent.start()
  await untilStored(s.store, '00000004-1111', 'the fourth line')
  t.same(seen, ['open:1:00000001', 'update:2:00000001', 'update:3:00000001', 'end:3:00000001', 'open:1:00000004'], 'the group speaks with its first event throughout')
  const findings = notes(await exportRecords(s.store), 'finding')
  t.same(findings.map((f) => f.auditId.slice(0, 8)), ['00000001', '00000002', '00000003', '00000004'], 'every matched event keeps its finding')
  const groups = findings.map((f) => f.details.group)
  t.ok(groups[0] && groups[0] === groups[1] && groups[1] === groups[2] && groups[3] && groups[3] !== groups[0], `tagged with their group (${[...new Set(groups)].join(', ')})`)
  const value = async (metric: { get(): Promise<{ values: { value: number }[] }> }) => (await metric.get()).values.reduce((n, v) => n + v.value, 0)
  t.equal(await value(agent.metrics.findings), 4, 'matched events counted')
  t.equal(await value(agent.metrics.findingGroups), 2, 'groups counted apart')
})

t.test('mTLS to the collector; a rotated collector CA and client certificate are picked up without a restart', async (t) => {
  const s = await agentRig(t, (c) => {
    c.signing.reloadIntervalMs = 100
  })
  const { makeCa, makeLeaf } = await import('./ship/tls-certificates.ts')
  const pki = join(s.dir, 'pki')
  mkdirSync(pki)
  const ca1 = makeCa(pki, 'ca1')
  const ca2 = makeCa(pki, 'ca2')
  const mounted = { ca: join(pki, 'mounted-ca.crt'), cert: join(pki, 'mounted-client.crt'), key: join(pki, 'mounted-client.key') }
  // Each node's certificate names its stream: the collector lets it write and read that stream only.
  const client1 = makeLeaf(pki, 'client1', ca1, 'clientAuth', s.config.streamId)
  copyFileSync(ca1.certFile, mounted.ca)
  copyFileSync(client1.certFile, mounted.cert)
  copyFileSync(client1.keyFile, mounted.key)
  const startTls = async (ca: typeof ca1, port: number) => {
    const server = makeLeaf(pki, `server-${port}-${ca === ca1 ? 1 : 2}`, ca, 'serverAuth')
    const collector = await startCollector({
      listen: { host: '127.0.0.1', port }, storeDir: join(s.dir, 'tls-store'), trustedKeys: loadTrustedKeys([s.keys.publicKeyFile]),
      tls: { cert: server.cert, key: server.key, ca: ca.cert, requireClientCert: true },
    })
    s.closeLater(() => collector.close())
    return collector
  }
  let collector = await startTls(ca1, 0)
  s.config.collector.urls = [collector.url]
  s.config.collector.caFile = mounted.ca
  s.config.collector.certFile = mounted.cert
  s.config.collector.keyFile = mounted.key
  writeFileSync(s.logPath, `${event(1)}\n`)
  await s.start()
  const stored = async () => (await exportRecords(join(s.dir, 'tls-store'))).filter((l) => !l.startsWith('#')).length
  await until('the first line over mTLS', async () => (await stored()) === 1)

  // The PKI is replaced: a new CA signs the collector's and the agent's certificates (the Secrets are updated in place).
  const port = collector.port
  await collector.close()
  collector = await startTls(ca2, port)
  const client2 = makeLeaf(pki, 'client2', ca2, 'clientAuth', s.config.streamId)
  copyFileSync(ca2.certFile, mounted.ca)
  copyFileSync(client2.keyFile, mounted.key)
  copyFileSync(client2.certFile, mounted.cert)
  appendFileSync(s.logPath, `${event(2)}\n`)
  await until('the second line over the new PKI', async () => (await stored()) === 2)
  t.pass('shipped with the renewed CA and client certificate')
})

t.test('a crash before the first acknowledgement: the restart resumes where the first start began, even after the log rotated', async (t) => {
  const s = await agentRig(t, (c) => {
    c.batch.maxWaitMs = 60_000 // nothing is sealed, so nothing acknowledged, while the test rotates the log
    c.collector.retryMaxDelayMs = 100
  })
  writeFileSync(s.logPath, `${event(1)}\n${event(2)}\n`)
  const first = await s.start()
  t.ok(existsSync(join(s.config.stateDir, 'checkpoint.json')), 'the starting position is checkpointed before anything is acknowledged')
  await s.collector.close()
  renameSync(s.logPath, join(s.dir, 'log', 'audit-2026-11-25T10-00-00.000.log'))
  writeFileSync(s.logPath, `${event(3)}\n`)
  await first.stop(200)

  const collector = await startCollector({ listen: { host: '127.0.0.1', port: 0 }, storeDir: s.store, trustedKeys: loadTrustedKeys([s.keys.publicKeyFile]) })
  s.closeLater(() => collector.close())
  s.config.collector.urls = [collector.url]
  s.config.batch.maxWaitMs = 50
  await s.start()
  await until('all three events', async () => (await exportRecords(s.store)).filter((l) => !l.startsWith('#')).length >= 3)
  const lines = (await exportRecords(s.store)).filter((l) => !l.startsWith('#'))
  t.same(lines.map((l) => JSON.parse(l).auditID.slice(0, 8)), ['00000001', '00000002', '00000003'], 'the rotated file from its start, then the new one: nothing lost, nothing twice')
})
