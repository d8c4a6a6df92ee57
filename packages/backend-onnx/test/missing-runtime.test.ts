import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { modelPath } from '@mlserve/test-utils';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const DIST = fileURLToPath(new URL('../dist/', import.meta.url));

// A resolve hook that answers onnxruntime-node exactly as Node does when the package is absent.
const HOOK = `
export async function resolve(specifier, context, next) {
  if (specifier === 'onnxruntime-node') {
    throw Object.assign(new Error("Cannot find package 'onnxruntime-node' imported from " + context.parentURL), { code: 'ERR_MODULE_NOT_FOUND' });
  }
  return next(specifier, context);
}`;
const REGISTER = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(HOOK)}`)});`;

async function load(withoutOrt: boolean) {
  const body = `const { loadOnnxModel } = await import(${JSON.stringify(`${DIST}index.js`)});
try { const m = await loadOnnxModel(${JSON.stringify(modelPath('mnist-cnn.onnx'))}); console.log(JSON.stringify({ ok: m.name })); await m.dispose(); }
catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message })); }`;
  const hook = withoutOrt ? ['--import', `data:text/javascript,${encodeURIComponent(REGISTER)}`] : [];
  const { stdout } = await run(process.execPath, [...hook, '--input-type=module', '-e', body]);
  return JSON.parse(stdout.trim().split('\n').pop() ?? '{}');
}

describe('without onnxruntime-node (the built package, in a child process)', () => {
  it('importing @mlserve/backend-onnx still works, and loading says what to install (ESM)', async () => {
    expect(await load(false)).toEqual({ ok: 'mnist-cnn' });
    const r = await load(true);
    expect(r).toMatchObject({ name: 'ServeError', code: 'UNAVAILABLE' });
    expect(r.message).toContain('npm install onnxruntime-node');
    expect(r.message).toContain('ONNXRUNTIME_NODE_INSTALL=skip');
  });
});
