// A first start behind a busy apiserver: the log writer runs first (rename rotation
// every 256 KiB, every second backup gzipped), the agent starts a moment later,
// is killed with SIGKILL before its first acknowledgement, and restarts. With
// tail.startAt: oldest (the default) the export must hold every line written,
// byte for byte: the backups rotated before the first start included, and the
// restart resuming from the starting point the first start made durable.
import { mkdirSync, readFileSync } from 'node:fs'
import { createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { AuditLogWriter } from '../../scripts/audit-log-writer.ts'
import { realAuditLines, writePaced } from './audit-source.ts'
import { caughtUp, checkStoreHoldsSource, collectorRig, freePort, startProcess, stopProcess, waitFor } from './processes.ts'

const EVENTS = 30_000
const RATE = 10_000 // lines per second: about 60 rotations a second

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('writer first, agent killed before its first acknowledgement, restarted: every line in the export, byte for byte', async (t) => {
  const dir = t.testdir()
  mkdirSync(join(dir, 'log'))
  const { keyFile, publicKeyFile, port, url, store, start, ready } = await collectorRig(dir)
  const state = join(dir, 'state')
  const collector = start()
  t.teardown(() => stopProcess(collector, 'SIGKILL'))
  await ready()

  const log = new AuditLogWriter({ path: join(dir, 'log', 'audit.log'), maxBytes: 256 * 1024, maxBackups: 0, gzipEvery: 2, mode: 'rename' })
  const lines = realAuditLines(EVENTS)
  const writing = writePaced(log, lines, RATE, 200)

  // The first run talks to the collector through a proxy that never answers PushBatch: it can read,
  // seal and send, but no batch of it is acknowledged before the kill, however fast the machine.
  let held = 0
  const proxy = createServer((req, res) => {
    if (req.url?.endsWith('/PushBatch')) {
      held++
      return
    }
    req.pipe(request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode!, up.headers)
      up.pipe(res)
    }))
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    proxy.closeAllConnections()
    proxy.close()
  })
  const metrics = `127.0.0.1:${await freePort()}`
  const agentArgs = (collectorUrl: string) => ['agent', '--node', 'first', '--collector', collectorUrl, '--log', log.path, '--state-dir', state, '--key', keyFile, '--metrics-listen', metrics]
  await sleep(700)
  const rotatedBeforeStart = log.rotations
  const first = startProcess(agentArgs(`http://127.0.0.1:${(proxy.address() as AddressInfo).port}`))
  t.teardown(() => stopProcess(first, 'SIGKILL'))
  await waitFor('the first run to send a batch', () => held > 0, 30_000, 10)
  t.match(first.logs(), /"files":\d+.*"msg":"reading rotated backups before the live file"/, 'the log says how many backups are read first')
  await stopProcess(first, 'SIGKILL')
  const checkpoint = JSON.parse(readFileSync(join(state, 'checkpoint.json'), 'utf8'))
  t.equal(checkpoint.nextSequence, 1, 'killed before its first acknowledgement')
  t.ok(checkpoint.position?.rotatedAt > 0, 'its starting point, durable before the first read, lies in the oldest backup')
  t.ok(rotatedBeforeStart >= 10, `${rotatedBeforeStart} rotations before the first start`)

  // The log moves on while the agent is down: the starting backup may be gzipped meanwhile.
  await sleep(500)
  const second = startProcess(agentArgs(url))
  t.teardown(() => stopProcess(second, 'SIGKILL'))
  await writing
  await waitFor('the agent to catch up', () => caughtUp(state, log.path), 120_000, 100)
  const scrape = await (await fetch(`http://${metrics}/metrics`)).text()
  const backfilled = Number(/^auditrail_backfill_lines_total (\d+)$/m.exec(scrape)?.[1])
  t.ok(backfilled > 0, `the restart read ${backfilled} lines from the backups waiting at its start (${/^auditrail_backfill_files (\d+)$/m.exec(scrape)?.[1]} files)`)
  t.match(second.logs(), /"msg":"read the rotated backups found at start; following the live file"/, 'the log says when the backfill is done')
  await stopProcess(second)
  await stopProcess(collector)

  await checkStoreHoldsSource(t, store, lines, state, publicKeyFile)
})
