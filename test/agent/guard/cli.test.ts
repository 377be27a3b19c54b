import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import { rulesCommand } from '../../../agent/guard/cli.ts'

const SAMPLE = fileURLToPath(new URL('../../fixtures/apiserver-v1.26/sample.jsonl.gz', import.meta.url))

async function run(argv: string[]) {
  let out = ''
  let err = ''
  const code = await rulesCommand(argv, { out: (s) => void (out += s), err: (s) => void (err += s) })
  return { code, out, err }
}

const privilegedPod = JSON.stringify({
  kind: 'Event', apiVersion: 'audit.k8s.io/v1', level: 'RequestResponse', auditID: 'priv-1', stage: 'ResponseComplete', verb: 'create',
  requestURI: '/api/v1/namespaces/default/pods', user: { username: 'mallory', groups: ['system:authenticated'] }, sourceIPs: ['10.1.2.3'],
  objectRef: { resource: 'pods', namespace: 'default', name: 'x', apiVersion: 'v1' }, responseStatus: { code: 201 },
  requestObject: { kind: 'Pod', metadata: { name: 'x' }, spec: { containers: [{ name: 'c', image: 'busybox', securityContext: { privileged: true } }] } },
  stageTimestamp: '2026-11-25T10:00:00.000000Z',
})

t.test('rules test: findings as JSON lines with where they came from, counts on stderr', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'audit.log.gz')
  writeFileSync(file, gzipSync(`${privilegedPod}\nnot json\n${privilegedPod.replace('priv-1', 'priv-2')}`))
  const { code, out, err } = await run(['test', '--json', file])
  t.equal(code, 0)
  const findings = out.trim().split('\n').map((l) => JSON.parse(l))
  const privileged = findings.filter((f) => f.id === 'privileged-container')
  t.same(privileged.map((f) => [f.auditID, f.line, f.stage, f.severity, f.source]), [['priv-1', 1, 'ResponseComplete', 'high', 'rule'], ['priv-2', 3, 'ResponseComplete', 'high', 'rule']])
  t.match(privileged[0].message, /mallory did create on pods default\/x with privileged container c/)
  t.match(err, /^2 events, 1 lines not audit events, 0 lines over 4194304 bytes skipped; \d+ rules, \d+ detectors/)
  t.match(err, /\n +2 +high +rule:privileged-container/)
})

t.test('rules test on real apiserver output: a table and counts', async (t) => {
  const { code, out } = await run(['test', SAMPLE])
  t.equal(code, 0)
  t.match(out, /^4000 events, 0 lines not audit events/m)
  t.match(out, /\d{4}-\d\d-\d\dT[\d:.]+Z +medium +rule:secret-read-by-human +[0-9a-f-]{36} +ResponseComplete +admin did get on secrets /)
})

t.test('rules test --rules DIR runs only those rules; broken rules exit 1 and say where', async (t) => {
  const dir = t.testdir({
    rules: { 'mine.yaml': 'id: any-pod\ntitle: Any pod\nseverity: info\nmatch:\n  resources: [pods]\n  verbs: [create]\n' },
    broken: { 'bad.yaml': 'id: bad\ntitle: Bad\nseverity: high\ncondition: "nosuch(event)"\n' },
  })
  const log = join(dir, 'audit.log')
  writeFileSync(log, `${privilegedPod}\n`)
  const only = await run(['test', '--json', '--rules', join(dir, 'rules'), log])
  t.same(only.out.trim().split('\n').map((l) => JSON.parse(l).id), ['any-pod'])
  const both = await run(['test', '--json', '--builtin', '--rules', join(dir, 'rules'), log])
  t.ok(both.out.includes('"privileged-container"') && both.out.includes('"any-pod"'))
  const broken = await run(['test', '--rules', join(dir, 'broken'), log])
  t.equal(broken.code, 1)
  t.match(broken.err, /bad\.yaml: rule bad: condition: unknown function nosuch\(\) \(line 1, column 1 of the expression\)/)
})

t.test('rules lint: every error with its place, exit 1; a good directory exits 0', async (t) => {
  const dir = t.testdir({
    good: { 'a.yaml': 'id: a\ntitle: A\nseverity: low\n' },
    bad: { 'a.yaml': 'id: a\ntitle: A\nseverity: loud\n---\nid: b\ntitle: B\nseverity: low\noutput: "{{ event. }}"\n' },
  })
  const good = await run(['lint', join(dir, 'good')])
  t.equal(good.code, 0)
  t.match(good.out, /^ok: .*good: 1 rules compile/)
  const bad = await run(['lint', join(dir, 'good'), join(dir, 'bad')])
  t.equal(bad.code, 1)
  t.match(bad.out, /error: .*bad\/a\.yaml: rule a: severity: expected one of/)
  t.match(bad.out, /error: .*bad\/a\.yaml: rule b: output placeholder 1: /)
  await t.rejects(run(['frob']), /unknown subcommand "frob"/)
  await t.rejects(run(['test']), /test needs at least one audit log file/)
})

t.test('replaying the same log twice gives identical findings, rules and detectors alike', async (t) => {
  const dir = t.testdir()
  const { generateAuditLog } = await import('../../../scripts/generate-audit-log.ts')
  await generateAuditLog({ dir, events: 20_000, seed: 11, maxBytes: 2 ** 40, startTimeMs: Date.parse('2026-11-25T00:00:00Z') })
  const log = join(dir, 'audit.log')
  const first = await run(['test', '--json', log])
  const second = await run(['test', '--json', log])
  t.equal(first.code, 0)
  t.ok(first.out.length > 0)
  t.equal(second.out, first.out, 'byte for byte the same findings')
  t.equal(second.err, first.err, 'the same counts')
  t.match(first.err, /detector:/, 'detectors found something on the generator\'s mix')
})
