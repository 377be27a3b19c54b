import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { backupNaming } from '../../agent/tail/backup-names.ts'
import { createAuditEventGenerator } from '../../scripts/audit-events.ts'
import { AuditLogWriter } from '../../scripts/audit-log-writer.ts'

function contents(dir: string): Buffer {
  const naming = backupNaming(join(dir, 'audit.log'))
  const backups = readdirSync(dir).map((n) => naming.parse(n)).filter((b) => b !== undefined).sort((a, b) => a.rotatedAt - b.rotatedAt)
  const parts = backups.map((b) => (b.gzip ? gunzipSync(readFileSync(join(dir, b.name))) : readFileSync(join(dir, b.name))))
  return Buffer.concat([...parts, readFileSync(join(dir, 'audit.log'))])
}

t.test('events are deterministic per seed, valid audit.k8s.io/v1 JSON, and cover a cluster\'s mix', async (t) => {
  const a = createAuditEventGenerator({ seed: 7 })
  const b = createAuditEventGenerator({ seed: 7 })
  const now = Date.UTC(2026, 10, 25)
  const lines = Array.from({ length: 5000 }, () => a.next(now))
  t.same(Array.from({ length: 5000 }, () => b.next(now)), lines, 'same seed, same log')
  const events = lines.map((l) => JSON.parse(l))
  for (const e of events) {
    if (e.kind !== 'Event' || e.apiVersion !== 'audit.k8s.io/v1' || !e.auditID || !e.stage || !e.verb || !e.stageTimestamp) t.fail(`not an event: ${JSON.stringify(e).slice(0, 200)}`)
  }
  const has = (f: (e: any) => boolean, what: string) => t.ok(events.some(f), what)
  has((e) => e.objectRef?.resource === 'leases', 'lease renewals')
  has((e) => e.verb === 'watch', 'watches')
  has((e) => e.objectRef?.resource === 'clusterrolebindings' && e.requestObject?.roleRef?.name === 'cluster-admin', 'a cluster-admin binding')
  has((e) => e.objectRef?.subresource === 'exec', 'exec into a pod')
  has((e) => e.objectRef?.resource === 'secrets', 'secret access')
  has((e) => e.objectRef?.subresource === 'token' && e.responseObject?.status?.token, 'token requests')
  has((e) => e.requestObject?.spec?.containers?.[0]?.securityContext?.privileged === true, 'a privileged pod')
  has((e) => e.responseStatus?.code === 403, 'forbidden calls')
  has((e) => e.user?.username === 'system:anonymous', 'anonymous calls')
  has((e) => e.stage === 'RequestReceived', 'RequestReceived stages of mutating requests')
  const sizes = lines.map((l) => l.length).sort((x, y) => x - y)
  t.ok(sizes[Math.floor(sizes.length / 2)]! > 400 && sizes[Math.floor(sizes.length / 2)]! < 1500, 'median size like a real apiserver\'s')
  t.ok(sizes.at(-1)! > 10_000, 'some events are tens of kilobytes')
})

t.test('rename rotation: lumberjack names, files 0600, backups + live file = every line in order; retention keeps N', async (t) => {
  const dir = t.testdir()
  const w = new AuditLogWriter({ path: join(dir, 'audit.log'), maxBytes: 64 * 1024, maxBackups: 0, gzipEvery: 2, mode: 'rename' })
  const gen = createAuditEventGenerator({ seed: 1 })
  const expected = createHash('sha256')
  for (let i = 0; i < 2000; i++) {
    const line = gen.next()
    w.write(line)
    expected.update(`${line}\n`)
  }
  await w.close()
  t.ok(w.rotations > 10)
  const names = readdirSync(dir)
  t.ok(names.every((n) => n === 'audit.log' || /^audit-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}\.log(\.gz)?$/.test(n)), names.join(' '))
  t.ok(names.some((n) => n.endsWith('.gz')) && names.some((n) => /\d\.log$/.test(n)), 'some backups gzipped, some not')
  t.ok(names.every((n) => (statSync(join(dir, n)).mode & 0o777) === 0o600), 'mode 0600')
  t.equal(createHash('sha256').update(contents(dir)).digest('hex'), w.hash.digest('hex'))

  const kept = t.testdir()
  const r = new AuditLogWriter({ path: join(kept, 'audit.log'), maxBytes: 4096, maxBackups: 3, gzipEvery: 1, mode: 'rename' })
  for (let i = 0; i < 200; i++) r.write(gen.next())
  await r.close()
  t.equal(readdirSync(kept).filter((n) => n !== 'audit.log').length, 3, 'three backups kept')
  t.ok(readdirSync(kept).filter((n) => n !== 'audit.log').every((n) => n.endsWith('.gz')), 'no .log left once compression is done')
})

t.test('copytruncate keeps the inode and truncates in place; recreate deletes the file and makes a new one', async (t) => {
  const dir = t.testdir()
  const w = new AuditLogWriter({ path: join(dir, 'audit.log'), maxBytes: 1 << 20, maxBackups: 0, gzipEvery: 0, mode: 'copytruncate' })
  w.write('{"a":1}')
  const ino = statSync(w.path).ino
  w.rotate()
  w.write('{"a":2}')
  await w.close()
  t.equal(statSync(w.path).ino, ino)
  t.equal(readFileSync(w.path, 'utf8'), '{"a":2}\n')
  t.equal(readdirSync(dir).length, 2)
  const other = t.testdir()
  const r = new AuditLogWriter({ path: join(other, 'audit.log'), maxBytes: 1 << 20, maxBackups: 0, gzipEvery: 0, mode: 'recreate' })
  r.write('{"a":1}')
  r.rotate()
  r.write('{"a":2}')
  await r.close()
  // (The file system may hand the freed inode to the new file: only the first bytes tell them apart.)
  t.equal(readFileSync(r.path, 'utf8'), '{"a":2}\n')
  t.same(readdirSync(other), ['audit.log'])
})
