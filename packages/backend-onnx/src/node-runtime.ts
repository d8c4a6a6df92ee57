import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importOptional, notFound, ServeError, unavailable } from '@mlserve/core';
import type * as OrtNode from 'onnxruntime-node';
import { cleanOrtMessage } from './errors.js';
import type { OrtModule } from './ort.js';
import type { OnnxModelSource, OrtRuntime } from './session-model.js';

const LABELS: Record<string, string> = {
  cuda: 'CUDA',
  tensorrt: 'TensorRT',
  webgpu: 'WebGPU',
  dml: 'DirectML',
  coreml: 'CoreML',
  cpu: 'CPU',
};

const ONLY_ON: Record<string, string> = { dml: 'Windows', coreml: 'macOS' };

const INSTALL_CUDA =
  'install the CUDA build of onnxruntime-node (npm install onnxruntime-node --onnxruntime-node-install=cuda12; ' +
  'it needs an NVIDIA GPU with CUDA 12 and cuDNN 9 libraries on the library path)';

/** The provider libraries each GPU provider needs next to onnxruntime-node's binding. */
function providerLibraries(name: string): string[] {
  const win = process.platform === 'win32';
  const lib = (base: string) => (win ? `${base}.dll` : `lib${base}.so`);
  if (name === 'cuda') return [lib('onnxruntime_providers_shared'), lib('onnxruntime_providers_cuda')];
  if (name === 'tensorrt') {
    return [
      lib('onnxruntime_providers_shared'),
      lib('onnxruntime_providers_cuda'),
      lib('onnxruntime_providers_tensorrt'),
    ];
  }
  return [];
}

let bindingDirCache: string | null | undefined;

/** onnxruntime-node's binary folder (`bin/napi-v6/<platform>/<arch>`), or null when it cannot be found. */
function bindingDir(): string | null {
  if (bindingDirCache !== undefined) return bindingDirCache;
  try {
    const entry = createRequire(import.meta.url).resolve('onnxruntime-node');
    const root = dirname(dirname(entry));
    const dir = join(root, 'bin', 'napi-v6', process.platform, process.arch);
    bindingDirCache = existsSync(dir) ? dir : null;
  } catch {
    bindingDirCache = null;
  }
  return bindingDirCache;
}

function missingLibraries(name: string): string[] {
  const dir = bindingDir();
  if (!dir) return [];
  return providerLibraries(name).filter((f) => !existsSync(join(dir, f)));
}

function label(name: string): string {
  return LABELS[name] ?? name;
}

function supportedBackends(ort: typeof OrtNode): string[] {
  const list = (ort as { listSupportedBackends?: () => { name: string }[] }).listSupportedBackends?.();
  return list ? list.map((b) => b.name) : ['cpu'];
}

async function resolveSource(source: OnnxModelSource): Promise<string | Uint8Array> {
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  let url: URL | undefined;
  if (source instanceof URL) url = source;
  else if (typeof source === 'string' && /^(?:file|https?):\/\//i.test(source)) url = new URL(source);
  if (url && url.protocol !== 'file:') {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new TypeError(`unsupported model URL protocol ${url.protocol}`);
    }
    let res: Response;
    try {
      res = await fetch(url);
    } catch (err) {
      throw unavailable(`could not fetch the model from ${url.href}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (res.status === 404) throw notFound(`no model at ${url.href} (HTTP 404)`);
    if (!res.ok) throw unavailable(`could not fetch the model from ${url.href}: HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  }
  if (typeof source !== 'string' && !url) {
    throw new TypeError('source must be a file path, a URL, a Uint8Array or an ArrayBuffer');
  }
  const path = url ? fileURLToPath(url) : (source as string);
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new ServeError('INVALID_ARGUMENT', `model path ${path} is not a file`);
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT')
      throw notFound(`model file not found: ${path}`, { cause: err });
    throw err;
  }
  return path;
}

// Kept in a variable so bundlers leave this optional peer to run-time resolution.
const ORT_NODE = 'onnxruntime-node';
let runtime: Promise<OrtRuntime> | undefined;

/**
 * onnxruntime-node as an {@link OrtRuntime}, imported on first use. When onnxruntime-node is not
 * installed, rejects with UNAVAILABLE naming `npm install onnxruntime-node` and the
 * `ONNXRUNTIME_NODE_INSTALL=skip` variable (instead of a raw ERR_MODULE_NOT_FOUND at import time).
 */
export function nodeRuntime(): Promise<OrtRuntime> {
  if (runtime) return runtime;
  const p = importOptional<typeof OrtNode & { default?: typeof OrtNode }>(ORT_NODE, {
    neededBy: 'loadOnnxModel',
  }).then(
    (mod) => makeRuntime(mod.default?.InferenceSession ? mod.default : mod),
    (err: unknown) => {
      runtime = undefined;
      throw err;
    },
  );
  runtime = p;
  return p;
}

function makeRuntime(ort: typeof OrtNode): OrtRuntime {
  return {
    name: 'onnxruntime-node',
    ort: ort as unknown as OrtModule,
    version: (ort.env.versions as Record<string, string | undefined>).node,
    cpu: 'cpu',
    blockingRun: true,
    cpuNames: ['cpu'],
    resolveSource,
    checkProvider(name) {
      if (name === 'cpu') return undefined;
      if (!supportedBackends(ort).includes(name)) {
        const where = ONLY_ON[name] ? ` (it exists on ${ONLY_ON[name]} only)` : '';
        return (
          `${label(name)} execution provider is not available in onnxruntime-node on ${process.platform}/${process.arch}${where}; ` +
          `this build has: ${supportedBackends(ort).join(', ')}`
        );
      }
      const missing = missingLibraries(name);
      if (missing.length > 0) return explainMissing(name, missing);
      return undefined;
    },
    blame(providers, err) {
      const msg = (err instanceof Error ? err.message : String(err)).toLowerCase();
      for (const p of providers) if (msg.includes(p.toLowerCase())) return p;
      if (providers.length === 1 && /shared library|execution provider|backend not found|adapter/.test(msg)) {
        return providers[0];
      }
      return undefined;
    },
    explain(name, err) {
      const missing = missingLibraries(name);
      if (missing.length > 0) return explainMissing(name, missing);
      const why = cleanOrtMessage(err instanceof Error ? err.message : String(err));
      if (name === 'cuda' || name === 'tensorrt') {
        return `${label(name)} execution provider is not available: its libraries are installed but did not load (${why}); check the CUDA 12 / cuDNN 9${name === 'tensorrt' ? ' / TensorRT 10' : ''} libraries are on the library path and a GPU is visible`;
      }
      return `${label(name)} execution provider is not available: ${why}`;
    },
  };
}

function explainMissing(name: string, missing: string[]): string {
  const extra = name === 'tensorrt' ? ' and TensorRT 10' : '';
  return `${label(name)} execution provider is not available: ${INSTALL_CUDA}${extra} (${missing.join(', ')} missing)`;
}
