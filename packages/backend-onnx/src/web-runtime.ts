import { cleanOrtMessage } from './errors.js';
import type { OrtModule } from './ort.js';
import type { OnnxModelSource, OrtRuntime } from './session-model.js';

const LABELS: Record<string, string> = {
  wasm: 'WebAssembly',
  cpu: 'CPU',
  webgpu: 'WebGPU',
  webnn: 'WebNN',
  webgl: 'WebGL',
  cuda: 'CUDA',
  tensorrt: 'TensorRT',
  dml: 'DirectML',
  coreml: 'CoreML',
};

function label(name: string): string {
  return LABELS[name] ?? name;
}

function nav(): Record<string, unknown> | undefined {
  return (globalThis as unknown as { navigator?: Record<string, unknown> }).navigator;
}

/** The source as onnxruntime-web takes it: a URL string (a path in Node) or bytes. No Node module is imported. */
async function resolveSource(source: OnnxModelSource): Promise<string | Uint8Array> {
  if (source instanceof Uint8Array) return source;
  if (source instanceof ArrayBuffer) return new Uint8Array(source);
  if (source instanceof URL)
    return source.protocol === 'file:' ? decodeURIComponent(source.pathname) : source.href;
  if (typeof source === 'string')
    return source.startsWith('file://') ? decodeURIComponent(new URL(source).pathname) : source;
  throw new TypeError('source must be a URL, a path (in Node), a Uint8Array or an ArrayBuffer');
}

/** onnxruntime-web (any of its builds) as an {@link OrtRuntime}. */
export function webRuntime(
  ort: OrtModule & { env: { versions: Record<string, string | undefined> } },
): OrtRuntime {
  return {
    name: 'onnxruntime-web',
    ort,
    version: ort.env.versions.web,
    cpu: 'wasm',
    blockingRun: false,
    cpuNames: ['wasm', 'cpu'],
    resolveSource,
    checkProvider(name) {
      if (name === 'wasm' || name === 'cpu') return undefined;
      if (name === 'webgpu' && !nav()?.gpu) {
        return 'WebGPU execution provider is not available: this runtime has no navigator.gpu (use a browser with WebGPU, or the wasm provider)';
      }
      if (name === 'webnn' && !nav()?.ml) {
        return 'WebNN execution provider is not available: this runtime has no navigator.ml (use a browser with WebNN, or the wasm provider)';
      }
      if (!['webgpu', 'webnn'].includes(name)) {
        return `${label(name)} execution provider is not available in onnxruntime-web (the build this entry imports has wasm, webgpu and webnn); for it use @mlserve/backend-onnx on onnxruntime-node`;
      }
      return undefined;
    },
    blame(providers, err) {
      const msg = (err instanceof Error ? err.message : String(err)).toLowerCase();
      for (const p of providers)
        if (msg.includes(`[${p.toLowerCase()}]`) || msg.includes(p.toLowerCase())) return p;
      return undefined;
    },
    explain(name, err) {
      return `${label(name)} execution provider is not available: ${cleanOrtMessage(err instanceof Error ? err.message : String(err))}`;
    },
  };
}
