"""Control flow whose bodies hold EIE nodes (``If``, ``Loop``, ``Scan``), run with ONNX's semantics.

Each body is a partitioned plan of its own (:class:`~eie_runtime.onnx.session.InferenceSession`'s ``_Plan``)
that reads the enclosing graph's values.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..errors import EIEInputError
from .inline import TRACE


def _no_shape(t):
    """The element type only: an If's branches may give an output different shapes, a Loop stacks its scan outputs."""
    if t.WhichOneof("value") == "tensor_type":
        return helper.make_tensor_type_proto(t.tensor_type.elem_type, None)
    return t


class ControlStep:
    """An If, Loop or Scan node whose bodies hold EIE nodes."""

    def __init__(self, node, plan_args, types, where):
        from .plan import _Plan  # the plans of the bodies (plan imports this module)

        self.node, self.where = node, where
        a = {x.name: x for x in node.attribute}
        self.op = node.op_type
        self.plans = {}
        for key in ("then_branch", "else_branch", "body"):
            if key in a:
                self.plans[key] = _Plan(a[key].g, types, *plan_args, where=f"{where} {key}")
        self.attrs = {k: helper.get_attribute_value(v) for k, v in a.items() if k not in self.plans}
        for o, vi in zip(node.output, self._out_types()):
            if o:
                types[o] = _no_shape(vi)

    def _out_types(self):
        if self.op == "If":
            return [self.plans["then_branch"].out_type(i) for i in range(len(self.node.output))]
        body = self.plans["body"]
        if self.op == "Loop":
            n_carried = len(self.node.input) - 2
            carried = [body.out_type(1 + i) for i in range(n_carried)]
            scans = [body.out_type(1 + n_carried + i) for i in range(len(self.node.output) - n_carried)]
            return carried + scans
        n_state = len(self.node.input) - self.attrs.get("num_scan_inputs", 0)
        return [body.out_type(i) for i in range(len(self.node.output))] if n_state >= 0 else []

    def run(self, env, mode):
        fn = {"If": self._if, "Loop": self._loop, "Scan": self._scan}[self.op]
        outs = fn(env, mode)
        for name, val in zip(self.node.output, outs):
            if name:
                env[name] = val

    def _if(self, env, mode):
        cond = np.asarray(env[self.node.input[0]])
        if cond.size != 1:
            raise EIEInputError(f"{self.where}: the condition must hold one value, got shape {cond.shape}")
        taken = bool(cond.reshape(-1)[0])
        trace = env.get(TRACE)
        if trace is not None:  # the outcomes a specialised plan inlines (eie_runtime.onnx.inline)
            trace[id(self.node)] = taken
        return self.plans["then_branch" if taken else "else_branch"].run(env, {}, mode)

    def _loop(self, env, mode):
        ins = list(self.node.input)
        m = np.asarray(env[ins[0]]).reshape(-1)[0] if ins[0] else None
        cond = bool(np.asarray(env[ins[1]]).reshape(-1)[0]) if len(ins) > 1 and ins[1] else True
        carried = [env[t] for t in ins[2:]]
        body = self.plans["body"]
        names = [i.name for i in body.graph.input]
        n_scan = len(body.graph.output) - 1 - len(carried)
        scans = [[] for _ in range(n_scan)]
        i = 0
        while (m is None or i < m) and cond:
            feeds = {names[0]: np.asarray(i, np.int64), names[1]: np.asarray(cond, np.bool_)}
            feeds.update(zip(names[2:], carried))
            outs = body.run(env, feeds, mode)
            cond = bool(np.asarray(outs[0]).reshape(-1)[0])
            carried = outs[1:1 + len(carried)]
            for s, v in zip(scans, outs[1 + len(carried):]):
                s.append(v)
            i += 1
        stacked = []
        for k, s in enumerate(scans):
            if s:
                stacked.append(np.stack(s))
            else:
                raise EIEInputError(f"{self.where}: the loop ran no iteration, so scan output {k} has no shape")
        return list(carried) + stacked

    def _scan(self, env, mode):
        a, ins = self.attrs, list(self.node.input)
        n_scan = int(a["num_scan_inputs"])
        n_state = len(ins) - n_scan
        body = self.plans["body"]
        names = [i.name for i in body.graph.input]
        state = [env[t] for t in ins[:n_state]]
        in_axes = list(a.get("scan_input_axes", [0] * n_scan))
        in_dirs = list(a.get("scan_input_directions", [0] * n_scan))
        xs = [np.moveaxis(np.asarray(env[t]), ax, 0) for t, ax in zip(ins[n_state:], in_axes)]
        xs = [x[::-1] if d else x for x, d in zip(xs, in_dirs)]
        steps = xs[0].shape[0] if xs else 0
        if any(x.shape[0] != steps for x in xs):
            raise EIEInputError(f"{self.where}: scan inputs disagree on the sequence length")
        n_out = len(body.graph.output) - n_state
        ys = [[] for _ in range(n_out)]
        for t in range(steps):
            feeds = dict(zip(names, state + [x[t] for x in xs]))
            outs = body.run(env, feeds, mode)
            state = outs[:n_state]
            for y, v in zip(ys, outs[n_state:]):
                y.append(v)
        out_axes = list(a.get("scan_output_axes", [0] * n_out))
        out_dirs = list(a.get("scan_output_directions", [0] * n_out))
        res = []
        for y, ax, d in zip(ys, out_axes, out_dirs):
            y = np.stack(y[::-1] if d else y)
            res.append(np.moveaxis(y, 0, ax))
        return list(state) + res
