/**
 * The node plugin's memory across restarts: one JSON file per staged (or staging)
 * volume under the plugin's state dir. It is written before each step that creates
 * something (engine, block device, mount), so a plugin killed halfway knows what it
 * may have left behind; the resources themselves live at paths derived from the
 * volume id, so cleanup also finds what the file could not yet name.
 */
import { createHash } from 'node:crypto'
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { z } from 'zod'

const accessSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('mount'), fsType: z.enum(['ext4', 'xfs']), mountFlags: z.array(z.string()) }),
  z.object({ type: z.literal('block') }),
])

/** What one NodePublishVolume was made with: a publish of the same target with anything else is ALREADY_EXISTS. */
const publishSchema = z.object({
  access: accessSchema,
  accessMode: z.string().min(1),
  /** The effective flag: the request's `readonly` or a read-only access mode. */
  readOnly: z.boolean(),
})

export const volumeStateSchema = z.object({
  version: z.literal(1),
  volumeId: z.string().min(1),
  /** `staging` until NodeStage finished; `staged` after; `unstaging` once NodeUnstage began. */
  phase: z.enum(['staging', 'staged', 'unstaging']),
  stagingPath: z.string().min(1),
  access: accessSchema,
  readOnly: z.boolean(),
  /** The CSI access mode the volume was staged with; absent in state written before it was recorded. */
  accessMode: z.string().min(1).optional(),
  /** Target path → what it was published with; absent in state written before publishes were recorded. */
  publishes: z.record(z.string(), publishSchema).optional(),
  attachMode: z.enum(['nbd', 'fuse']),
  /** The engine serves read-only and holds no epoch (staged from a read-only publish); absent in older state: false. */
  engineReadOnly: z.boolean().optional(),
  engine: z.object({ pid: z.number().int(), socketPath: z.string(), adminAddress: z.string() }).nullable(),
  device: z.string().nullable(),
})
export type VolumeState = z.infer<typeof volumeStateSchema>
export type VolumeAccess = z.infer<typeof accessSchema>
export type PublishRecord = z.infer<typeof publishSchema>

/** Per-volume state files and working directories under one state dir. */
export class NodeStateStore {
  constructor(readonly stateDir: string) {}

  /**
   * The volume's working directory. Named by a hash of the id: ids may hold any
   * character, and a Unix socket path must stay under 108 bytes.
   */
  volumeDir(volumeId: string): string {
    return join(this.stateDir, 'volumes', createHash('sha256').update(volumeId).digest('hex').slice(0, 24))
  }

  /** The saved state, or undefined when the volume is not staged here (a corrupt file counts as absent). */
  async read(volumeId: string): Promise<VolumeState | undefined> {
    return this.readFile(join(this.volumeDir(volumeId), 'state.json'))
  }

  /** Writes atomically (temp file + rename), so a crash leaves the old or the new state, never half. */
  async write(state: VolumeState): Promise<void> {
    const dir = this.volumeDir(state.volumeId)
    await mkdir(dir, { recursive: true })
    const tmp = join(dir, 'state.json.tmp')
    await writeFile(tmp, `${JSON.stringify(state, null, 2)}\n`)
    await rename(tmp, join(dir, 'state.json'))
  }

  /** Forgets the volume: its whole working directory goes. */
  async remove(volumeId: string): Promise<void> {
    await rm(this.volumeDir(volumeId), { recursive: true, force: true })
  }

  /** Every volume with a state file. */
  async list(): Promise<VolumeState[]> {
    const root = join(this.stateDir, 'volumes')
    const names = await readdir(root).catch(() => [] as string[])
    const out: VolumeState[] = []
    for (const name of names) {
      const state = await this.readFile(join(root, name, 'state.json'))
      if (state !== undefined) out.push(state)
    }
    return out
  }

  private async readFile(path: string): Promise<VolumeState | undefined> {
    const text = await readFile(path, 'utf8').catch(() => undefined)
    if (text === undefined) return undefined
    try {
      return volumeStateSchema.parse(JSON.parse(text))
    } catch {
      return undefined
    }
  }
}
