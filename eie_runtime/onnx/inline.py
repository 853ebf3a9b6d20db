"""Specialised plans: the ``If`` branches a run took, inlined into the enclosing graph.

An ``If`` whose branches hold EIE nodes cuts the graph: run as a control step, the nodes before it, the
branch's nodes before and after its EIE nodes, and the nodes after it each become onnxruntime segments of
their own (silero-vad's LSTM, two ``If`` s deep, sat between six). Inlining the taken branch removes those
cuts: the branch's plain nodes join the segments of the enclosing graph, so the whole model costs one
onnxruntime call before the first EIE node and one after the last.

Which branch an ``If`` takes is known only at run time, so :class:`~eie_runtime.onnx.session.InferenceSession`
runs the last outcome's specialised plan *speculatively*: each inlined ``If`` becomes a guard that checks its
condition as soon as a step has computed it; a guard that fails (or any error on the way) abandons the run
(nothing is written outside the run's own values) and the generic plan runs instead, which records the
outcomes the next run guesses. Plans are cached per outcome, so a stream that switches between two sample
rates builds two.
"""

from __future__ import annotations

from onnx import helper

_IF_DOMAINS = ("", "ai.onnx")

#: key of the per-run trace of If outcomes in a plan's value dict (not a string, so never an ONNX name)
TRACE = object()


class Alias:
    """``dst`` takes the value of ``src``: an inlined If's output takes its branch's output."""

    op_type = "__alias__"
    domain = "ai.eie.internal"
    name = ""

    def __init__(self, src: str, dst: str):
        self.src, self.dst = src, dst
        self.input, self.output = [src], [dst]


class Miss(Exception):
    """A guard failed: the run took another branch than the plan was specialised for."""


class GraphView:
    """A graph as plain lists (``node`` may hold :class:`Alias` entries), for ``_Plan``."""

    def __init__(self, graph, node, initializer, guards, outcomes):
        self.input, self.output, self.name = graph.input, graph.output, graph.name
        self.node, self.initializer, self.guards, self.outcomes = node, initializer, guards, outcomes


def inline_taken(graph, outcomes: dict) -> GraphView:
    """``graph`` with every If whose id is in ``outcomes`` replaced by the branch it took (recursively).

    The nodes stay the model's own NodeProto objects (the EIE nodes' kernels are looked up by identity);
    branch initializers move to the view; each If output becomes an :class:`Alias` of its branch output; each
    inlined If adds a guard ``(condition name, outcome)``.
    """
    nodes, inits, guards, used = [], list(graph.initializer), [], {}

    def walk(g):
        for n in g.node:
            if n.op_type == "If" and n.domain in _IF_DOMAINS and id(n) in outcomes:
                taken = bool(outcomes[id(n)])
                attrs = {a.name: a for a in n.attribute}
                branch = helper.get_attribute_value(attrs["then_branch" if taken else "else_branch"])
                guards.append((n.input[0], taken, n.name or "If"))
                used[id(n)] = taken
                inits.extend(branch.initializer)
                walk(branch)
                for vi, out in zip(branch.output, n.output):
                    if out:
                        nodes.append(Alias(vi.name, out))
            else:
                nodes.append(n)

    walk(graph)
    return GraphView(graph, nodes, inits, guards, used)


class GuardStep:
    """Checks inlined Ifs' conditions right after the step that computed them."""

    def __init__(self, checks):
        self.checks = list(checks)  # (name, outcome, If node name)


class AliasStep:
    """The If outputs that take (by reference, no data copied) branch outputs computed by EIE or control steps."""

    def __init__(self, pairs):
        self.pairs = list(pairs)
