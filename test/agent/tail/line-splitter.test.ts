import t from 'tap'
import { LineSplitter, type SplitRecord } from '../../../agent/tail/line-splitter.ts'
import type { QuarantineStore } from '../../../agent/tail/quarantine.ts'

const quarantine: QuarantineStore = { begin: () => { throw new Error('no line here is over the limit') } }

t.test('a line across two reads is whole though the first read\'s buffer is reused', async (t) => {
  const splitter = new LineSplitter({ maxLineBytes: 1024, quarantine, startOffset: 0, describeSource: () => 'test' })
  const buffer = Buffer.from('ab\ncd')
  const out: SplitRecord[] = []
  splitter.feed(buffer, out)
  t.same(out.map((r) => r.kind === 'line' && r.bytes.toString()), ['ab'])
  // The tailer reads the next bytes into the same buffer once the first line was sealed.
  buffer.write('ef\nxx')
  splitter.feed(buffer.subarray(0, 3), out)
  t.same(out.slice(1).map((r) => r.kind === 'line' && r.bytes.toString()), ['cdef'])
  t.same(out.map((r) => r.offset), [0, 3])
})
