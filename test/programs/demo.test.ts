// `auditrail demo` as a person runs it: a real process, a real collector, agent and
// alert receiver on 127.0.0.1. Its output must show the spine (stored, verified,
// identical export) and then what the path is for: the attack story's findings,
// the alerts the receiver counted, and a query with its answer and its command.
import t from 'tap'
import { ATTACKER } from '../../scripts/audit-events.ts'
import { runCli } from '../e2e/processes.ts'

t.test('the demo shows findings by severity, the top ones, where the alerts went and a query', async (t) => {
  const started = performance.now()
  const { code, stdout, stderr } = await runCli(['demo', '--events', '9000', '--rate', '2000'])
  const seconds = (performance.now() - started) / 1000
  const out = stdout.toString()
  t.equal(code, 0, 'exit 0')
  if (code !== 0) t.comment(`${out}\n${stderr}`)
  t.ok(out.split('\n').length <= 40, `at most 40 lines (${out.split('\n').length})`)
  t.ok(seconds < 60, `${seconds.toFixed(1)} s`)
  t.match(out, /^verify +ok/m)
  t.match(out, /^export +identical to the generated log byte for byte/m)
  t.match(out, /^findings +\d+ raised on the node as lines were read: critical [1-9]\d*, high [1-9]\d*, medium \d+, low \d+, info \d+$/m, 'findings by severity')
  const top = out.split('\n').filter((l) => /^  (critical|high|medium|low|info) /.test(l))
  t.ok(top.length >= 3, 'then the top findings, one line each')
  const user = ATTACKER.username.replace('.', '\\.')
  t.match(top[0], new RegExp(`^  critical +rule:binding-to-cluster-admin +${user} +clusterrolebindings +\\d\\d:\\d\\d:\\d\\d\\.\\d{3}$`), 'the story\'s cluster-admin binding comes first: rule, user, object, time')
  t.match(top.join('\n'), new RegExp(`rule:privileged-container +${user} +payments pods`), 'its privileged pod is listed')
  const alerts = /^alerts +(\d+) at high or above reached the webhook receiver on http:\/\/127\.0\.0\.1:\d+\/alerts in (\d+) requests \(([^)]*)\); the agent counted (\d+) sent/m.exec(out)
  t.ok(alerts, 'where the alerts went')
  t.ok(Number(alerts?.[1]) > 0, 'the receiver got alerts')
  t.equal(alerts?.[1], alerts?.[4], 'as many as the agent says it sent')
  t.match(alerts?.[3], /critical [1-9]/, 'the critical ones among them')
  t.match(out, new RegExp(`^query +events by ${user}: \\d+ \\(22 refused with 403\\), [1-9]\\d* of them with findings; first \\d\\d:\\d\\d:\\d\\d\\.\\d{3}, last`, 'm'), 'a query and its answer: the 22 forbidden probes of the story')
  t.match(out, new RegExp(`^ +\\$ npx auditrail query --url http://127\\.0\\.0\\.1:\\d+ --token-file \\S+ --user ${user}$`, 'm'), 'the command a person would type')
})
