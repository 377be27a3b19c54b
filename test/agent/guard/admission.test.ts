// The translation of rules into admission policies, without an API server
// (test/e2e/admission-apiserver.test.ts runs the built-in ones on a real one).
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { parse } from 'yaml'
import { admissionPolicies } from '../../../agent/guard/admission.ts'
import { rulesCommand } from '../../../agent/guard/cli.ts'
import { compileRule } from '../../../agent/guard/rule.ts'

const rule = (fields: Record<string, unknown>) => compileRule({ id: 'r', title: 'T', severity: 'high', match: { verbs: ['create'], resources: ['pods'] }, ...fields }, 'test.yaml')

t.test('event fields, derived variables and exceptions become the policy\'s request, variables and matchConditions', async (t) => {
  const { policies, skipped } = admissionPolicies([rule({
    match: { verbs: ['create', 'patch'], resources: ['pods'], subresources: ['', 'ephemeralcontainers'], namespaces: ['prod-*'], codes: [201] },
    condition: 'containers.exists(c, c.image == "x") && event.requestObject.metadata.name != event.user.username + "\'event.verb\'"',
    exceptions: [{ users: ['system:node:*'], groups: ['ops'] }, 'event.objectRef.namespace == "prod-ok"'],
  })], 'deny')
  t.same(skipped, [])
  const { policy, binding } = policies[0]!
  t.same(policy.spec.matchConstraints, { resourceRules: [{ apiGroups: ['*'], apiVersions: ['*'], operations: ['CREATE', 'UPDATE'], resources: ['pods', 'pods/ephemeralcontainers'] }] })
  t.same(policy.spec.matchConditions, [
    { name: 'match-namespaces', expression: 'request.namespace.startsWith("prod-")' },
    { name: 'not-exception-0', expression: '!((request.userInfo.username.startsWith("system:node:")) && (has(request.userInfo.groups) && request.userInfo.groups.exists(g, g == "ops")))' },
    { name: 'not-exception-1', expression: '!(request.namespace == "prod-ok")' },
  ])
  t.same((policy.spec.variables as { name: string }[]).map((v) => v.name), ['podSpec', 'containers'], 'containers needs podSpec, in that order')
  t.same(policy.spec.validations, [{
    expression: '!(variables.containers.exists(c, c.image == "x") && object.metadata.name != request.userInfo.username + "\'event.verb\'")',
    message: 'auditrail rule r (high): T',
  }], 'names inside strings and after a dot are left alone')
  t.same(binding.spec, { policyName: 'auditrail-r', validationActions: ['Deny', 'Audit'] })
})

t.test('a rule that cannot be judged at admission comes back with the reason', async (t) => {
  const reasons = admissionPolicies([
    rule({ id: 'no-condition' }),
    rule({ id: 'reads', match: { verbs: ['get'], resources: ['pods'] }, condition: 'object.x == 1' }),
    rule({ id: 'refused', match: { verbs: ['create'], resources: ['pods'], codes: [403] }, condition: 'object.x == 1' }),
    rule({ id: 'agent', match: { verbs: ['create'], resources: ['pods'], userAgents: ['curl*'] }, condition: 'object.x == 1' }),
    rule({ id: 'response', condition: 'object.x == 1 && event.responseStatus.code == 201' }),
    rule({ id: 'request-only', condition: 'event.user.username == "bob"' }),
    rule({ id: 'shadow', condition: 'object.items.exists(object, object == 1)' }),
  ], 'warn').skipped.map((s) => `${s.rule.id}: ${s.reason}`)
  t.match(reasons, [
    /^no-condition: no condition/,
    /^reads: match.verbs: get carries no object/,
    /^refused: match.codes: it fires on refused requests/,
    /^agent: match.userAgents/,
    /^response: condition: reads event.responseStatus.code, which an admission request does not have/,
    /^request-only: condition: it reads only the request/,
    /^shadow: condition: the comprehension variable object hides/,
  ])
})

t.test('rules admission: --only, --action and unknown ids; the skipped rules on stderr and as comments', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'r.yaml'), 'id: mine\ntitle: Mine\nseverity: low\nmatch: {verbs: [create], resources: [services]}\ncondition: object.spec.type == "NodePort"\n---\nid: activity\ntitle: A\nseverity: info\nmatch: {verbs: [create], resources: [pods]}\n')
  let out = ''
  let err = ''
  const io = { out: (s: string) => void (out += s), err: (s: string) => void (err += s) }
  t.equal(await rulesCommand(['admission', '--rules', dir, '--action', 'audit'], io), 0)
  t.match(out, /#   activity: no condition/)
  t.match(err, /not exported: activity: no condition/)
  const docs = out.split('\n---\n').slice(1).map((d) => parse(d))
  t.same(docs.map((d) => `${d.kind}/${d.metadata.name}`), ['ValidatingAdmissionPolicy/auditrail-mine', 'ValidatingAdmissionPolicyBinding/auditrail-mine'])
  t.same(docs[1].spec.validationActions, ['Audit'])
  out = ''
  t.equal(await rulesCommand(['admission', '--only', 'host-pid'], io), 0)
  t.same(out.split('\n---\n').slice(1).map((d) => parse(d).metadata.name), ['auditrail-host-pid', 'auditrail-host-pid'])
  await t.rejects(rulesCommand(['admission', '--only', 'no-such-rule'], io), /--only: no enabled rule no-such-rule/)
  await t.rejects(rulesCommand(['admission', '--action', 'block'], io), /--action: expected warn, audit, deny, got "block"/)
})

t.test('an empty name list matches nothing, in the policy as in the agent', async (t) => {
  const { policies } = admissionPolicies([rule({ match: { verbs: ['create'], resources: ['pods'], namespaces: [] }, condition: 'object.x == 1' })], 'warn')
  t.same(policies[0]!.policy.spec.matchConditions, [{ name: 'match-namespaces', expression: 'false' }])
})
