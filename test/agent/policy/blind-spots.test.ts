// Blind spots: every rule that decides a class of requests is judged, partial
// rules for their part, and requests no rule matches are logged at None.
import t from 'tap'
import { parseAuditPolicy } from '../../../agent/policy/audit-policy.ts'
import { findBlindSpots } from '../../../agent/policy/blind-spots.ts'
import type { Requirement } from '../../../agent/policy/requirements.ts'

const policy = (rules: string) => parseAuditPolicy(`apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n${rules}`, 'p.yaml')

t.test('a partial rule that gives less is a blind spot for its part; no final match is level None', async (t) => {
  const need: Requirement = { source: 'rule', id: 'pods', why: 'test', verbs: ['create'], resources: [{ group: '', resource: 'pods', subresource: '' }], level: 'Request', stages: ['ResponseComplete'] }
  const spots = findBlindSpots(policy('  - level: None\n    users: ["ci"]\n  - level: Metadata\n    namespaces: ["dev"]\n'), [need])
  t.same(spots.map((s) => [s.gets, s.policyRule]), [
    ['level None for the users, groups, namespaces or object names it lists', 0],
    ['level Metadata for the users, groups, namespaces or object names it lists', 1],
    ['level None for the requests no rule matches', undefined],
  ])
  t.same(findBlindSpots(policy('  - level: Metadata\n    verbs: ["get"]\n'), [need]).map((s) => s.gets), ['nothing: no rule matches, so level None'])
  t.same(findBlindSpots(policy('  - level: Request\n    omitStages: ["ResponseComplete"]\n'), [need]).map((s) => s.gets), ["Request without ResponseComplete (the rule's omitStages)"])
  t.same(findBlindSpots(policy('  - level: Request\n'), [need]), [], 'Request is enough for a requirement at Request')
})
