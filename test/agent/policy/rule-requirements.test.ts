// Guardrail rule files become requirements: verbs and resources from the
// match block, the level from what the expressions read.
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { loadRuleRequirements, requirementFromRule } from '../../../agent/policy/rule-requirements.ts'
import { ALL_VERBS } from '../../../agent/policy/requirements.ts'

t.test('the level follows what the rule reads', async (t) => {
  t.equal(requirementFromRule({ id: 'a', match: { resources: ['pods'] }, expressions: ['event.verb == "create"'] }).level, 'Metadata')
  t.equal(requirementFromRule({ id: 'b', match: { resources: ['pods'] }, expressions: ['event.requestObject.spec.hostPID'] }).level, 'Request')
  t.equal(requirementFromRule({ id: 'c', match: { resources: ['pods'] }, expressions: ['true', 'has(event.responseObject.status)'] }).level, 'RequestResponse')
})

t.test('resources: well-known groups, subresources, and "any" when the match names none', async (t) => {
  const r = requirementFromRule({ id: 'x', match: { verbs: ['create'], resources: ['deployments', 'pods'], subresources: ['', 'exec'] }, expressions: [] })
  t.same(r.resources, [
    { group: 'apps', resource: 'deployments', subresource: '' }, { group: 'apps', resource: 'deployments', subresource: 'exec' },
    { group: '', resource: 'pods', subresource: '' }, { group: '', resource: 'pods', subresource: 'exec' },
  ])
  const any = requirementFromRule({ id: 'y', match: { users: ['system:anonymous'] }, expressions: [] })
  t.same(any.resources, [{ group: '*', resource: '*', subresource: '' }])
  t.same(any.verbs, ALL_VERBS)
  t.same(any.users, ['system:anonymous'])
  t.throws(() => requirementFromRule({ id: 'z', match: { resources: ['widgets'] }, expressions: [] }), /rule z: match\.resources names "widgets" without match\.apiGroups/)
})

t.test('rule files: several documents, lists of rules, and errors that name the file', async (t) => {
  const dir = t.testdir({
    'a.yaml': 'id: one\ntitle: One\nseverity: low\nmatch: {verbs: [delete], resources: [secrets]}\ncondition: "true"\n---\n- id: two\n  title: Two\n  severity: low\n  match: {resources: [roles], apiGroups: [rbac.authorization.k8s.io]}\n  condition: event.requestObject.rules.size() > 0\n---\nid: three\ntitle: Three\nseverity: low\nmatch: {verbs: [create], resources: [pods]}\ncondition: podSpec.hostPID == true\n',
    'notes.txt': 'not a rule',
  })
  t.same(loadRuleRequirements(dir).map((r) => `${r.id} ${r.level} ${r.verbs.join(',')}`), ['one Metadata delete', `two Request ${ALL_VERBS.join(',')}`, 'three Request create'], 'podSpec is read from the request body')
  writeFileSync(join(dir, 'b.yaml'), 'title: no id\n')
  t.throws(() => loadRuleRequirements(dir), /the rules do not load .*b\.yaml: id: expected a kebab-case name/)
  writeFileSync(join(dir, 'b.yaml'), 'id: bad\ntitle: Bad\nseverity: low\nmatch: {verbs: delete}\n')
  t.throws(() => loadRuleRequirements(dir), /b\.yaml: rule bad: match\.verbs: expected a list of strings/)
})
