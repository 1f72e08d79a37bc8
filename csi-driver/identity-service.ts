/**
 * The CSI Identity service: who the plugin is, what it offers, and whether it can
 * serve. Probe answers "not ready" (never an error) while the control plane does not
 * answer, so a slow API server delays traffic instead of getting the pod restarted.
 */
import type { Logger } from '../core/logger.js'
import type { IdentityService, PluginCapability, PluginInfo } from './types.js'

/** The CSI driver name (ARCHITECTURE.md). */
export const CSI_DRIVER_NAME = 'csi.cairn.dev'

export interface IdentityServiceInit {
  /** vendor_version: the package version. */
  version: string
  /** Whether the controller service is served (controller and all modes). */
  controller: boolean
}

export interface IdentityServiceComponents {
  /** Why the plugin cannot serve yet (the control plane does not answer), or undefined when it can. */
  readiness: () => Promise<string | undefined>
  logger: Logger
}

export class CsiIdentityService implements IdentityService {
  constructor(
    private readonly init: IdentityServiceInit,
    private readonly components: IdentityServiceComponents,
  ) {}

  async getPluginInfo(): Promise<PluginInfo> {
    return { name: CSI_DRIVER_NAME, vendorVersion: this.init.version, manifest: {} }
  }

  async getPluginCapabilities(): Promise<PluginCapability[]> {
    const caps: PluginCapability[] = [
      { kind: 'service', type: 'VOLUME_ACCESSIBILITY_CONSTRAINTS' },
      { kind: 'volumeExpansion', type: 'ONLINE' },
    ]
    if (this.init.controller) caps.unshift({ kind: 'service', type: 'CONTROLLER_SERVICE' })
    return caps
  }

  async probe(): Promise<{ ready: boolean }> {
    let reason: string | undefined
    try {
      reason = await this.components.readiness()
    } catch (err) {
      reason = (err as Error).message
    }
    if (reason !== undefined) this.components.logger.warn({ reason }, 'probe: not ready')
    return { ready: reason === undefined }
  }
}

/** A readiness check that asks the control plane for one block store: it answers, or it says why not. */
export function controlPlaneReadiness(cp: { listBlockStores(options: { limit: number }): Promise<unknown> }): () => Promise<string | undefined> {
  return async () => {
    try {
      await cp.listBlockStores({ limit: 1 })
      return undefined
    } catch (err) {
      return `control plane does not answer: ${(err as Error).message}`
    }
  }
}
