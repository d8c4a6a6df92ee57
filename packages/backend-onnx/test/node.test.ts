import { loadOnnxModel } from '@mlserve/backend-onnx';
import { sharedSuite } from './shared.js';

sharedSuite('node', loadOnnxModel);
