import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mountAt, parseMountInfo, parseMountInfoLine } from './mountinfo.js'

test('a mountinfo line with optional fields and escaped spaces parses into its parts', () => {
  const e = parseMountInfoLine('36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue')
  assert.equal(e.mountId, 36)
  assert.equal(e.parentId, 35)
  assert.equal(e.device, '98:0')
  assert.equal(e.root, '/mnt1')
  assert.equal(e.mountPoint, '/mnt/with space')
  assert.deepEqual(e.mountOptions, ['rw', 'noatime'])
  assert.equal(e.fsType, 'ext3')
  assert.equal(e.source, '/dev/root')
  assert.deepEqual(e.superOptions, ['rw', 'errors=continue'])
})

test('malformed mountinfo lines are refused with InvalidArgumentError', () => {
  for (const line of ['', '1 2 3', '36 35 98:0 / /mnt rw shared:1 ext4 /dev/x rw', '36 35 98:0 / /mnt rw - ext4']) {
    assert.throws(() => parseMountInfoLine(line), { name: 'InvalidArgumentError' }, JSON.stringify(line))
  }
})

test('mountAt finds the topmost of stacked mounts', () => {
  const mounts = parseMountInfo([
    '20 1 0:5 / /t rw - tmpfs tmpfs rw',
    '21 20 7:0 / /t ro - ext4 /dev/loop0 rw',
    '',
  ].join('\n'))
  assert.equal(mountAt(mounts, '/t')?.mountId, 21)
  assert.equal(mountAt(mounts, '/other'), undefined)
})
