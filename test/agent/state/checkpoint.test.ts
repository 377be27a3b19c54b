import { readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { CheckpointFile, type Checkpoint } from '../../../agent/state/checkpoint.ts'

const sample: Checkpoint = {
  streamId: 'node-a',
  nextSequence: 8,
  headDigest: Buffer.alloc(32, 7),
  position: {
    path: '/var/log/kubernetes/audit/audit.log',
    identity: { device: 64768, inode: 1234, fingerprint: Buffer.alloc(32, 1), fingerprintLength: 256 },
    order: { rotatedAt: 1764064800000, liveAfter: 1764064700000 },
    offset: 99_000,
    endOfFile: false,
  },
}

t.test('round-trips, is private, and leaves no temp files', async (t) => {
  const dir = t.testdir()
  const file = new CheckpointFile(dir)
  t.equal(await file.load(), undefined, 'no checkpoint yet')
  await file.save(sample)
  await file.save({ ...sample, nextSequence: 9 })
  const loaded = await file.load()
  t.same(loaded, { ...sample, nextSequence: 9 })
  t.equal(statSync(file.path).mode & 0o777, 0o600)
  t.same(readdirSync(dir), ['checkpoint.json'])
})

t.test('a damaged checkpoint is an error that names the field and says what to do', async (t) => {
  const dir = t.testdir()
  const file = new CheckpointFile(dir)
  writeFileSync(file.path, '{"version":1,')
  await t.rejects(file.load(), /not valid JSON.*move it away/)
  writeFileSync(file.path, JSON.stringify({ version: 1, streamId: 'a', nextSequence: -1, headDigest: '' }))
  await t.rejects(file.load(), /nextSequence/)
  writeFileSync(file.path, JSON.stringify({ version: 1, streamId: 'a', nextSequence: 2, headDigest: 'zz' }))
  await t.rejects(file.load(), /headDigest/)
  writeFileSync(join(dir, 'checkpoint.json'), JSON.stringify({ version: 1, streamId: 'a', nextSequence: 1, headDigest: '', position: { path: 1 } }))
  await t.rejects(file.load(), /position.path/)
})
