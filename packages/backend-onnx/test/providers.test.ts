import { loadOnnxModel } from '@mlserve/backend-onnx';
import { loadOnnxModel as loadWeb } from '@mlserve/backend-onnx/web';
import { tensor } from '@mlserve/core';
import { modelPath } from '@mlserve/test-utils';
import * as ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { rejectsWith } from './helpers.js';

ortWeb.env.wasm.numThreads = 1;

const features = () => ({ features: tensor('float32', new Float32Array(16), [1, 16]) });

afterEach(() => {
  vi.restoreAllMocks();
});

// No GPU and no CUDA provider library exist on the machines these tests run on: they exercise the
// pass-through of provider options, the UNAVAILABLE errors and the CPU fallback, not a GPU run.
describe('onnxruntime-node execution providers', () => {
  it('passes provider names and config objects through to onnxruntime as given', async () => {
    const create = vi.spyOn(ort.InferenceSession, 'create');
    const providers = [{ name: 'cpu', useArena: false }] as const;
    const model = await loadOnnxModel(modelPath('mlp.onnx'), {
      executionProviders: providers,
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'basic',
      spinning: false,
      freeDimensionOverrides: { batch: 4 },
      sessionOptions: { enableCpuMemArena: false, extra: { 'session.use_env_allocators': '0' } },
    });
    expect(create).toHaveBeenCalledTimes(1);
    const options = create.mock.calls[0]![1] as Record<string, unknown>;
    expect(options.executionProviders).toEqual(providers);
    expect(options).toMatchObject({
      intraOpNumThreads: 1,
      interOpNumThreads: 1,
      graphOptimizationLevel: 'basic',
      enableCpuMemArena: false,
      freeDimensionOverrides: { batch: 4 },
      extra: {
        'session.use_env_allocators': '0',
        'session.intra_op.allow_spinning': '0',
        'session.inter_op.allow_spinning': '0',
      },
    });
    const meta = model.metadata();
    expect(meta.backend).toBe('onnxruntime-node/cpu');
    expect(meta.extra).toMatchObject({
      executionProvider: 'cpu',
      requestedExecutionProviders: ['cpu'],
      runtime: 'onnxruntime-node',
    });
    // batch fixed to 4 by the override: warmup builds its request with it.
    await model.warmup!();
    await model.dispose();
  });

  it('fails with UNAVAILABLE naming what CUDA is missing', async () => {
    const err = await rejectsWith(
      loadOnnxModel(modelPath('mlp.onnx'), { executionProviders: ['cuda', 'cpu'] }),
      'UNAVAILABLE',
    );
    expect(err.message).toMatch(
      /^CUDA execution provider is not available: install the CUDA build of onnxruntime-node/,
    );
    expect(err.message).toContain('--onnxruntime-node-install=cuda12');
    expect(err.message).toMatch(/libonnxruntime_providers_cuda\.so.* missing\)$/);
    expect(err.status).toBe(503);
    expect(err.details).toEqual({ executionProviders: ['cuda', 'cpu'] });
  });

  it('names TensorRT, and providers this platform never has', async () => {
    await rejectsWith(
      loadOnnxModel(modelPath('mlp.onnx'), { executionProviders: [{ name: 'tensorrt' }, 'cuda'] }),
      'UNAVAILABLE',
      /^TensorRT execution provider is not available: .*TensorRT 10.*libonnxruntime_providers_tensorrt\.so/,
    );
    await rejectsWith(
      loadOnnxModel(modelPath('mlp.onnx'), { executionProviders: ['dml'] }),
      'UNAVAILABLE',
      /^DirectML execution provider is not available in onnxruntime-node on linux\/x64 \(it exists on Windows only\)/,
    );
    await rejectsWith(
      loadOnnxModel(modelPath('mlp.onnx'), { executionProviders: ['coreml'] }),
      'UNAVAILABLE',
      /macOS only/,
    );
  });

  it('reports a provider that onnxruntime fails to start (WebGPU without an adapter) with its reason', async () => {
    const err = await rejectsWith(
      loadOnnxModel(modelPath('mlp.onnx'), { executionProviders: ['webgpu'] }),
      'UNAVAILABLE',
    );
    expect(err.message).toMatch(/^WebGPU execution provider is not available: /);
    expect(err.message).not.toMatch(/onnxruntime_src|\.cc:\d+/);
    expect(err.cause).toBeInstanceOf(Error);
  });

  it('falls back to CPU when asked, and says so in metadata', async () => {
    const model = await loadOnnxModel(modelPath('mlp.onnx'), {
      executionProviders: ['cuda'],
      fallbackToCpu: true,
      intraOpNumThreads: 1,
    });
    const meta = model.metadata();
    expect(meta.backend).toBe('onnxruntime-node/cpu');
    expect(meta.extra?.executionProvider).toBe('cpu');
    expect(meta.extra?.requestedExecutionProviders).toEqual(['cuda']);
    expect(meta.extra?.fallbackReason).toMatch(/^CUDA execution provider is not available/);
    const { scores } = await model.infer(features());
    expect(scores!.dims).toEqual([1, 2]);
    await model.dispose();
  });

  it('drops each provider that cannot load in turn, landing on CPU, and takes providers from sessionOptions too', async () => {
    const model = await loadOnnxModel(modelPath('mlp.onnx'), {
      sessionOptions: { executionProviders: ['dml', 'webgpu', 'cuda', 'cpu'] },
      fallbackToCpu: true,
      intraOpNumThreads: 1,
    });
    const extra = model.metadata().extra!;
    expect(extra.executionProvider).toBe('cpu');
    expect(extra.requestedExecutionProviders).toEqual(['dml', 'webgpu', 'cuda', 'cpu']);
    const reason = extra.fallbackReason as string;
    expect(reason).toMatch(/^DirectML execution provider is not available/);
    expect(reason).toContain('; CUDA execution provider is not available');
    expect(reason).toContain('; WebGPU execution provider is not available');
    expect((await model.infer(features())).scores!.dims).toEqual([1, 2]);
    await model.dispose();
  });

  it('rejects a request whose deadline passes while onnxruntime computes, dropping the result', async () => {
    const model = await loadOnnxModel(modelPath('mobilenetv2.onnx'), { intraOpNumThreads: 1 });
    const input = tensor('float32', new Float32Array(2 * 3 * 224 * 224).fill(0.5), [2, 3, 224, 224]);
    const t0 = performance.now();
    await model.infer({ input });
    const once = performance.now() - t0;
    const deadline = Date.now() + Math.max(1, Math.floor(once / 10));
    await rejectsWith(model.infer({ input }, { deadline }), 'DEADLINE_EXCEEDED');
    const stats = model.stats!().onnx as { runs: number; expired: number };
    expect(stats).toMatchObject({ runs: 1, expired: 1 });
    await model.dispose();
  });
});

describe('onnxruntime-web execution providers', () => {
  it('WebGPU without navigator.gpu is UNAVAILABLE, or falls back to wasm when asked', async () => {
    await rejectsWith(
      loadWeb(modelPath('mlp.onnx'), { executionProviders: ['webgpu', 'wasm'] }),
      'UNAVAILABLE',
      /^WebGPU execution provider is not available: this runtime has no navigator.gpu/,
    );
    const model = await loadWeb(modelPath('mlp.onnx'), {
      executionProviders: ['webgpu'],
      fallbackToCpu: true,
    });
    expect(model.metadata().backend).toBe('onnxruntime-web/wasm');
    expect(model.metadata().extra?.fallbackReason).toMatch(/navigator.gpu/);
    const { scores } = await model.infer(features());
    expect(scores!.dims).toEqual([1, 2]);
    await model.dispose();
  });

  it('a provider only onnxruntime-node has points there', async () => {
    await rejectsWith(
      loadWeb(modelPath('mlp.onnx'), { executionProviders: ['cuda'] }),
      'UNAVAILABLE',
      /CUDA execution provider is not available in onnxruntime-web .*use @mlserve\/backend-onnx on onnxruntime-node/,
    );
  });
});
