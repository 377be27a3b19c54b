import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { pino } from 'pino'
import type { AuditEvent } from '../../../agent/audit/event.ts'
import { Guard } from '../../../agent/guard/guard.ts'
import type { RuleFinding } from '../../../agent/guard/rule-set.ts'
import { AgentMetrics } from '../../../agent/observe/metrics.ts'

const rule = (id: string, severity = 'high', extra = '') => `id: ${id}\ntitle: ${id}\nseverity: ${severity}\nmatch:\n  verbs: [create]\n  resources: [pods]\n${extra}`
const pod: AuditEvent = { auditID: 'a', stage: 'ResponseComplete', verb: 'create', user: { username: 'alice' }, objectRef: { resource: 'pods', namespace: 'default' }, responseStatus: { code: 201 } }
const ids = (guard: Guard) => {
  const out: RuleFinding[] = []
  guard.inspect(pod, out)
  return out.map((f) => f.id)
}

function logCapture() {
  const lines: Record<string, unknown>[] = []
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
  return { logger, lines }
}

async function until(what: string, test: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

t.test('a changed rule file is picked up without a restart; a broken one keeps the running rules', async (t) => {
  const dir = t.testdir({ 'mine.yaml': rule('mine-v1') })
  const metrics = new AgentMetrics()
  const { logger, lines } = logCapture()
  const guard = new Guard({ builtin: false, dirs: [dir], logger, metrics })
  t.teardown(() => guard.close())
  await guard.watch()
  t.same(ids(guard), ['mine-v1'])
  t.equal((await metrics.rulesLoaded.get()).values[0]!.value, 1)

  writeFileSync(join(dir, 'mine.yaml'), `${rule('mine-v2')}---\n${rule('also', 'low')}`)
  await until('the new rules', () => ids(guard).includes('mine-v2'))
  t.same(ids(guard), ['mine-v2', 'also'])

  writeFileSync(join(dir, 'broken.yaml'), rule('broken', 'high', 'condition: "event.verb =="\n'))
  await until('the failed reload', () => lines.some((l) => l.level === 50))
  t.same(ids(guard), ['mine-v2', 'also'], 'the rules loaded before keep running')
  const error = lines.find((l) => l.level === 50)!
  t.match(error.msg, /guardrail rules not loaded: fix the errors listed/)
  t.match((error.errors as string[])[0], /broken\.yaml: rule broken: condition: /)
  const loads = (await metrics.ruleLoads.get()).values
  t.same(Object.fromEntries(loads.map((v) => [v.labels.result, v.value])), { ok: 2, error: 1 })

  rmSync(join(dir, 'broken.yaml'))
  await until('recovery', () => (loads.length, true) && lines.filter((l) => l.msg === 'guardrail rules loaded').length === 3)
  t.same(ids(guard), ['mine-v2', 'also'])
})

t.test('a ConfigMap update (the ..data symlink swapped) is picked up', async (t) => {
  const dir = t.testdir({ '..v1': { 'r.yaml': rule('from-v1') } })
  symlinkSync('..v1', join(dir, '..data'))
  symlinkSync('..data/r.yaml', join(dir, 'r.yaml'))
  const guard = new Guard({ builtin: false, dirs: [dir], logger: logCapture().logger })
  t.teardown(() => guard.close())
  await guard.watch()
  t.same(ids(guard), ['from-v1'])
  // What the kubelet's atomic writer does: write a new directory, swap the symlink with a rename.
  mkdirSync(join(dir, '..v2'))
  writeFileSync(join(dir, '..v2', 'r.yaml'), rule('from-v2'))
  symlinkSync('..v2', join(dir, '..data_tmp'))
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'))
  await until('the swapped rules', () => ids(guard).includes('from-v2'))
})

t.test('a broken user directory at start-up: the built-in pack runs alone, and says why', async (t) => {
  const dir = t.testdir({ 'bad.yaml': 'id: [' })
  const { logger, lines } = logCapture()
  const guard = new Guard({ builtin: true, dirs: [dir], logger })
  t.ok(guard.rules.rules.length > 40)
  t.ok(ids(guard).includes('pod-created'))
  t.match(lines.find((l) => l.level === 50)?.errors, [/bad\.yaml: not valid YAML/])
})

t.test('the known-bad address file is loaded, reloaded on change, and a broken one keeps the list in use', async (t) => {
  const dir = t.testdir({ 'bad.txt': '198.51.100.0/24\n' })
  const { logger, lines } = logCapture()
  const guard = new Guard({ builtin: true, dirs: [], logger, clusterNetworks: ['192.168.10.0/24'], knownBadAddressesFile: join(dir, 'bad.txt') })
  t.teardown(async () => {
    await guard.close()
    // the address lists are process-wide: leave none behind for other tests
    new Guard({ builtin: false, dirs: [], logger })
  })
  await guard.watch()
  let serial = 0
  const from = (ip: string, username = 'alice@example.com') => {
    const out: RuleFinding[] = []
    // a new auditID each time: the rules report one request once
    guard.inspect({ auditID: `req-${++serial}`, stage: 'ResponseComplete', verb: 'get', requestURI: '/api/v1/namespaces/prod/pods', user: { username }, sourceIPs: [ip], objectRef: { resource: 'pods', namespace: 'prod' }, responseStatus: { code: 200 } }, out)
    return out.map((f) => f.id)
  }
  t.ok(from('198.51.100.9').includes('known-bad-source-address'))
  t.notOk(from('203.0.113.66').includes('known-bad-source-address'))
  t.ok(from('203.0.113.66', 'system:node:worker-1').includes('system-identity-outside-cluster'), 'clusterNetworks reach the rules')

  writeFileSync(join(dir, 'bad.txt'), '198.51.100.0/24\n203.0.113.66\n')
  await until('the new list', () => from('203.0.113.66').includes('known-bad-source-address'))

  writeFileSync(join(dir, 'bad.txt'), '198.51.100.0/24\n203.0.113.666\n')
  await until('the failed reload', () => lines.some((l) => l.level === 50))
  const error = lines.find((l) => l.level === 50)!
  t.match(error.msg, /known-bad addresses not loaded: fix the file; the list loaded before stays in use/)
  t.match(error.error, /bad\.txt: line 2: "203\.0\.113\.666" is not an IPv4 or IPv6 address/)
  t.ok(from('203.0.113.66').includes('known-bad-source-address'), 'the previous list stays')
})
