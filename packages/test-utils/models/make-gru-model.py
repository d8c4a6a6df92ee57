#!/usr/bin/python3
"""Makes gru-cell.onnx: one step of a small recurrent network whose hidden state the server carries
between the requests of a sequence (@mlserve/core's sequences() middleware).

  x [batch, 4] float32, h [batch, 8] float32 -> y [batch, 2] float32, h_next [batch, 8] float32
  h_next = GRUCell(x, h); y = Linear(h_next)

Random weights (torch seed 0): the model exists to check that the state goes round, not to predict.
Run from the repository root: /usr/bin/python3 packages/test-utils/models/make-gru-model.py
(Debian python3-torch and python3-onnx).
"""
import torch

torch.manual_seed(0)


class Step(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = torch.nn.GRUCell(4, 8)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x, h):
        h_next = self.cell(x, h)
        return self.head(h_next), h_next


model = Step().eval()
x = torch.zeros(1, 4)
h = torch.zeros(1, 8)
torch.onnx.export(
    model, (x, h), 'packages/test-utils/models/gru-cell.onnx',
    input_names=['x', 'h'], output_names=['y', 'h_next'],
    dynamic_axes={'x': {0: 'batch'}, 'h': {0: 'batch'}, 'y': {0: 'batch'}, 'h_next': {0: 'batch'}},
    opset_version=13,
)
