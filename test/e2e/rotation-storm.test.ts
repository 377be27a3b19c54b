// The spine end to end: 200,000 real audit lines written to a log rotated every
// 1 MB (some backups gzipped) while the agent ships to the collector, both as
// real processes on 127.0.0.1. The collector's export must equal the source
// byte for byte, and `auditrail verify` must pass.
import { join } from 'node:path'
import t from 'tap'
import { AuditLogWriter } from '../../scripts/audit-log-writer.ts'
import { realAuditLines } from './audit-source.ts'
import { caughtUp, checkStoreHoldsSource, collectorRig, freePort, startProcess, stopProcess, waitFor } from './processes.ts'

const EVENTS = 200_000

t.test('rotation storm: export equals the source byte for byte and verify passes', async (t) => {
  const dir = t.testdir()
  const logDir = join(dir, 'log')
  const { keyFile, publicKeyFile, url, store, start, ready } = await collectorRig(dir)
  const collector = start()
  t.teardown(() => stopProcess(collector))
  await ready()

  const { mkdirSync } = await import('node:fs')
  mkdirSync(logDir)
  const log = new AuditLogWriter({ path: join(logDir, 'audit.log'), maxBytes: 1024 * 1024, maxBackups: 0, gzipEvery: 3, mode: 'rename' })
  const metrics = `127.0.0.1:${await freePort()}`
  const agent = startProcess(['agent', '--node', 'storm', '--collector', url, '--log', log.path, '--state-dir', join(dir, 'state'), '--key', keyFile, '--metrics-listen', metrics])
  t.teardown(() => stopProcess(agent))
  // Nothing is written before the agent is ready: the first start (test/e2e/first-start.test.ts covers one behind a busy writer) is not this test's subject.
  await waitFor('the agent to be ready', async () => (await fetch(`http://${metrics}/readyz`).catch(() => undefined))?.ok === true)

  const lines = realAuditLines(EVENTS)
  for (let i = 0; i < EVENTS; i++) {
    log.write(lines[i]!)
    if (i % 2000 === 0) await new Promise((r) => setImmediate(r))
  }
  await log.close()
  t.ok(log.rotations > 100, `${log.rotations} rotations`)

  await waitFor('the agent to catch up', () => caughtUp(join(dir, 'state'), log.path), 240_000, 250)
  await stopProcess(agent)
  t.equal(agent.child.exitCode, 0, 'the agent stops cleanly on SIGTERM')

  const exported = await checkStoreHoldsSource(t, store, lines, join(dir, 'state'), publicKeyFile)
  t.ok((exported.findings.get('rule:secret-read-by-human') ?? 0) > 0, 'guardrail findings travel with the events')
  t.notMatch(agent.logs(), /"level":(50|60)/, 'no errors in the agent log')
  // Before tap removes the test directory, which it does ahead of the teardowns (the index may still be writing).
  await stopProcess(collector)
})
