import { zstdDecompressSync } from 'node:zlib'
import t from 'tap'
import { ZstdFrames } from '../../../agent/ship/zstd-frames.ts'

const body = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => `{"auditID":"${seed}-${i}","user":"system:node:n${i % 7}"}\n`).join(''))

t.test('each body is a zstd frame of its own, and the bodies are views into one output buffer', async (t) => {
  const frames = new ZstdFrames({ chunkSize: 1024 * 1024, level: 1 })
  t.teardown(() => frames.close())
  const inputs = [body(20_000, 1), body(30_000, 2), body(25_000, 3)]
  const outputs: Buffer[] = []
  for (const input of inputs) outputs.push(await frames.compress(input))
  for (let i = 0; i < inputs.length; i++) t.ok(zstdDecompressSync(outputs[i]!).equals(inputs[i]!), `body ${i} decompresses alone`)
  t.equal(outputs[1]!.buffer, outputs[0]!.buffer, 'no output buffer per body')
  t.equal(outputs[1]!.byteOffset, outputs[0]!.byteOffset + outputs[0]!.length, 'written after the one before, never over it')
})

t.test('bodies asked for together come out whole, in order; output past the buffer is joined', async (t) => {
  const frames = new ZstdFrames({ chunkSize: 4096, level: 1 })
  t.teardown(() => frames.close())
  const inputs = Array.from({ length: 4 }, (_, i) => body(5_000, i))
  const outputs = await Promise.all(inputs.map((input) => frames.compress(input)))
  for (let i = 0; i < inputs.length; i++) t.ok(zstdDecompressSync(outputs[i]!).equals(inputs[i]!), `body ${i}`)
})

t.test('after close, the next body starts a new stream', async (t) => {
  const frames = new ZstdFrames({ chunkSize: 1024 * 1024, level: 1 })
  const first = await frames.compress(body(100, 1))
  frames.close()
  const second = await frames.compress(body(100, 2))
  frames.close()
  t.not(second.buffer, first.buffer)
  t.ok(zstdDecompressSync(second).equals(body(100, 2)))
})
