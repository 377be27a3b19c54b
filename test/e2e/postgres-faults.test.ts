// Faults on the PostgreSQL tier, end to end with real processes: two collectors on one database, an agent
// that moves from one to the other (what a failover does), a collector SIGKILLed and started again,
// PostgreSQL restarted mid-stream (pg_ctl restart -m fast), the agent SIGKILLed. The export from the
// database must equal the log byte for byte, with every batch once, and verify must pass.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { generateKeyPair } from '../../agent/keygen.ts'
import { AuditLogWriter } from '../../scripts/audit-log-writer.ts'
import { freshStore, postgresServer } from '../collector/stores.ts'
import { realAuditLines, writePaced } from './audit-source.ts'
import { caughtUp, checkStoreHoldsSource, freePort, startProcess, stopProcess, waitFor, type Running } from './processes.ts'

const EVENTS = 30_000
const RATE = 6_000

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('two collectors on one database, a collector killed, PostgreSQL restarted, the agent killed and moved: byte-identical, each batch once', async (t) => {
  const server = await postgresServer()
  const store = await freshStore(t, 'postgres')
  const dir = t.testdir()
  mkdirSync(join(dir, 'log'))
  const { keyFile, publicKeyFile } = generateKeyPair(join(dir, 'node'))
  const ports = [await freePort(), await freePort()]
  const urls = ports.map((p) => `http://127.0.0.1:${p}`)
  const startCollector = (i: number) => startProcess(['collector', '--listen', `127.0.0.1:${ports[i]}`, '--store', store, '--trust', publicKeyFile])
  const collectors: Running[] = [startCollector(0), startCollector(1)]
  const metrics = `127.0.0.1:${await freePort()}`
  const state = join(dir, 'state')
  const log = new AuditLogWriter({ path: join(dir, 'log', 'audit.log'), maxBytes: 1024 * 1024, maxBackups: 0, gzipEvery: 3, mode: 'rename' })
  const startAgent = (i: number) => startProcess(['agent', '--node', 'pg-node', '--collector', urls[i]!, '--log', log.path, '--state-dir', state, '--key', keyFile, '--metrics-listen', metrics])
  const agentReady = () => waitFor('the agent to be ready', async () => (await fetch(`http://${metrics}/readyz`).catch(() => undefined))?.ok === true, 60_000, 20)
  for (const url of urls) await waitFor(`the collector at ${url}`, async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.ok === true)
  let agent = startAgent(0)
  t.teardown(async () => {
    await stopProcess(agent, 'SIGKILL')
    for (const c of collectors) await stopProcess(c, 'SIGKILL')
  })
  await agentReady()

  const lines = realAuditLines(EVENTS)
  const writing = writePaced(log, lines, RATE, 500)
  const faults = (async () => {
    await sleep(700)
    // The collector the agent talks to dies; it comes back on the same address.
    await stopProcess(collectors[0]!, 'SIGKILL')
    await sleep(300)
    collectors[0] = startCollector(0)
    await sleep(700)
    // The database restarts under both collectors.
    server.restart()
    await sleep(700)
    // The agent dies and comes back on the other collector: it learns the head from the database.
    await stopProcess(agent, 'SIGKILL')
    agent = startAgent(1)
    await sleep(800)
    await stopProcess(agent, 'SIGKILL')
    agent = startAgent(0)
  })()
  await Promise.all([writing, faults])

  await waitFor('the agent to catch up', () => caughtUp(state, log.path), 120_000, 250)
  await stopProcess(agent)
  for (const c of collectors) await stopProcess(c)

  await checkStoreHoldsSource(t, store, lines, state, publicKeyFile)
})
