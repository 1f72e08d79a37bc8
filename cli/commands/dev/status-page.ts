/**
 * The one-page status view of `cairn dev` (HTML at `/`, the same data as JSON at
 * `/status.json`): volumes with size, allocation, health and epoch; storage nodes up
 * or down; links to every process's metrics.
 */
import type { Express } from 'express'
import type { ClusterMember, Volume } from '../../../control-plane/types.js'
import type { DevState } from './state.js'
import type { Supervisor } from './supervisor.js'

export interface StatusView {
  state: DevState
  volumes: Volume[]
  clusterMapEpoch: number
  /** The cluster map's members (state, peer id, mesh address). @default none shown */
  members?: readonly ClusterMember[]
}

const GiB = 2 ** 30

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`
}

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const head = headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('')
  // Cells are escaped by the caller: some hold links.
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`).join('\n')
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`
}

function link(href: string, text: string): string {
  return `<a href="${escapeHtml(href)}">${escapeHtml(text)}</a>`
}

function volumeRows(view: StatusView): string[][] {
  return view.volumes.map((v) => [
    escapeHtml(v.name),
    escapeHtml(formatBytes(v.sizeBytes)),
    escapeHtml(formatBytes(v.status.allocatedBytes)),
    escapeHtml(v.status.health),
    String(v.status.epoch),
    escapeHtml(v.status.attachment === null ? 'detached' : `${v.status.attachment.nodeId} (epoch ${v.status.attachment.epoch})`),
    escapeHtml(`nbd://${view.state.nbd.address}/${v.name}`),
  ])
}

function processRows(state: DevState, members: readonly ClusterMember[] = []): string[][] {
  const up = (s: string): string => (s === 'up' ? '<span class="up">up</span>' : `<span class="down">${escapeHtml(s)}</span>`)
  // The map's view of the node, beside the process's: down after --member-down-timeout, which starts a rebuild elsewhere.
  const member = (id: string): string => {
    const m = members.find((x) => x.id === id)
    return m === undefined ? '-' : m.state === 'active' ? escapeHtml(m.state) : `<span class="down">${escapeHtml(m.state)}</span>`
  }
  const rows = state.nodes.map((n) => [
    escapeHtml(n.id),
    up(n.state),
    member(n.id),
    escapeHtml(n.address),
    String(n.pid ?? '-'),
    String(n.restarts),
    link(`http://${n.metricsAddress}/metrics`, 'metrics'),
  ])
  const admin = state.engine.adminAddress
  rows.push([
    `engine (${escapeHtml(state.engine.nodeId)})`,
    up(state.engine.state),
    '-',
    escapeHtml(state.nbd.address),
    String(state.engine.pid ?? '-'),
    String(state.engine.restarts),
    admin === null ? '-' : link(`http://${admin}/metrics`, 'metrics'),
  ])
  return rows
}

/** The status page. */
export function renderStatusPage(view: StatusView): string {
  const { state } = view
  const uri = state.nbd.uri
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cairn dev</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem}table{border-collapse:collapse;margin-bottom:2rem}
th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}th{background:#f3f3f3}.up{color:#080}.down{color:#b00;font-weight:bold}
code{background:#f3f3f3;padding:.1rem .3rem}
</style></head><body>
<h1>cairn dev</h1>
<p>Data directory <code>${escapeHtml(state.dataDir)}</code>, cluster map epoch ${view.clusterMapEpoch}, started ${escapeHtml(state.startedAt)}.</p>
<h2>Volumes</h2>
${table(['name', 'size', 'allocated', 'health', 'epoch', 'attachment', 'NBD URI'], volumeRows(view))}
<h2>Processes</h2>
${table(['name', 'state', 'member', 'address', 'pid', 'restarts', 'metrics'], processRows(state, view.members))}
<h2>Connect</h2>
<pre>nbdinfo ${escapeHtml(uri)}
qemu-img convert -p -O raw disk.img ${escapeHtml(uri)}
nbdfuse /mnt/cairn/disk ${escapeHtml(uri)} &amp;   # then: losetup -f --show /mnt/cairn/disk</pre>
<p>${link('/status.json', 'status.json')}</p>
</body></html>
`
}

/** The same view for scripts. */
export function statusJson(view: StatusView): Record<string, unknown> {
  return {
    ...view.state,
    clusterMapEpoch: view.clusterMapEpoch,
    members: (view.members ?? []).map((m) => ({ id: m.id, state: m.state, peerId: m.peerId, meshAddress: m.meshAddress ?? null })),
    volumes: view.volumes.map((v) => ({
      name: v.name,
      sizeBytes: v.sizeBytes,
      sizeGiB: v.sizeBytes / GiB,
      allocatedBytes: v.status.allocatedBytes,
      health: v.status.health,
      epoch: v.status.epoch,
      attachment: v.status.attachment,
    })),
  }
}

/**
 * Fault injection for trying out (and testing) failures: `POST /v1/processes/NAME/kill`
 * SIGKILLs a storage node or the engine and keeps it down; `.../start` brings it back.
 * It only exists in `cairn dev`, which listens on loopback.
 */
export function mountFaultApi(app: Express, find: (name: string) => Supervisor<unknown> | undefined): void {
  app.post('/v1/processes/:name/:action', async (req, res) => {
    const supervisor = find(String(req.params.name))
    const action = String(req.params.action)
    if (supervisor === undefined) return void res.status(404).json({ error: { name: 'NotFoundError', message: `no process ${req.params.name}` } })
    if (action === 'kill') await supervisor.kill('SIGKILL')
    else if (action === 'start') await supervisor.resume()
    else return void res.status(400).json({ error: { name: 'InvalidArgumentError', message: 'action must be kill or start' } })
    res.json({ name: req.params.name, state: supervisor.state, pid: supervisor.pid ?? null })
  })
}
