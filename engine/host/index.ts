/** The engine host: many volumes over one NBD server, plus the admin API and its client. */
export { EngineHost, type EngineHostInit, type EngineHostComponents } from './engine-host.js'
export { mountAdminApi, HTTP_STATUS_BY_KIND, type AdminApiComponents } from './admin-api.js'
export { AdminClient, type AdminClientInit, type EngineVolume } from './admin-client.js'
export { AdminApiError, EngineUnreachableError, ForeignVolumeError, type HostedVolume, type VolumeAttacher } from './types.js'
