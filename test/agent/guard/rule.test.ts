import t from 'tap'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { DefinitionError, matchesEvent, NameList } from '../../../agent/guard/event-filter.ts'
import { compileRule } from '../../../agent/guard/rule.ts'

const base = { id: 'test-rule', title: 'A test rule', severity: 'high', output: '{{ event.user.username }} did {{ event.verb }}' }
const event = (fields: Partial<AuditEvent> = {}): AuditEvent => ({ auditID: 'a', stage: 'ResponseComplete', verb: 'create', user: { username: 'alice', groups: ['dev'] }, objectRef: { resource: 'pods', namespace: 'default', name: 'p' }, responseStatus: { code: 201 }, ...fields })

t.test('errors name the file, the rule and the field', async (t) => {
  const cases: [unknown, RegExp][] = [
    ['just text', /^rules\.yaml: a rule must be a mapping/],
    [{ ...base, id: 'Not Kebab' }, /^rules\.yaml: id: expected a kebab-case name/],
    [{ ...base, severity: 'urgent' }, /^rules\.yaml: rule test-rule: severity: expected one of info, low, medium, high, critical, got "urgent"/],
    [{ ...base, colour: 'red' }, /rule test-rule: unknown field "colour"/],
    [{ ...base, match: { verb: ['get'] } }, /rule test-rule: match: unknown field "verb"/],
    [{ ...base, match: { verbs: 'get' } }, /rule test-rule: match\.verbs: expected a list of strings/],
    [{ ...base, match: { stages: ['Done'] } }, /match\.stages: "Done" is not a stage/],
    [{ ...base, match: { codes: [99] } }, /match\.codes: expected a list of HTTP status codes/],
    [{ ...base, condition: 'event.verb == ' }, /rule test-rule: condition: .* \(line 1, column 12 of the expression\)/],
    [{ ...base, exceptions: ['event.nope('] }, /rule test-rule: exceptions\[0\]: /],
    [{ ...base, exceptions: [{ people: ['x'] }] }, /exceptions\[0\]: unknown field "people"/],
    [{ ...base, output: 'hello {{ event.user.username ' }, /output: a "\{\{" without its "\}\}"/],
    [{ ...base, output: 'hello {{ bogus(1) }}' }, /output placeholder 1: unknown function bogus\(\)/],
    [{ ...base, enabled: 'yes' }, /enabled: expected true or false/],
  ]
  for (const [raw, message] of cases) {
    const err = t.throws(() => compileRule(raw, 'rules.yaml'), message)
    t.ok(err instanceof DefinitionError)
  }
})

t.test('the match block, exceptions and output', async (t) => {
  const rule = compileRule({
    ...base,
    match: { verbs: ['create'], resources: ['pods'], namespaces: ['kube-*'], users: ['alice', 'system:node:*'], codes: [201] },
    condition: 'event.objectRef.name == "p"',
    exceptions: [{ users: ['system:node:*'], namespaces: ['kube-system'] }, 'event.userAgent == "trusted/1.0"'],
  }, 'f.yaml')
  const fires = (ev: AuditEvent) => matchesEvent(rule.match, ev) && rule.condition!(ev) && !rule.exceptions.some((e) => e(ev))
  const inKube = { resource: 'pods', namespace: 'kube-public', name: 'p' }
  t.ok(fires(event({ objectRef: inKube })))
  t.notOk(fires(event()), 'namespace outside the prefix')
  t.notOk(fires(event({ objectRef: inKube, responseStatus: { code: 403 } })), 'code')
  t.notOk(fires(event({ objectRef: inKube, stage: 'RequestReceived' })), 'stage defaults to ResponseComplete')
  t.notOk(fires(event({ objectRef: { ...inKube, subresource: 'exec' } })), 'no subresource unless named')
  t.ok(fires(event({ objectRef: inKube, user: { username: 'system:node:n1' } })), 'the exception needs both lists to hold')
  t.notOk(fires(event({ objectRef: { ...inKube, namespace: 'kube-system' }, user: { username: 'system:node:n1' } })))
  t.notOk(fires(event({ objectRef: inKube, userAgent: 'trusted/1.0' })), 'CEL exception')
  t.equal(rule.message(event()), 'alice did create')
  t.equal(rule.message(event({ user: {} })), '<none> did create', 'a missing value renders as <none>')
  t.same(rule.expressions, ['event.objectRef.name == "p"', 'event.userAgent == "trusted/1.0"', 'event.user.username', 'event.verb'])
})

t.test('defaults: output, stages, enabled; "*" means any', async (t) => {
  const rule = compileRule({ id: 'r', title: 'T', severity: 'info', match: { verbs: ['*'], subresources: ['*'] } }, 'f.yaml')
  t.equal(rule.enabled, true)
  t.equal(rule.match.verbs, undefined)
  t.equal(rule.match.subresources, undefined)
  t.same([...rule.match.stages], ['ResponseComplete'])
  t.equal(rule.condition, undefined)
  t.equal(rule.message({ ...event(), requestURI: '/api/v1/pods' }), 'alice did create /api/v1/pods (201)')
  t.equal(rule.message({ ...event(), user: { username: 'x'.repeat(2000) } }).length, 1024, 'messages are bounded')
})

t.test('name lists: exact names and trailing-* prefixes', async (t) => {
  const names = new NameList(['system:masters', 'system:serviceaccount:kube-system:*'])
  t.ok(names.has('system:masters'))
  t.ok(names.has('system:serviceaccount:kube-system:deployment-controller'))
  t.notOk(names.has('system:serviceaccount:default:app'))
  t.notOk(names.has(undefined))
  t.ok(names.hasAny(['x', 'system:masters']))
  t.notOk(names.hasAny(undefined))
})
