// @eraftkv/utl: eraftkv-utl, the offline tool for data dirs (exported for tests and tools).
export { LayoutError, layoutGroups, parseRestoreLayout, readRestoreLayout } from './restore-layout';
export type { LayoutNode, RestoreLayout } from './restore-layout';
export { restoreCluster, RestoreError } from './restore';
export type { RestoredGroup, RestoreOptions, RestoreSummary } from './restore';
export { runUtl, utlExitCodes, utlVersion, type UtlIo } from './utl';
