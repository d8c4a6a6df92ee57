#!/usr/bin/python3
"""Makes the rollout test models from mnist-cnn.onnx (Debian python3-onnx + numpy, no torch):

- mnist-noisy.onnx: the same network with Gaussian noise added to every weight (seeded), so it
  agrees with mnist-cnn.onnx on clearly fewer than 90% of the held-out digits.
- mnist-slow.onnx: the same network and weights, plus a branch of chained 784x784 MatMul+Tanh (one constant matrix made at load time) on
  the image whose sum is multiplied by 0 and added to the logits: the same answers, several times
  the work.

Run from the repository root: /usr/bin/python3 packages/test-utils/models/make-rollout-models.py
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

DIR = 'packages/test-utils/models/'
NOISE = 0.8  # times each weight tensor's standard deviation
CHAIN = 24    # 784x784 MatMuls in the slow branch

base = onnx.load(DIR + 'mnist-cnn.onnx')

noisy = onnx.load(DIR + 'mnist-cnn.onnx')
rng = np.random.default_rng(20)
for t in noisy.graph.initializer:
    w = numpy_helper.to_array(t)
    if w.ndim < 2:
        continue
    w2 = (w + rng.normal(0, NOISE * w.std(), w.shape)).astype(np.float32)
    t.CopyFrom(numpy_helper.from_array(w2, t.name))
noisy.doc_string = f'mnist-cnn.onnx with N(0, {NOISE} * std) noise on every weight matrix (seed 20)'
onnx.checker.check_model(noisy)
onnx.save(noisy, DIR + 'mnist-noisy.onnx')

slow = onnx.load(DIR + 'mnist-cnn.onnx')
g = slow.graph
logits = g.output[0].name
# Rename the final Gemm's output so the zeroed branch can be added to it.
for n in g.node:
    for i, o in enumerate(n.output):
        if o == logits:
            n.output[i] = 'logits_raw'
g.initializer.append(numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), 'slow_shape'))
g.initializer.append(numpy_helper.from_array(np.array([0.0], dtype=np.float32), 'slow_zero'))
g.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), 'slow_axes'))
prev = 'slow_flat'
g.node.append(helper.make_node('Reshape', ['image', 'slow_shape'], [prev]))
# One 784x784 matrix made at load time (ConstantOfShape), so the file stays small.
g.initializer.append(numpy_helper.from_array(np.array([784, 784], dtype=np.int64), 'slow_wshape'))
g.node.append(helper.make_node('ConstantOfShape', ['slow_wshape'], ['slow_w'],
                               value=numpy_helper.from_array(np.array([1 / 784], dtype=np.float32))))
for k in range(CHAIN):
    g.node.append(helper.make_node('MatMul', [prev, 'slow_w'], [f'slow_mm{k}']))
    g.node.append(helper.make_node('Tanh', [f'slow_mm{k}'], [f'slow_t{k}']))
    prev = f'slow_t{k}'
g.node.append(helper.make_node('ReduceSum', [prev, 'slow_axes'], ['slow_sum'], keepdims=1))
g.node.append(helper.make_node('Mul', ['slow_sum', 'slow_zero'], ['slow_zeroed']))
g.node.append(helper.make_node('Add', ['logits_raw', 'slow_zeroed'], [logits]))
slow.doc_string = f'mnist-cnn.onnx plus {CHAIN} chained 784x784 MatMul+Tanh on the image, times 0: same answers, more work'
onnx.checker.check_model(slow)
onnx.save(slow, DIR + 'mnist-slow.onnx')
print('wrote mnist-noisy.onnx and mnist-slow.onnx')
