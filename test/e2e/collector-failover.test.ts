// Failover between collectors, end to end with real processes: two collectors on one PostgreSQL database,
// an agent given both URLs (--collector A,B). Collector A is SIGKILLed mid-stream: the agent goes on with B;
// A comes back on its address: the agent returns to it (collector.failbackInterval). The export from the
// database must equal the log byte for byte, every event once, and verify must pass.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { generateKeyPair } from '../../agent/keygen.ts'
import { AuditLogWriter } from '../../scripts/audit-log-writer.ts'
import { freshStore } from '../collector/stores.ts'
import { realAuditLines, writePaced } from './audit-source.ts'
import { caughtUp, checkStoreHoldsSource, freePort, startProcess, stopProcess, waitFor, type Running } from './processes.ts'

const EVENTS = 30_000
const RATE = 5_000

/** One sample of a Prometheus text exposition (0 when absent). */
async function sample(metricsUrl: string, series: string): Promise<number> {
  const text = await (await fetch(`${metricsUrl}/metrics`).catch(() => undefined))?.text() ?? ''
  const line = text.split('\n').find((l) => l.startsWith(`${series} `))
  return line ? Number(line.slice(series.length + 1)) : 0
}

t.test('collector A killed mid-stream: the agent goes on with B, nothing lost or doubled, and returns to A once it is back', async (t) => {
  const store = await freshStore(t, 'postgres')
  const dir = t.testdir()
  mkdirSync(join(dir, 'log'))
  const { keyFile, publicKeyFile } = generateKeyPair(join(dir, 'node'))
  const ports = [await freePort(), await freePort()]
  const collectorMetrics = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`]
  const [a, b] = ports.map((p) => `http://127.0.0.1:${p}`) as [string, string]
  const startCollector = (i: number) => startProcess(['collector', '--listen', `127.0.0.1:${ports[i]}`, '--store', store, '--trust', publicKeyFile, '--metrics-listen', collectorMetrics[i]!.slice('http://'.length)])
  const collectors: Running[] = [startCollector(0), startCollector(1)]
  const agentMetrics = `http://127.0.0.1:${await freePort()}`
  const state = join(dir, 'state')
  // Heartbeats every 500 ms keep requests going when no line is written, so a return is not left to the writer's pace.
  const config = join(dir, 'agent.yaml')
  writeFileSync(config, 'collector:\n  failbackInterval: 1s\nbatch:\n  heartbeatInterval: 500ms\n')
  const log = new AuditLogWriter({ path: join(dir, 'log', 'audit.log'), maxBytes: 1024 * 1024, maxBackups: 0, gzipEvery: 3, mode: 'rename' })
  for (const url of [a, b]) await waitFor(`the collector at ${url}`, async () => (await fetch(`${url}/readyz`).catch(() => undefined))?.ok === true)
  const agent = startProcess(['agent', '--config', config, '--node', 'failover-node', '--collector', `${a},${b}`, '--log', log.path, '--state-dir', state, '--key', keyFile, '--metrics-listen', agentMetrics.slice('http://'.length)])
  t.teardown(async () => {
    await stopProcess(agent, 'SIGKILL')
    for (const c of collectors) await stopProcess(c, 'SIGKILL')
  })
  const current = (url: string) => sample(agentMetrics, `auditrail_sending_to{url="${url}"}`)
  await waitFor('the agent to be ready', async () => (await fetch(`${agentMetrics}/readyz`).catch(() => undefined))?.ok === true)
  t.equal(await current(a), 1, 'it starts on the first (preferred) collector')
  t.equal(await current(b), 0)

  const lines = realAuditLines(EVENTS)
  const writing = writePaced(log, lines, RATE, 500)
  await waitFor('batches of events acknowledged by A', async () => (await sample(agentMetrics, 'auditrail_batches_sealed_total{kind="events"}')) > 3 && (await sample(agentMetrics, 'auditrail_chain_sequence')) > 3, 60_000, 20)
  await stopProcess(collectors[0]!, 'SIGKILL')
  await waitFor('the agent to move to B', async () => (await current(b)) === 1, 60_000, 20)
  const movedAt = await sample(agentMetrics, 'auditrail_chain_sequence')
  await waitFor('B to acknowledge batches', async () => (await sample(agentMetrics, 'auditrail_chain_sequence')) > movedAt + 5, 60_000, 20)
  collectors[0] = startCollector(0)
  await waitFor('the agent to return to A', async () => (await current(a)) === 1, 60_000, 50)
  await writing
  await waitFor('the agent to catch up', () => caughtUp(state, log.path), 120_000, 250)

  t.equal(await current(b), 0, 'B is no longer current')
  const movedAway = (await sample(agentMetrics, `auditrail_failovers_total{url="${b}",reason="transport"}`)) + (await sample(agentMetrics, `auditrail_failovers_total{url="${b}",reason="timeout"}`))
  t.ok(movedAway >= 1, `the failover to B is counted (${movedAway})`)
  t.ok((await sample(agentMetrics, `auditrail_failovers_total{url="${a}",reason="failback"}`)) >= 1, 'the return to A is counted')
  const okOn = (i: number) => sample(collectorMetrics[i]!, 'auditrail_collector_requests_total{procedure="PushBatch",protocol="connect",codec="proto",code="ok",http="1.1"}')
  t.ok((await okOn(1)) > 0, 'B acknowledged requests')
  t.ok((await okOn(0)) > 0, 'A, restarted, acknowledged requests again')
  t.match(agent.logs(), /"from":"http:\/\/127\.0\.0\.1:\d+","to":"http:\/\/127\.0\.0\.1:\d+","reason":"(transport|timeout)".*sending to/, 'the switch is logged')
  t.match(agent.logs(), /back on the preferred collector/)

  await stopProcess(agent)
  for (const c of collectors) await stopProcess(c)
  await checkStoreHoldsSource(t, store, lines, state, publicKeyFile)
})
