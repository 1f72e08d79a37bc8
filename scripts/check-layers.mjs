#!/usr/bin/env node
// Enforces the component layering of docs/adr/0018-component-layering.md: each
// top-level folder may import only the folders listed for it. A cycle between
// components, or core reaching up into a daemon, fails the build here.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative, resolve, dirname, sep } from 'node:path'

const root = resolve(new URL('..', import.meta.url).pathname)
const allowed = {
  core: [],
  'storage-node': ['core'],
  'control-plane': ['core'],
  engine: ['core', 'storage-node', 'control-plane'],
  'csi-driver': ['core', 'storage-node', 'control-plane', 'engine'],
  operator: ['core', 'storage-node', 'control-plane'],
  bench: ['core', 'storage-node', 'control-plane', 'engine', 'csi-driver', 'operator'],
  cli: ['core', 'storage-node', 'control-plane', 'engine', 'csi-driver', 'operator', 'bench'],
  e2e: ['core', 'storage-node', 'control-plane', 'engine', 'csi-driver', 'operator', 'bench', 'cli'],
}

function* sources(dir) {
  for (const entry of readdirSync(dir)) {
    const path = join(dir, entry)
    if (statSync(path).isDirectory()) yield* sources(path)
    else if (entry.endsWith('.ts') && !path.includes(`${sep}assembly${sep}`)) yield path
  }
}

const isTestCode = (file) => /(\.test|test-support|testing|fixtures?)\.ts$/.test(file)

const problems = []
for (const [component, deps] of Object.entries(allowed)) {
  let files
  try {
    files = [...sources(join(root, component))]
  } catch {
    continue
  }
  for (const file of files) {
    const text = readFileSync(file, 'utf8')
    for (const match of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
      const target = relative(root, resolve(dirname(file), match[1]))
      const top = target.split(sep)[0]
      if (top === component || !(top in allowed)) continue
      // Tests and their support code may use the test infrastructure in e2e/ (the test API server).
      if (top === 'e2e' && isTestCode(file)) continue
      if (!deps.includes(top)) problems.push(`${relative(root, file)} imports ${target}: ${component} may import only ${deps.join(', ') || 'itself'}`)
    }
  }
}
if (problems.length > 0) {
  console.error(`check-layers: ${problems.length} import(s) break the layering (docs/adr/0018-component-layering.md):\n  ${problems.join('\n  ')}`)
  process.exit(1)
}
console.log('check-layers: component imports follow the layering')
