"""FastAPI + PyTorch: the server a Python team would run instead of mlserve.

Usage (what the HTTP scenario runs, Debian's python3-fastapi, python3-uvicorn, python3-torch and
python3-onnx):

    BENCH_MODELS=mnist=/path/mnist-cnn.onnx,mobilenet=/path/mobilenetv2.onnx TORCH_THREADS=1 \
      python3 -m uvicorn fastapi_server:app --host 127.0.0.1 --port 8000 --workers 1

The same weights as the ONNX files the Node servers load: each graph's initializers are read with
the onnx package and its nodes become the same layers in torch (torch.nn.functional), so the torch
module computes what onnxruntime computes (the scenario checks the answers match within 1e-4).
The route is what a FastAPI user writes: a plain `def` endpoint (FastAPI runs it in its thread
pool), the V2 JSON body parsed into a dict, `torch.inference_mode()`, the output as a list.
"""

import os

import onnx
import torch
import torch.nn.functional as F
from fastapi import Body, FastAPI, HTTPException
from onnx import numpy_helper

torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
torch.set_num_interop_threads(1)


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _same_pads(pads, dims):
    """ONNX pads (begin..., end...) as torch's symmetric padding, or None when asymmetric."""
    if not pads:
        return [0] * dims
    begin, end = pads[:dims], pads[dims:]
    return list(begin) if list(begin) == list(end) else None


class OnnxModule(torch.nn.Module):
    """An ONNX graph as a torch module: the initializers as buffers, the nodes as torch ops."""

    def __init__(self, path):
        super().__init__()
        graph = onnx.load(path).graph
        self.consts = {}
        for i, init in enumerate(graph.initializer):
            t = torch.from_numpy(numpy_helper.to_array(init).copy())
            self.register_buffer(f"w{i}", t)
            self.consts[init.name] = f"w{i}"
        inits = set(self.consts)
        self.inputs = [i.name for i in graph.input if i.name not in inits]
        self.outputs = [o.name for o in graph.output]
        self.nodes = [(n.op_type, list(n.input), list(n.output), _attrs(n)) for n in graph.node]

    def _value(self, env, name):
        if name == "":
            return None
        if name in env:
            return env[name]
        return getattr(self, self.consts[name])

    def forward(self, **feeds):
        env = dict(feeds)
        for op, ins, outs, a in self.nodes:
            x = [self._value(env, n) for n in ins]
            env[outs[0]] = self._run(op, x, a)
        return {n: env[n] for n in self.outputs}

    def _run(self, op, x, a):
        if op == "Conv":
            k = len(x[1].shape) - 2
            pads = _same_pads(a.get("pads"), k)
            inp = x[0]
            if pads is None:
                p = a["pads"]
                inp = F.pad(inp, [v for d in reversed(range(k)) for v in (p[d], p[d + k])])
                pads = [0] * k
            return F.conv2d(
                inp, x[1], x[2] if len(x) > 2 else None,
                stride=a.get("strides", 1), padding=pads,
                dilation=a.get("dilations", 1), groups=a.get("group", 1),
            )
        if op == "Relu":
            return F.relu(x[0])
        if op == "Clip":
            lo = x[1].item() if len(x) > 1 and x[1] is not None else a.get("min")
            hi = x[2].item() if len(x) > 2 and x[2] is not None else a.get("max")
            return torch.clamp(x[0], lo, hi)
        if op == "MaxPool":
            pads = _same_pads(a.get("pads"), 2) or [0, 0]
            return F.max_pool2d(x[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]), pads)
        if op == "AveragePool":
            pads = _same_pads(a.get("pads"), 2) or [0, 0]
            return F.avg_pool2d(x[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]), pads)
        if op == "GlobalAveragePool":
            return torch.mean(x[0], dim=(2, 3), keepdim=True)
        if op == "BatchNormalization":
            return F.batch_norm(x[0], x[3], x[4], x[1], x[2], False, 0.0, a.get("epsilon", 1e-5))
        if op == "Gemm":
            A = x[0].t() if a.get("transA", 0) else x[0]
            B = x[1].t() if a.get("transB", 0) else x[1]
            y = a.get("alpha", 1.0) * (A @ B)
            if len(x) > 2 and x[2] is not None:
                y = y + a.get("beta", 1.0) * x[2]
            return y
        if op == "MatMul":
            return x[0] @ x[1]
        if op == "Add":
            return x[0] + x[1]
        if op == "Mul":
            return x[0] * x[1]
        if op == "Flatten":
            return torch.flatten(x[0], a.get("axis", 1))
        if op == "Reshape":
            shape = [int(v) for v in x[1].tolist()]
            shape = [x[0].shape[i] if v == 0 else v for i, v in enumerate(shape)]
            return x[0].reshape(shape)
        if op == "Shape":
            return torch.tensor(x[0].shape, dtype=torch.int64)
        if op == "Gather":
            return torch.index_select(x[0], a.get("axis", 0), x[1].reshape(-1)).reshape(
                x[0].shape[: a.get("axis", 0)] + x[1].shape + x[0].shape[a.get("axis", 0) + 1:]
            )
        if op == "Unsqueeze":
            axes = a.get("axes") if "axes" in a else x[1].tolist()
            y = x[0]
            for ax in sorted(axes):
                y = y.unsqueeze(ax)
            return y
        if op == "Concat":
            return torch.cat(x, a.get("axis", 0))
        if op == "Softmax":
            return F.softmax(x[0], a.get("axis", -1))
        if op in ("Identity", "Dropout"):
            return x[0]
        if op == "Constant":
            return torch.from_numpy(numpy_helper.to_array(a["value"]).copy())
        raise NotImplementedError(f"ONNX op {op} is not mapped to torch in this benchmark server")


MODELS = {}
for spec in os.environ.get("BENCH_MODELS", "").split(","):
    if spec:
        name, path = spec.split("=", 1)
        module = OnnxModule(path).eval()
        MODELS[name] = module

app = FastAPI()


@app.get("/health")
def health():
    return {"ok": True}


@app.post("/predict/{model}")
def predict(model: str, body: dict = Body(...)):
    module = MODELS.get(model)
    if module is None:
        raise HTTPException(status_code=404, detail=f"no model {model}")
    try:
        first = body["inputs"][0]
        x = torch.tensor(first["data"], dtype=torch.float32).reshape(first["shape"])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        raise HTTPException(status_code=400, detail=f"expected inputs[0].data and shape: {err}")
    with torch.inference_mode():
        out = module(**{module.inputs[0]: x})
    return {
        "model_name": model,
        "outputs": [
            {"name": n, "shape": list(t.shape), "datatype": "FP32", "data": t.reshape(-1).tolist()}
            for n, t in out.items()
        ],
    }
