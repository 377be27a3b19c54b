import t from 'tap'
const x: number = 3
t.equal(x, 3)
t.equal(process.versions.node.split('.')[0], '24')
