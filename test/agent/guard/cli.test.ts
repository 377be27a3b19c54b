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

t.test('rules test --each: every matched event as JSON lines with where it came from and its group, counts on stderr', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'audit.log.gz')
  writeFileSync(file, gzipSync(`${privilegedPod}\nnot json\n${privilegedPod.replace('priv-1', 'priv-2')}`))
  const { code, out, err } = await run(['test', '--each', '--json', file])
  t.equal(code, 0)
  const findings = out.trim().split('\n').map((l) => JSON.parse(l))
  const privileged = findings.filter((f) => f.id === 'privileged-container')
  t.same(privileged.map((f) => [f.auditID, f.line, f.stage, f.severity, f.source]), [['priv-1', 1, 'ResponseComplete', 'high', 'rule'], ['priv-2', 3, 'ResponseComplete', 'high', 'rule']])
  t.match(privileged[0].message, /mallory did create on pods default\/x with privileged container c/)
  t.equal(privileged[1].details.group, privileged[0].details.group, 'the same pod by the same user within the hour: one group')
  t.match(err, /^2 events, 1 lines not audit events, 0 lines over 4194304 bytes skipped; \d+ rules, \d+ detectors/)
  t.match(err, /\n +1 +2 +high +rule:privileged-container/, 'one group, two events')
})

t.test('rules test: by default one line per group, with its extent and first audit IDs', async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'audit.log')
  const at = (id: string, time: string) => privilegedPod.replace('priv-1', id).replace('2026-11-25T10:00:00.000000Z', time)
  // Two in the hour, one after it: two groups of the same pod.
  writeFileSync(file, [at('p1', '2026-11-25T10:00:00.000000Z'), at('p2', '2026-11-25T10:30:00.000000Z'), at('p3', '2026-11-25T11:00:00.000000Z')].join('\n'))
  const { code, out, err } = await run(['test', '--json', file])
  t.equal(code, 0)
  const groups = out.trim().split('\n').map((l) => JSON.parse(l)).filter((g) => g.id === 'privileged-container')
  t.same(groups.map((g) => [g.count, g.firstSeen, g.lastSeen, g.auditIDs, g.severity]), [
    [2, '2026-11-25T10:00:00.000Z', '2026-11-25T10:30:00.000Z', ['p1', 'p2'], 'high'],
    [1, '2026-11-25T11:00:00.000Z', '2026-11-25T11:00:00.000Z', ['p3'], 'high'],
  ])
  t.not(groups[0].group, groups[1].group)
  t.match(err, /\n +2 +3 +high +rule:privileged-container/)
  const table = await run(['test', file])
  t.match(table.out, /2026-11-25T10:00:00.000Z  2026-11-25T10:30:00.000Z       2  high      rule:privileged-container  mallory did create .*\n    audit IDs: p1 p2\n/)
})

t.test('rules test: a threshold makes a group a finding only at its Nth event; a CEL key groups by what it says', async (t) => {
  const dir = t.testdir({
    rules: {
      'mine.yaml': [
        'id: pods-by-ns\ntitle: Pods\nseverity: low\nmatch:\n  resources: [pods]\n  verbs: [create]\ngroup:\n  by: event.objectRef.namespace\n  window: 10m\n  threshold: 3',
      ].join('\n---\n'),
    },
  })
  const file = join(dir, 'audit.log')
  const pod = (id: string, ns: string, sec: number) => privilegedPod.replace('priv-1', id).replaceAll('"default"', `"${ns}"`).replace('10:00:00.000000Z', `10:00:${String(sec).padStart(2, '0')}.000000Z`)
  writeFileSync(file, [pod('a1', 'a', 1), pod('b1', 'b', 2), pod('a2', 'a', 3), pod('b2', 'b', 4), pod('a3', 'a', 5)].join('\n'))
  const { out, err } = await run(['test', '--json', '--rules', join(dir, 'rules'), file])
  const groups = out.trim().split('\n').map((l) => JSON.parse(l))
  t.same(groups.map((g) => [g.key, g.count, g.auditIDs]), [['a', 3, ['a1', 'a2', 'a3']]], 'namespace b stays under its threshold of 3')
  t.match(err, /\n +1 +5 +low +rule:pods-by-ns/, 'five matched events, one group')
})

t.test('rules test on real apiserver output: a table and counts', async (t) => {
  const { code, out } = await run(['test', SAMPLE])
  t.equal(code, 0)
  t.match(out, /^4000 events, 0 lines not audit events/m)
  t.match(out, /\d{4}-\d\d-\d\dT[\d:.]+Z +\d{4}-\d\d-\d\dT[\d:.]+Z +299 +medium +rule:secret-read-by-human +admin did get on secrets /)
  t.match(out, /\n +1 +1789 +low +rule:system-masters-member-acting\n/, 'one system:masters finding for 1,789 requests')
  const each = await run(['test', '--each', SAMPLE])
  t.match(each.out, /\d{4}-\d\d-\d\dT[\d:.]+Z +medium +rule:secret-read-by-human +[0-9a-f-]{36} +ResponseComplete +admin did get on secrets /)
})

t.test('rules test --rules DIR runs only those rules; broken rules exit 1 and say where', async (t) => {
  const dir = t.testdir({
    rules: { 'mine.yaml': 'id: any-pod\ntitle: Any pod\nseverity: info\nmatch:\n  resources: [pods]\n  verbs: [create]\n' },
    broken: { 'bad.yaml': 'id: bad\ntitle: Bad\nseverity: high\ncondition: "nosuch(event)"\n' },
  })
  const log = join(dir, 'audit.log')
  writeFileSync(log, `${privilegedPod}\n`)
  const only = await run(['test', '--each', '--json', '--rules', join(dir, 'rules'), log])
  t.same(only.out.trim().split('\n').map((l) => JSON.parse(l).id), ['any-pod'])
  const both = await run(['test', '--each', '--json', '--builtin', '--rules', join(dir, 'rules'), log])
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
  const groups = t.testdir({
    rules: { 'g.yaml': 'id: g1\ntitle: G\nseverity: low\ngroup: { by: [user, frob] }\n---\nid: g2\ntitle: G\nseverity: low\ngroup: { window: 1 }\n---\nid: g3\ntitle: G\nseverity: low\ngroup: { threshold: 0 }\n---\nid: g4\ntitle: G\nseverity: low\ngroup: { by: "event.(" }\n' },
    detectors: { 'd.yaml': 'id: d1\ntitle: D\nseverity: low\nkey: [user]\nwindow: 60s\ntrigger: { threshold: 5 }\ngroup: { threshold: 3 }\n' },
  })
  const badGroups = await run(['lint', join(groups, 'rules')])
  t.equal(badGroups.code, 1)
  t.match(badGroups.out, /g\.yaml: rule g1: group\.by: "frob" is not a field; use user, /)
  t.match(badGroups.out, /g\.yaml: rule g2: group\.window: expected a duration/)
  t.match(badGroups.out, /g\.yaml: rule g3: group\.threshold: expected a whole number from 1/)
  t.match(badGroups.out, /g\.yaml: rule g4: group\.by: .*\(line 1, column \d+ of the expression\)/)
  const badDetector = await run(['lint', '--detectors', join(groups, 'detectors')])
  t.match(badDetector.out, /d\.yaml: detector d1: group: unknown field "threshold"; group has by, window, quiet \(a detector has its trigger\)/)
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
