"""A plan's steps as one generated Python function: the partitioned run without a loop over step objects.

Between two kernels the partitioned run executes Python. After onnxruntime or a large EIE layer has streamed
megabytes through the caches, that Python runs cold: each distinct operation (a dict update, a ``zip``, a
method lookup) first pulls its code and objects back from memory. Measured on torchvision's alexnet at batch
1 (one onnxruntime call, then three EIE layers), the loop over step objects that keep values in a dict spent
about 45 us per run outside the kernels and onnxruntime; the same steps as straight-line code over local
variables spent about 11 us. So each plan becomes one function, generated from its steps:

- graph inputs and values of enclosing scopes are read once into locals; constants are bound as globals;
- an onnxruntime segment is one call to the binding's ``run`` with its feed dict written out, its outputs
  unpacked into locals; the guards of inlined ``If`` s follow as ``if`` statements;
- an EIE node is one call to its kernel; an alias is a local renamed at generation time (no code);
- a control step (an ``If``/``Loop``/``Scan`` whose bodies hold EIE nodes) gets the values its bodies read
  written into the run's value dict, which the bodies' own functions read.

With ``counters`` given, the function also adds the nanoseconds spent inside onnxruntime's runs and the EIE
kernels, read from ``clock``, to that list (:meth:`~eie_runtime.onnx.session.InferenceSession.profile`): two
clock reads per call, nothing else changes.
"""

from __future__ import annotations

from .inline import AliasStep, GuardStep, Miss
from .walk import node_reads

#: profile counters: [onnxruntime ns, onnxruntime calls, EIE kernel ns, EIE kernel calls]
ORT_NS, ORT_CALLS, EIE_NS, EIE_CALLS = range(4)


class _Writer:
    def __init__(self, plan):
        self.plan = plan
        self.lines: list[str] = []
        self.glob: dict = {"Miss": Miss}
        self.local: dict[str, str] = {}  # ONNX value name -> local variable
        self.feed_names = set(plan.feed_names)

    def bind(self, prefix: str, obj) -> str:
        name = f"{prefix}{len(self.glob)}"
        self.glob[name] = obj
        return name

    def new(self, value: str) -> str:
        var = f"v{len(self.local)}"
        self.local[value] = var
        return var

    def ref(self, value: str) -> str:
        """An expression for ``value``; its first read from the feeds or the enclosing scope is emitted here."""
        if not value:
            return "None"
        if value in self.local:
            return self.local[value]
        if value in self.plan.const_env:
            var = self.bind("c", self.plan.const_env[value])
            self.local[value] = var
            return var
        src = "feeds" if value in self.feed_names else "env"
        var = self.new(value)
        # an enclosing value absent at run time reads as None (an EIE node then names its missing input)
        self.lines.append(f"{var} = {src}[{value!r}]" if src == "feeds" else f"{var} = env.get({value!r})")
        return var

    def timed(self, call: str, ns: int, calls: int, counters) -> list[str]:
        if counters is None:
            return [f"_o = {call}"]
        return ["_t = _ns()", f"_o = {call}", f"_clk[{ns}] += _ns() - _t", f"_clk[{calls}] += 1"]

    def outputs(self, names):
        for i, name in enumerate(names):
            if name:
                self.lines.append(f"{self.new(name)} = _o[{i}]")

    def guards(self, checks):
        for name, want in checks:
            # one value (an If's condition); anything else raises, which also abandons the plan
            self.lines.append(f"if bool({self.ref(name)}) is not {want!r}: raise Miss({name!r})")


def compile_plan(plan, counters: list | None = None, clock=None):
    """``plan``'s steps as one function ``run(env, feeds, mode) -> [plain outputs]``."""
    from .control import ControlStep
    from .plan import _EIEStep, _Segment

    w = _Writer(plan)
    if counters is not None:
        w.glob.update(_ns=clock, _clk=counters)
    for step in plan.steps:
        if isinstance(step, _Segment):
            feed = ", ".join(f"{n!r}: {w.ref(n)}" for n in step.inputs)
            run, outs = w.bind("r", step._run), w.bind("o", step.outputs)
            w.lines += w.timed(f"{run}({outs}, {{{feed}}}, None)", ORT_NS, ORT_CALLS, counters)
            w.outputs(step.outputs)
            w.guards(step.checks)
        elif isinstance(step, _EIEStep):
            args = ", ".join(w.ref(n) for n in step.inputs)
            kernel = w.bind("k", step.kernel.run)
            w.lines += w.timed(f"{kernel}([{args}], mode)", EIE_NS, EIE_CALLS, counters)
            w.outputs(step.outputs)
        elif isinstance(step, AliasStep):
            for src, dst in step.pairs:
                w.local[dst] = w.ref(src)
        elif isinstance(step, GuardStep):
            w.guards([(name, want) for name, want, _ in step.checks])
        elif isinstance(step, ControlStep):
            for name in sorted(node_reads(step.node)):  # what its bodies read, from this scope or further out
                w.lines.append(f"env[{name!r}] = {w.ref(name)}")
            w.lines.append(f"{w.bind('x', step.run)}(env, mode)")
            for name in step.node.output:
                if name:
                    w.lines.append(f"{w.new(name)} = env[{name!r}]")
        else:  # pragma: no cover - a step kind added without its code here
            raise TypeError(f"cannot compile a {type(step).__name__}")
    w.lines.append(f"return [{', '.join(w.ref(o) for o in plan.plain_outputs)}]")
    src = "def run(env, feeds, mode):\n" + "".join(f"    {line}\n" for line in w.lines)
    exec(compile(src, f"<eie plan {plan.where or 'graph'}>", "exec"), w.glob)  # noqa: S102 - generated above
    run = w.glob["run"]
    run.source = src  # for tools and tests
    return run
