/** One tarball as `npm pack --json` reports it. */
export interface PackedTarball {
  name: string;
  version: string;
  filename: string;
  files: { path: string; size: number; mode: number }[];
}

/** `npm pack` of the workspace packages in `dirs` into `destination`; see pack.mjs. */
export function packWorkspaces(root: string, dirs: readonly string[], destination: string): PackedTarball[];
