import { loadOnnxModel } from '@mlserve/backend-onnx/web';
import * as ort from 'onnxruntime-web';
import { sharedSuite } from './shared.js';

ort.env.wasm.numThreads = 1;

sharedSuite('web', loadOnnxModel);
