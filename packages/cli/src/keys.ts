import { appendFile, open } from 'node:fs/promises';
import { createKey } from '@mlserve/http';
import type { KeysCreateOptions } from './args.js';

/**
 * `mlserve keys create`: makes a random key, prints it once, and prints (or appends to a keys file,
 * created with mode 0600) the line `--auth-keys` reads: its SHA-256 digest, name, scopes and rate
 * limit. The key itself is never written anywhere.
 *
 * @example
 * ```ts
 * import { createKeyCommand } from '@mlserve/cli';
 * const { key, line } = await createKeyCommand({ name: 'ci', scopes: ['infer'] });
 * ```
 */
export async function createKeyCommand(options: KeysCreateOptions): Promise<{ key: string; line: string }> {
  const { key, stored } = createKey({
    name: options.name,
    scopes: options.scopes,
    ...(options.perSecond !== undefined && {
      rateLimit: {
        perSecond: options.perSecond,
        ...(options.burst !== undefined && { burst: options.burst }),
      },
    }),
  });
  const line = JSON.stringify(stored);
  if (options.append !== undefined) {
    // Create it private if new; an existing file keeps its mode.
    const file = await open(options.append, 'a', 0o600);
    await file.close();
    await appendFile(options.append, `${line}\n`);
  }
  return { key, line };
}
