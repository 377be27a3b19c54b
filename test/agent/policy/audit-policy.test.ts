// The policy is read strictly and evaluated as the apiserver's checker does.
import t from 'tap'
import { decidingRules, parseAuditPolicy, ruleCoverage, type RequestClass } from '../../../agent/policy/audit-policy.ts'

const policy = (rules: string, top = '') => parseAuditPolicy(`apiVersion: audit.k8s.io/v1\nkind: Policy\n${top}rules:\n${rules}`, 'p.yaml')
const cls = (over: Partial<RequestClass> = {}): RequestClass => ({ verb: 'create', group: '', resource: 'pods', subresource: '', clusterScoped: false, ...over })

t.test('resource matching follows the apiserver: "*", "resource/sub", "*/sub", "resource/*"', async (t) => {
  const rule = (resources: string, group = '""') => policy(`  - level: None\n    resources:\n      - group: ${group}\n        resources: ${resources}\n`).rules[0]!
  t.equal(ruleCoverage(rule('["*"]'), cls({ subresource: 'exec' })), 'all')
  t.equal(ruleCoverage(rule('["pods"]'), cls({ subresource: 'exec' })), 'none', 'pods does not cover pods/exec')
  t.equal(ruleCoverage(rule('["pods/exec"]'), cls({ subresource: 'exec' })), 'all')
  t.equal(ruleCoverage(rule('["*/exec"]'), cls({ subresource: 'exec' })), 'all')
  t.equal(ruleCoverage(rule('["*/exec"]'), cls()), 'none')
  t.equal(ruleCoverage(rule('["pods/*"]'), cls()), 'all', 'pods/* also matches pods itself, as in the apiserver')
  t.equal(ruleCoverage(rule('["pods"]', 'apps'), cls()), 'none', 'the group must match')
  t.equal(ruleCoverage(policy('  - level: None\n    resources:\n      - group: apps\n').rules[0]!, cls({ group: 'apps', resource: 'deployments' })), 'all', 'a group without resources matches all of it')
  t.equal(ruleCoverage(policy('  - level: None\n    nonResourceURLs: ["/healthz*"]\n').rules[0]!, cls()), 'none', 'non-resource rules never match resource requests')
})

t.test('rules restricted to users, groups, namespaces or names cover only some requests', async (t) => {
  const p = policy('  - level: None\n    users: ["system:kube-proxy"]\n  - level: None\n    namespaces: ["kube-system"]\n  - level: None\n    userGroups: ["system:nodes"]\n  - level: None\n    resources:\n      - group: ""\n        resources: ["pods"]\n        resourceNames: ["web"]\n  - level: Metadata\n')
  t.same(decidingRules(p, cls()).map((d) => `${d.rule.index}:${d.coverage}`), ['0:some', '1:some', '2:some', '3:some', '4:all'])
  t.same(decidingRules(p, cls({ users: ['system:kube-proxy'] })).map((d) => `${d.rule.index}:${d.coverage}`), ['0:all'], 'a class of exactly those users is fully covered')
  t.same(decidingRules(p, cls({ users: ['alice'] })).map((d) => d.rule.index), [1, 2, 3, 4], 'other users never match rule 0')
  t.same(decidingRules(p, cls({ namespaces: ['default'] })).map((d) => d.rule.index), [0, 2, 3, 4], 'another namespace never matches rule 1')
  t.same(decidingRules(p, cls({ resource: 'nodes', clusterScoped: true })).map((d) => d.rule.index), [0, 2, 4], 'a namespaced rule never matches a cluster-scoped resource')
})

t.test('a broken policy is an error that names the field and the fix', async (t) => {
  t.throws(() => parseAuditPolicy('kind: ConfigMap\n', 'x.yaml'), /x\.yaml: not an audit policy: expected apiVersion audit\.k8s\.io\/v1 and kind Policy/)
  t.throws(() => parseAuditPolicy('apiVersion: audit.k8s.io/v1beta1\nkind: Policy\nrules: [{level: None}]\n', 'x.yaml'), /removed from the apiserver in 1\.24/)
  t.throws(() => parseAuditPolicy('a: [\n', 'x.yaml'), /x\.yaml: not valid YAML at line/)
  t.throws(() => policy(''), /rules: expected a non-empty list/)
  t.throws(() => policy('  - level: Loud\n'), /p\.yaml: rules\[0\]\.level: expected one of None, Metadata, Request, RequestResponse, got "Loud"/)
  t.throws(() => policy('  - level: None\n    omitStages: ["Later"]\n'), /rules\[0\]\.omitStages: unknown stage "Later"/)
  t.throws(() => policy('  - level: None\n    resource: ["secrets"]\n'), /rules\[0\]: unknown field "resource"/, 'a typo would otherwise widen the rule to everything')
  t.throws(() => policy('  - level: None\n    resources:\n      - group: ""\n        resource: ["secrets"]\n'), /rules\[0\]\.resources\[0\]: unknown field "resource"/)
  t.throws(() => policy('  - level: None\n    nonResourceURLs: ["/x"]\n    namespaces: ["a"]\n'), /cannot be combined with resources or namespaces/)
  t.throws(() => policy('  - level: None\n    verbs: get\n'), /rules\[0\]\.verbs: expected a list of strings/)
  t.throws(() => policy('  - level: None\n', 'omitStages: Panic\n'), /p\.yaml: omitStages: expected a list of strings/)
})
