import { describe, expect, it } from 'vitest';
import { isServeError } from '../src/errors.js';
import { importOptional, isModuleNotFound } from '../src/optional.js';

async function rejection(p: Promise<unknown>) {
  try {
    await p;
  } catch (err) {
    return err as Error & { code?: string; details?: Record<string, unknown> };
  }
  throw new Error('expected a rejection');
}

describe('importOptional', () => {
  it('imports an installed package', async () => {
    const mod = await importOptional<{ ServeError?: unknown }>('@mlserve/core');
    expect(typeof mod.ServeError).toBe('function');
  });

  it('rejects UNAVAILABLE with the install command when the package is missing (a real failed import)', async () => {
    const err = await rejection(importOptional('mlserve-surely-not-installed-pkg'));
    expect(isServeError(err)).toBe(true);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('mlserve-surely-not-installed-pkg is not installed');
    expect(err.message).toContain('npm install mlserve-surely-not-installed-pkg');
    expect(err.details).toEqual({
      package: 'mlserve-surely-not-installed-pkg',
      install: 'npm install mlserve-surely-not-installed-pkg',
    });
  });

  it('names ONNXRUNTIME_NODE_INSTALL=skip for onnxruntime-node', async () => {
    const missing = Object.assign(
      new Error("Cannot find package 'onnxruntime-node' imported from /app/x.js"),
      {
        code: 'ERR_MODULE_NOT_FOUND',
      },
    );
    const err = await rejection(
      importOptional('onnxruntime-node', {
        neededBy: 'loadOnnxModel',
        loader: () => Promise.reject(missing),
      }),
    );
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toMatch(
      /^loadOnnxModel needs onnxruntime-node, which is not installed: run `npm install onnxruntime-node`/,
    );
    expect(err.message).toContain('ONNXRUNTIME_NODE_INSTALL=skip');
    expect(err.cause).toBe(missing);
  });

  it('tells a failure inside the package from a missing package', async () => {
    const inner = Object.assign(
      new Error("Cannot find module 'libfoo' imported from /x/node_modules/pkg/index.js"),
      {
        code: 'ERR_MODULE_NOT_FOUND',
      },
    );
    expect(isModuleNotFound(inner, 'pkg')).toBe(false);
    const err = await rejection(importOptional('pkg', { loader: () => Promise.reject(inner) }));
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toContain('pkg is installed but could not be loaded');
    const boom = await rejection(
      importOptional('pkg', { loader: () => Promise.reject(new Error('boom\nstack')) }),
    );
    expect(boom.message).toBe('pkg is installed but could not be loaded: boom');
  });
});
