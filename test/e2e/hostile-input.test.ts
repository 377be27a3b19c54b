// A hostile-input corpus through the real pipeline in one process: an agent
// (built-in rules and detectors, plus a user rule with an expensive CEL
// expression) tails a log holding every hostile line, each followed by a normal
// event, and ships to a real collector on 127.0.0.1. Each hostile line has its
// asserted outcome (quarantined, shipped as unparsed evidence, or processed
// with the expected finding), the normal event after each is shipped, the
// store verifies, nothing pollutes Object.prototype, and memory stays bounded.
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { RECORD_PREFIX } from '../../collector/export.ts'
import { verifyStore } from '../../collector/verify.ts'
import { loadTrustedKeys } from '../../proto/keys.ts'
import { agentRig, exportRecords, until } from '../agent/agent-rig.ts'

const MiB = 1024 * 1024
const marker = (i: number) => `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"marker-${String(i).padStart(4, '0')}","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"u"},"stageTimestamp":"2026-11-25T10:00:00.000000Z"}`

/** A pod (or role) create as the apiserver logs it at RequestResponse, with a body of our choosing. */
function create(id: string, resource: string, namespace: string | undefined, body: string, extra = ''): string {
  const ns = namespace ? `"namespace":"${namespace}",` : ''
  return `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"${id}","stage":"ResponseComplete","requestURI":"/api/v1/${resource}","verb":"create","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":"kubectl","objectRef":{"resource":"${resource}",${ns}"name":"x","apiVersion":"v1"${resource.endsWith('roles') ? ',"apiGroup":"rbac.authorization.k8s.io"' : ''}},"responseStatus":{"code":201},"requestObject":${body},"requestReceivedTimestamp":"2026-11-25T10:00:00.000000Z","stageTimestamp":"2026-11-25T10:00:00.100000Z"${extra}}`
}
const pod = (containers: number, privileged: (i: number) => boolean, namespace = 'default') => JSON.stringify({
  kind: 'Pod', apiVersion: 'v1', metadata: { name: 'x', namespace },
  spec: { containers: Array.from({ length: containers }, (_, i) => ({ name: `c${i}`, image: 'registry.example/app:1', securityContext: { privileged: privileged(i) } })) },
})

// A user rule whose condition is quadratic: nested exists over the pod's containers.
const EXPENSIVE_RULE = `id: expensive-nested-exists
title: Two containers share a name (nested exists)
severity: low
match:
  verbs: [create]
  resources: [pods]
  namespaces: [cel-cost]
  codes: [201]
condition: containers.exists(a, containers.exists(b, a.name == b.name && b.name == "c999"))
`
const EXPENSIVE_CONTAINERS = 10_000

interface Case {
  name: string
  line: Buffer
  expect: 'quarantine' | 'unparsed' | 'event'
  reason?: RegExp
  findings?: string[]
  /** Shipped exactly as written (not redacted, not withheld). */
  verbatim?: boolean
}

const cases: Case[] = [
  { name: 'a raw NUL byte inside a JSON string', line: Buffer.from(create('nul-raw', 'pods', 'default', pod(1, () => false)).replace('"alice"', '"ali\u0000ce"')), expect: 'unparsed', reason: /JSON/, verbatim: true },
  { name: 'NUL bytes only', line: Buffer.alloc(64, 0), expect: 'unparsed', reason: /JSON/, verbatim: true },
  { name: 'an escaped NUL (\\u0000) in the user name', line: Buffer.from(create('nul-escaped', 'pods', 'default', pod(1, (i) => i === 0)).replace('"alice"', '"ali\\u0000ce"')), expect: 'event', findings: ['pod-created', 'privileged-container'], verbatim: true },
  { name: 'invalid UTF-8', line: Buffer.concat([Buffer.from('{"kind":"Event","auditID":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80]), Buffer.from('","stage":"ResponseComplete","verb":"get","user":{}}')]), expect: 'unparsed', reason: /UTF-8/, verbatim: true },
  { name: 'JSON nested 100,000 levels deep', line: Buffer.from(create('deep', 'configmaps', 'default', `${'['.repeat(100_000)}${']'.repeat(100_000)}`)), expect: 'event', findings: ['cluster-object-changed'], verbatim: true },
  { name: 'a 50 MiB line (limit 4 MiB)', line: Buffer.concat([Buffer.from('{"kind":"Event","auditID":"big","x":"'), Buffer.alloc(50 * MiB, 0x61), Buffer.from('"}')]), expect: 'quarantine' },
  { name: 'duplicate keys (the last one wins, as in JSON.parse)', line: Buffer.from(create('dup', 'pods', 'default', pod(1, () => false), `,"requestObject":${pod(1, () => true)},"verb":"create","responseStatus":{"code":201}`).replace('"responseStatus":{"code":201}', '"responseStatus":{"code":403}')), expect: 'event', findings: ['pod-created', 'privileged-container'], verbatim: true },
  { name: 'numbers beyond 2^53 (and beyond double range)', line: Buffer.from(create('bignum', 'configmaps', 'default', '{"kind":"ConfigMap","metadata":{"name":"x","resourceVersion":18446744073709551617},"data":{"n":"1"},"replicas":9007199254740993,"huge":1e400,"tiny":-1e400,"frac":0.30000000000000000000001}')), expect: 'event', findings: ['cluster-object-changed'], verbatim: true },
  {
    name: '__proto__ and constructor keys in the event',
    line: Buffer.from(create('proto', 'pods', 'default', `{"__proto__":{"polluted":"yes","kind":"Pod"},"constructor":{"prototype":{"polluted":"yes"}},"kind":"Pod","metadata":{"name":"x"},"spec":{"__proto__":{"containers":[{"name":"evil","securityContext":{"privileged":true}}]},"containers":[{"name":"c","securityContext":{"privileged":false}}]}}`)
      .replace('"user":{"username":"alice"', '"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"user":{"__proto__":{"username":"system:admin"},"username":"alice"')),
    // The own "__proto__" keys are data: the privileged container under spec.__proto__ is not a container.
    expect: 'event', findings: ['pod-created'], verbatim: true,
  },
  { name: 'a pod with 10,000 containers (the last privileged)', line: Buffer.from(create('wide-pod', 'pods', 'default', pod(10_000, (i) => i === 9_999))), expect: 'event', findings: ['pod-created', 'privileged-container'], verbatim: true },
  {
    name: 'a role with 10,000 rules (the last a wildcard)',
    line: Buffer.from(create('wide-role', 'clusterroles', undefined, JSON.stringify({ kind: 'ClusterRole', apiVersion: 'rbac.authorization.k8s.io/v1', metadata: { name: 'x' }, rules: Array.from({ length: 10_000 }, (_, i) => ({ apiGroups: [''], resources: [`r${i}`], verbs: i === 9_999 ? ['*'] : ['get'] })) }))),
    expect: 'event', findings: ['rbac-object-changed', 'role-with-wildcard'], verbatim: true,
  },
  { name: 'a user name that is an object with a non-callable toString', line: Buffer.from(create('tostring-user', 'pods', 'default', pod(1, () => true)).replace('"username":"alice"', '"username":{"toString":1}')), expect: 'unparsed', reason: /user/, verbatim: true },
  { name: 'a stageTimestamp that is an object with a non-callable toString', line: Buffer.from(create('tostring-time', 'pods', 'default', pod(1, () => true)).replace('"stageTimestamp":"2026-11-25T10:00:00.100000Z"', '"stageTimestamp":{"toString":1,"valueOf":1}')), expect: 'unparsed', reason: /stageTimestamp/, verbatim: true },
  { name: `an expensive user CEL rule (nested exists over ${EXPENSIVE_CONTAINERS} containers: 10^8 steps, stopped by the evaluation budget and counted as a match)`, line: Buffer.from(create('cel-cost', 'pods', 'cel-cost', pod(EXPENSIVE_CONTAINERS, () => false, 'cel-cost'))), expect: 'event', findings: ['expensive-nested-exists', 'pod-created'], verbatim: true },
]

interface Note { kind: string; offset: number; reason?: string; id?: string; length?: number; storedAs?: string }
const notesOf = (lines: string[]): Note[] => lines.filter((l) => l.startsWith(RECORD_PREFIX)).map((l) => JSON.parse(l.slice(RECORD_PREFIX.length)) as Note)

t.test('hostile inputs through the agent: each has its outcome, the pipeline keeps going, memory stays bounded', async (t) => {
  const s = await agentRig(t, (c) => {
    const rulesDir = join(c.stateDir, '..', 'rules')
    mkdirSync(rulesDir, { recursive: true })
    writeFileSync(join(rulesDir, 'expensive.yaml'), EXPENSIVE_RULE)
    c.rules.dirs = [rulesDir]
  })
  // The log: a marker, then each hostile line followed by the next marker.
  const parts: Buffer[] = [Buffer.from(`${marker(0)}\n`)]
  const offsets: number[] = []
  let at = parts[0]!.length
  cases.forEach((c, i) => {
    offsets.push(at)
    const next = Buffer.from(`${marker(i + 1)}\n`)
    parts.push(c.line, Buffer.from('\n'), next)
    at += c.line.length + 1 + next.length
  })
  const log = Buffer.concat(parts)
  parts.length = 0
  writeFileSync(s.config.tail.path, log)

  const rssBefore = process.memoryUsage().rss
  let rssPeak = rssBefore
  const sampler = setInterval(() => { rssPeak = Math.max(rssPeak, process.memoryUsage().rss) }, 100)
  t.teardown(() => clearInterval(sampler))
  const started = performance.now()
  await s.start()
  const last = `marker-${String(cases.length).padStart(4, '0')}`
  await until('the marker after the last hostile line', async () => (await exportRecords(s.store)).some((l) => l.includes(last)), 30_000)
  const elapsed = performance.now() - started
  clearInterval(sampler)

  const lines = await exportRecords(s.store)
  const notes = notesOf(lines)
  const shipped = new Set(lines.filter((l) => !l.startsWith(RECORD_PREFIX)))
  for (let i = 0; i <= cases.length; i++) t.ok(lines.some((l) => l === marker(i)), `marker ${i} shipped: the pipeline kept going`)

  cases.forEach((c, i) => {
    const offset = offsets[i]!
    const here = notes.filter((n) => n.offset === offset)
    const quarantine = here.find((n) => n.kind === 'quarantine')
    const unparsed = here.find((n) => n.kind === 'unparsed')
    const findings = here.filter((n) => n.kind === 'finding').map((n) => n.id!).sort()
    const outcome = quarantine ? 'quarantine' : unparsed ? `unparsed (${unparsed.reason})` : `event, findings [${findings.join(', ')}]`
    t.comment(`${c.name}: ${outcome}`)
    if (c.expect === 'quarantine') {
      t.ok(quarantine, `${c.name}: quarantined`)
      t.equal(quarantine?.length, c.line.length, `${c.name}: its length recorded`)
      t.ok(quarantine?.storedAs && existsSync(quarantine.storedAs) && statSync(quarantine.storedAs).size === c.line.length, `${c.name}: its bytes kept on the node`)
    } else if (c.expect === 'unparsed') {
      t.ok(unparsed, `${c.name}: shipped as unparsed evidence`)
      t.match(unparsed?.reason ?? '', c.reason!, `${c.name}: reason ${unparsed?.reason}`)
    } else {
      t.notOk(quarantine ?? unparsed, `${c.name}: processed as an event`)
      t.same(findings, [...(c.findings ?? [])].sort(), `${c.name}: findings ${JSON.stringify(findings)}`)
    }
    if (c.verbatim) t.ok(shipped.has(c.line.toString('latin1')), `${c.name}: shipped byte for byte`)
  })

  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype not polluted')
  t.equal(([] as unknown as Record<string, unknown>).polluted, undefined, 'Array.prototype not polluted')
  const verified = await verifyStore(s.store, loadTrustedKeys([s.keys.publicKeyFile]))
  t.ok(verified.ok, `the store verifies${verified.problem ? `: ${JSON.stringify(verified.problem)}` : ''}`)
  t.same(s.logs.filter((l) => /"level":(50|60)/.test(l)), [], 'nothing logged as an error or fatal')

  const growth = rssPeak - rssBefore
  t.comment(`all ${cases.length} hostile lines in ${(elapsed / 1000).toFixed(1)} s; RSS ${Math.round(rssBefore / MiB)} MiB before, peak ${Math.round(rssPeak / MiB)} MiB (the test holds the ${Math.round(log.length / MiB)} MiB log itself)`)
  t.ok(growth < 768 * MiB, `RSS grew ${Math.round(growth / MiB)} MiB while the agent read a ${Math.round(log.length / MiB)} MiB log: bounded (under 768 MiB)`)
})
