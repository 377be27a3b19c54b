import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { BUILTIN_RULES_DIR, loadRuleSet, readRuleDirectory, RuleSet, type RuleFinding } from '../../../agent/guard/rule-set.ts'

const event = (fields: Partial<AuditEvent> = {}): AuditEvent => ({ auditID: 'a1', stage: 'ResponseComplete', verb: 'create', user: { username: 'alice' }, objectRef: { resource: 'pods', namespace: 'default', name: 'p' }, responseStatus: { code: 201 }, ...fields })
const rule = (id: string, extra = '') => `id: ${id}\ntitle: ${id}\nseverity: low\n${extra}`
const inspect = (set: RuleSet, ev: AuditEvent) => {
  const out: RuleFinding[] = []
  set.inspect(ev, out)
  return out
}

t.test('a directory: documents and lists of rules, hidden and non-YAML files skipped, every error collected', async (t) => {
  const dir = t.testdir({
    'a.yaml': `${rule('one')}---\n${rule('two')}`,
    'b.yml': `- ${rule('three').replace(/\n/g, '\n  ')}`,
    'notes.txt': 'not a rule',
    '.hidden.yaml': 'garbage: [',
    'c.yaml': `${rule('bad', 'condition: "event.verb =="\n')}---\n${rule('one')}`,
    'd.yaml': 'key: [unclosed',
  })
  const { rules, errors } = readRuleDirectory(dir)
  t.same(rules.map((r) => r.id), ['one', 'two', 'three'])
  t.equal(errors.length, 3)
  t.match(errors[0]!.message, /c\.yaml: rule bad: condition: /)
  t.match(errors[1]!.message, /c\.yaml: rule one: the id is already used in .*a\.yaml/)
  t.match(errors[2]!.message, /d\.yaml: not valid YAML at line 1/)
  t.throws(() => loadRuleSet([dir]), AggregateError)
  t.match(readRuleDirectory(join(dir, 'missing')).errors[0]!.message, /cannot read the rules directory \(ENOENT\): check rules\.dirs/)
})

t.test('a mounted ConfigMap: files are symlinks into ..data', async (t) => {
  const dir = t.testdir({ '..2026_11_25': { 'mine.yaml': rule('mine') } })
  symlinkSync('..2026_11_25', join(dir, '..data'))
  symlinkSync('..data/mine.yaml', join(dir, 'mine.yaml'))
  t.same(readRuleDirectory(dir).rules.map((r) => r.id), ['mine'])
})

t.test('a later directory replaces a rule of the same id, or turns it off', async (t) => {
  const builtin = loadRuleSet([BUILTIN_RULES_DIR])
  t.ok(builtin.rules.some((r) => r.id === 'pod-created'))
  const dir = t.testdir({
    'tune.yaml': `${rule('pod-created', 'match:\n  verbs: [create]\n  resources: [pods]\n  namespaces: [prod]\n')}---\n${rule('host-pid', 'enabled: false\n')}`,
  })
  const tuned = loadRuleSet([BUILTIN_RULES_DIR, dir])
  t.equal(tuned.rules.length, builtin.rules.length - 1)
  t.notOk(tuned.rules.some((r) => r.id === 'host-pid'))
  t.equal(tuned.rules.find((r) => r.id === 'pod-created')!.severity, 'low')
  t.notOk(inspect(tuned, event()).some((f) => f.id === 'pod-created'), 'the replacement only matches prod')
  t.ok(inspect(tuned, event({ objectRef: { resource: 'pods', namespace: 'prod' } })).some((f) => f.id === 'pod-created'))
})

t.test('the index: an event meets only the rules its verb and resource admit', async (t) => {
  const dir = t.testdir({
    'r.yaml': [
      rule('pods-create', 'match:\n  verbs: [create]\n  resources: [pods]\n'),
      rule('any-delete', 'match:\n  verbs: [delete]\n'),
      rule('secrets-any', 'match:\n  resources: [secrets]\n'),
      rule('everything'),
    ].join('---\n'),
  })
  const set = loadRuleSet([dir])
  const ids = (verb: string, resource: string) => set.candidates(verb, resource).map((r) => r.id)
  t.same(ids('create', 'pods'), ['pods-create', 'everything'])
  t.same(ids('delete', 'pods'), ['any-delete', 'everything'])
  t.same(ids('get', 'secrets'), ['secrets-any', 'everything'])
  t.same(ids('patch', 'widgets'), ['everything'], 'names no rule mentions share one bucket')
  t.same(ids('frobnicate', 'x'.repeat(100)), ['everything'])
})

t.test('a finding: the rule, the message, and details that do not repeat the event', async (t) => {
  const dir = t.testdir({ 'r.yaml': rule('pods-create', 'mitre: [T1610]\nmatch:\n  verbs: [create]\n  resources: [pods]\noutput: "{{ event.user.username }} made {{ event.objectRef.name }}"\n') })
  const [f] = inspect(loadRuleSet([dir]), event({ sourceIPs: ['10.0.0.1'], stageTimestamp: '2026-11-25T00:00:00Z' }))
  t.same(f, {
    source: 'rule', id: 'pods-create', severity: 'low', message: 'alice made p', auditId: 'a1',
    details: { title: 'pods-create', mitre: 'T1610' },
  })
})

t.test('a rule on several stages fires once per request', async (t) => {
  const dir = t.testdir({ 'r.yaml': rule('exec', 'match:\n  verbs: [create]\n  resources: [pods]\n  subresources: [exec]\n  stages: [ResponseStarted, ResponseComplete]\n') })
  const set = loadRuleSet([dir])
  const exec = (stage: string, auditID: string) => event({ stage, auditID, objectRef: { resource: 'pods', subresource: 'exec', namespace: 'd', name: 'p' } })
  t.equal(inspect(set, exec('ResponseStarted', 'x')).length, 1)
  t.equal(inspect(set, exec('ResponseComplete', 'x')).length, 0)
  t.equal(inspect(set, exec('ResponseComplete', 'y')).length, 1)
})

t.test('events of any shape never throw', async (t) => {
  const set = loadRuleSet([BUILTIN_RULES_DIR])
  const shapes = [
    { auditID: 'a', stage: 'ResponseComplete', verb: 'create', user: {} },
    { auditID: 'a', stage: 'ResponseComplete', verb: 'create', user: { username: 'x', groups: 'system:masters' }, objectRef: { resource: 'pods' }, requestObject: 'text' },
    { auditID: 'a', stage: 'ResponseComplete', verb: 'create', user: { username: 'x' }, objectRef: { resource: 'pods' }, requestObject: { kind: 'Pod', spec: { containers: [null, 1, { securityContext: 'x' }], volumes: { a: 1 } } } },
    { auditID: 'a', stage: 'ResponseComplete', verb: 'create', user: { username: 'x' }, objectRef: { resource: 'clusterroles' }, requestObject: { rules: [{ verbs: 'x' }, null] } },
    { auditID: 'a', stage: 'ResponseComplete', verb: 'get', user: { username: 'system:anonymous' }, responseStatus: { code: 'two hundred' } },
  ]
  for (const shape of shapes) t.doesNotThrow(() => inspect(set, shape as unknown as AuditEvent))
})

t.test('a request refused by a rule\'s own admission policy is that rule\'s finding, marked blocked at admission', async (t) => {
  const rules = loadRuleSet([BUILTIN_RULES_DIR])
  const privileged = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p', namespace: 'default' }, spec: { containers: [{ name: 'c', image: 'busybox', securityContext: { privileged: true } }] } }
  const refusal = (annotations: Record<string, string>, message = 'pods "p" is forbidden') => event({ requestObject: privileged, responseObject: { kind: 'Status', code: 422 }, responseStatus: { code: 422, message }, annotations })
  const ids = (ev: AuditEvent) => {
    const out: RuleFinding[] = []
    rules.inspect(ev, out)
    return out.filter((f) => f.id === 'privileged-container').map((f) => [f.id, f.details.blockedAtAdmission ?? '', f.message.endsWith('(also blocked at admission)')])
  }
  const failure = (actions: string[]) => ({ 'validation.policy.admission.k8s.io/validation_failure': JSON.stringify([{ message: 'auditrail rule privileged-container (high): A privileged container', policy: 'auditrail-privileged-container', binding: 'auditrail-privileged-container', expressionIndex: 0, validationActions: actions }]) })
  t.same(ids(refusal(failure(['Deny', 'Audit']))), [['privileged-container', 'true', true]], 'Deny + Audit: from the audit annotation')
  t.same(ids(refusal({}, "pods \"p\" is forbidden: ValidatingAdmissionPolicy 'auditrail-privileged-container' with binding 'auditrail-privileged-container' denied request: auditrail rule privileged-container (high): A privileged container")), [['privileged-container', 'true', true]], 'Deny alone: from the refusal message')
  t.same(ids(refusal(failure(['Warn', 'Audit']))), [], 'a warning did not refuse: a 422 for another reason fires nothing (the rule matches served requests)')
  t.same(ids(refusal({}, "ValidatingAdmissionPolicy 'someone-else' with binding 'x' denied request")), [], 'another policy\'s refusal is not the rule\'s')
  t.same(ids(event({ requestObject: privileged, responseObject: privileged, annotations: failure(['Warn', 'Audit']) })), [['privileged-container', '', false]], 'served (Warn): the plain finding')
})
