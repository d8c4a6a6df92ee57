import { createHash, timingSafeEqual } from 'node:crypto';
import { unauthenticated } from '@mlserve/core';

/** The model repository extension's settings (`/v2/repository/...` over HTTP, Repository* over gRPC). */
export interface ManagementOptions {
  /** When set, repository requests need `Authorization: Bearer <token>` (else UNAUTHENTICATED). */
  token?: string;
  /**
   * Loads (or reloads) a model by name for `POST /v2/repository/models/{name}/load`; without it,
   * load answers 501. `@mlserve/repository` provides one.
   */
  load?: (name: string, parameters: Record<string, unknown>) => Promise<void>;
  /**
   * Unloads a model for `POST /v2/repository/models/{name}/unload` (`@mlserve/repository`'s keeps it
   * unloaded across polls); without it, the registry's `remove(name)`.
   */
  unload?: (name: string, parameters: Record<string, unknown>) => Promise<void>;
  /**
   * Lists models the repository could load but has not, for `POST /v2/repository/index`. A row
   * naming a version the registry serves adds to that version's row instead (its state, when
   * given, and its reason: loaded or not under a memory budget, say).
   */
  index?: () => Promise<{ name: string; version?: string; state?: string; reason?: string }[]>;
  /**
   * Promotes a version held by a gated rollout (`POST /v2/repository/models/{name}/versions/{v}/promote`,
   * or gRPC RepositoryModelLoad with the parameters `rollout: "promote"` and `version`); without
   * it, those answer 501. `@mlserve/repository` provides one.
   */
  promote?: (name: string, version: string) => Promise<void>;
  /**
   * Rejects a version in a gated rollout (`POST /v2/repository/models/{name}/versions/{v}/reject`
   * with an optional JSON body `{ "reason": "..." }`, or gRPC RepositoryModelLoad with the parameters
   * `rollout: "reject"`, `version` and optionally `reason`); without it, those answer 501.
   */
  reject?: (name: string, version: string, reason?: string) => Promise<void>;
}

/**
 * Whether a presented credential equals the expected one, in time that does not depend on where
 * they differ: both are hashed with SHA-256 (equal lengths, so the length leaks nothing either) and
 * the digests compared with `timingSafeEqual`. `!==` would let a client find a token byte by byte.
 *
 * @example
 * ```ts
 * import { sameSecret } from '@mlserve/protocol/server';
 * sameSecret(request.headers.authorization ?? '', `Bearer ${token}`); // true or false, constant time
 * ```
 */
export function sameSecret(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * The management token check both transports share: with a token configured, the `authorization`
 * value must be `Bearer <token>` (compared in constant time, {@link sameSecret}), else
 * UNAUTHENTICATED (HTTP 401, gRPC UNAUTHENTICATED). Without a token, anything passes.
 *
 * @example
 * ```ts
 * import { checkBearer } from '@mlserve/protocol/server';
 * checkBearer(management.token, req.headers.authorization); // throws UNAUTHENTICATED when wrong
 * ```
 */
export function checkBearer(token: string | undefined, authorization: string | undefined): void {
  if (!token) return;
  if (!sameSecret(authorization ?? '', `Bearer ${token}`))
    throw unauthenticated('the repository API needs a valid bearer token');
}
