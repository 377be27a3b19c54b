// Crashes end to end: while 200,000 real audit lines are written to a rotating
// log, the agent is killed with SIGKILL at 20 random moments and restarted, and
// the collector is killed and restarted 3 times. The export must still equal
// the source byte for byte: nothing lost, nothing doubled, the chain intact.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { AuditLogWriter } from '../../scripts/audit-log-writer.ts'
import { realAuditLines, writePaced } from './audit-source.ts'
import { caughtUp, checkStoreHoldsSource, collectorRig, freePort, startProcess, stopProcess, waitFor, type Running } from './processes.ts'

const EVENTS = 200_000
const RATE = 20_000 // events per second while writing: the crashes land while the agent ships

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('SIGKILL the agent 20 times and the collector 3 times: still byte-identical, nothing doubled, chain intact', async (t) => {
  const dir = t.testdir()
  mkdirSync(join(dir, 'log'))
  const { keyFile, publicKeyFile, url, store, start: startCollector, ready: collectorReady } = await collectorRig(dir)
  const state = join(dir, 'state')
  const metrics = `127.0.0.1:${await freePort()}`
  const startAgent = () => startProcess(['agent', '--node', 'crashy', '--collector', url, '--log', log.path, '--state-dir', state, '--key', keyFile, '--metrics-listen', metrics])
  const agentReady = () => waitFor('the agent to be ready', async () => (await fetch(`http://${metrics}/readyz`).catch(() => undefined))?.ok === true, 60_000, 20)
  let collector: Running = startCollector()
  await collectorReady()
  const log = new AuditLogWriter({ path: join(dir, 'log', 'audit.log'), maxBytes: 1024 * 1024, maxBackups: 0, gzipEvery: 3, mode: 'rename' })
  let agent: Running = startAgent()
  t.teardown(async () => {
    await stopProcess(agent, 'SIGKILL')
    await stopProcess(collector, 'SIGKILL')
  })
  // Crashes of a running agent are this test's subject; a crash before the first acknowledgement is test/e2e/first-start.test.ts's.
  await agentReady()

  const lines = realAuditLines(EVENTS)
  const writing = writePaced(log, lines, RATE, 500)

  let agentKills = 0
  let collectorKills = 0
  const crashing = (async () => {
    for (let k = 0; k < 20; k++) {
      // Kill at a random moment of a running agent's life: starting up, reading, sealing, sending, writing its checkpoint.
      if (k % 2 === 0) await agentReady()
      await sleep(Math.random() * 700)
      await stopProcess(agent, 'SIGKILL')
      agentKills++
      if (k % 7 === 3) {
        await stopProcess(collector, 'SIGKILL')
        collectorKills++
        await sleep(Math.random() * 300)
        collector = startCollector()
      }
      await sleep(Math.random() * 200)
      agent = startAgent()
    }
  })()
  await Promise.all([writing, crashing])
  t.equal(agentKills, 20)
  t.equal(collectorKills, 3)

  await waitFor('the agent to catch up', () => caughtUp(state, log.path), 240_000, 250)
  await stopProcess(agent)
  await stopProcess(collector)

  await checkStoreHoldsSource(t, store, lines, state, publicKeyFile)
})
