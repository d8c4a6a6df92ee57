import { describe, expect, it } from 'vitest';
import { cleanOrtMessage } from '../src/errors.js';

describe('cleanOrtMessage', () => {
  it('drops build paths, C++ signatures and failed conditions (onnxruntime-node)', () => {
    const raw =
      "Non-zero status code returned while running Add node. Name:'' Status Message: /onnxruntime_src/onnxruntime/core/providers/cpu/math/element_wise_ops.h:563 void onnxruntime::BroadcastIterator::Init(ptrdiff_t, ptrdiff_t) axis == 1 || axis == largest was false. Attempting to broadcast an axis by a dimension other than 1. 2 by 3\n";
    expect(cleanOrtMessage(raw)).toBe(
      "Non-zero status code returned while running Add node. Name:'' Attempting to broadcast an axis by a dimension other than 1. 2 by 3",
    );
  });

  it('drops the OrtRun prefix and error codes (onnxruntime-web)', () => {
    const raw =
      'failed to call OrtRun(). ERROR_CODE: 1, ERROR_MESSAGE: /mnt/azure_nvme_temp/_work/1/s/onnxruntime/core/providers/cpu/math/element_wise_ops.h:563 void onnxruntime::BroadcastIterator::Init(ptrdiff_t, ptrdiff_t) axis == 1 || axis == largest was false. Attempting to broadcast an axis by a dimension other than 1. 2 by 3\n';
    expect(cleanOrtMessage(raw)).toBe('Attempting to broadcast an axis by a dimension other than 1. 2 by 3');
  });

  it('keeps the reason of a WebGPU adapter failure', () => {
    const raw =
      '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters\n';
    expect(cleanOrtMessage(raw)).toBe('Failed to get a WebGPU adapter: No supported adapters');
  });

  it('leaves a plain message alone', () => {
    expect(
      cleanOrtMessage('Unexpected input data type. Actual: (tensor(double)) , expected: (tensor(float))'),
    ).toBe('Unexpected input data type. Actual: (tensor(double)) , expected: (tensor(float))');
  });
});
