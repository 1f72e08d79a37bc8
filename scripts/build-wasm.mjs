#!/usr/bin/env node
// Compiles the AssemblyScript kernels (`<module>/assembly/*.ts`) to
// `dist/<module>/<name>.wasm`. Runs before tsc in `npm run build`.
import { readdirSync, mkdirSync, existsSync } from 'node:fs'
import { join, basename, dirname } from 'node:path'
import { spawnSync } from 'node:child_process'

const root = new URL('..', import.meta.url).pathname
const kernels = [['core/erasure/assembly', 'dist/core/erasure']]
for (const [srcDir, outDir] of kernels) {
  if (!existsSync(join(root, srcDir))) continue
  mkdirSync(join(root, outDir), { recursive: true })
  for (const file of readdirSync(join(root, srcDir)).filter((f) => f.endsWith('.ts'))) {
    const out = join(root, outDir, `${basename(file, '.ts')}.wasm`)
    const asc = join(root, 'node_modules', '.bin', 'asc')
    const args = [join(root, srcDir, file), '-o', out, '-O3', '--runtime', 'stub', '--enable', 'simd', '--noAssert', '--initialMemory', '64']
    const result = spawnSync(asc, args, { stdio: 'inherit' })
    if (result.status !== 0) process.exit(result.status ?? 1)
    console.log(`built ${join(outDir, basename(out))} from ${join(srcDir, file)} (${dirname(out) ? 'ok' : ''})`)
  }
}
