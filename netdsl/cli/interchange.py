"""`netdsl export` (a network and its weights as an ONNX model) and `netdsl import` (a model file
as readable netdsl text and a checkpoint)."""
from __future__ import annotations

from ..errors import NetError
from .args import common, compile_file, nonneg_int, positive_int, warn
from .paths import reads, writes


def batch_arg(text: str):
    """--batch N or dynamic."""
    if text == "dynamic":
        return text
    return positive_int(text)


def cmd_export(args) -> int:
    from .. import checkpoint
    from ..interchange.onnx_export import export_onnx, needed_state
    net = compile_file(args)
    warn(net, args)
    state = None
    seed = 0 if args.seed is None else args.seed  # None: not given (usage.py refuses it beside --weights)
    if args.weights:
        with checkpoint.Checkpoint(args.weights) as ck:
            checkpoint.check_state(needed_state(net), {k: ck.entries[k] for k in ck.model_keys()}, args.weights)
            state = {k: ck.tensor(k) for k in ck.model_keys()}
    model = export_onnx(net, args.output, state, opset=args.opset, batch=args.batch,
                        side_outputs=not args.no_side_outputs, optimised=args.optimised, seed=seed)
    outputs = ", ".join(f"{o.name} {'x'.join(str(d.dim_param or d.dim_value) for d in o.type.tensor_type.shape.dim)}"
                        for o in model.graph.output)
    print(f"wrote {args.output}: {net.name}, opset {args.opset}, {len(model.graph.node)} nodes, "
          f"{len(model.graph.initializer)} initializers; input input "
          f"{'N' if args.batch == 'dynamic' else args.batch}x{'x'.join(map(str, net.input_shape))}; outputs {outputs}")
    if state is None:
        print(f"  the weights are netdsl's seeded initialisation (--seed {seed}): right for viewing and shape "
              "checks, not a trained model; --weights CK.safetensors exports trained ones")
    if any(net.layer(node).op == "svm" for _, node in net.outputs):
        print("  an svm head exports its class scores (the hinge loss belongs to training)")
    return 0


# import's weights flags: the model format each belongs to
WEIGHTS_FLAGS = {"caffemodel": ("--caffemodel", ".prototxt", "a Caffe prototxt"),
                 "darknet_weights": ("--darknet-weights", ".cfg", "a Darknet cfg")}


def cmd_import(args) -> int:
    from pathlib import Path
    from .. import checkpoint
    from ..compiler import compile_source
    from ..files import check_writable, write_atomic
    from ..interchange import import_model
    from .usage import UsageError
    suffix = Path(args.model).suffix.lower()
    for dest, (flag, fits, kind) in WEIGHTS_FLAGS.items():
        if getattr(args, dest) and suffix != fits:
            raise UsageError(f"{flag} {getattr(args, dest)}: {args.model} is not {kind} ({fits}), the only model "
                             f"{flag} gives weights to", hint=f"drop {flag}" + (
                                 "; an ONNX model carries its weights in the file" if suffix == ".onnx" else ""))
    text, state = import_model(args.model, args.caffemodel or args.darknet_weights)
    net = compile_source(text, args.output)  # what is written compiles: checked before it is written
    if args.weights:  # both outputs can be written: checked before either is
        if not state:
            raise NetError(f"--weights {args.weights}: {args.model} carries no weights",
                           hint="give a Caffe prototxt's weights with --caffemodel, a Darknet cfg's with "
                                "--darknet-weights")
        check_writable(args.weights, "--weights")
    write_atomic(args.output, text.encode("utf-8"))
    t = net.totals()
    print(f"wrote {args.output}: {net.name}, {len(net.layers)} layers, {t.params:,} parameters, {t.macs:,} MACs")
    if args.weights:
        checkpoint.write(args.weights, state, net.name, text, {"imported_from": str(args.model)})
        print(f"wrote {args.weights}: {len(state)} tensors (netdsl train --resume and netdsl export --weights "
              "read it)")
    return 0


def register(sub) -> None:
    from ..interchange.onnx_export import DEFAULT_OPSET, OPSETS
    p = sub.add_parser("export", help="the network as an ONNX model (onnxruntime, Netron, TensorRT, onnx2torch)")
    common(p)
    writes(p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the file, written atomically"))
    reads(p.add_argument("--weights", metavar="CK.safetensors", help="a checkpoint of this network (netdsl train --save)"))
    p.add_argument("--opset", type=int, choices=list(OPSETS), default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset, {OPSETS.start}-{OPSETS.stop - 1} (default {DEFAULT_OPSET})")
    p.add_argument("--batch", type=batch_arg, default="dynamic", metavar="N|dynamic",
                   help="a fixed batch size, or dynamic (default)")
    p.add_argument("--no-side-outputs", action="store_true", help="only the trunk's output (no auxiliary heads)")
    p.add_argument("--optimised", "--optimized", action="store_true",
                   help="the inference graph: bn folded into the conv, dropout and side outputs removed")
    p.add_argument("--seed", type=nonneg_int, default=None, help="the initialisation's seed, without --weights "
                                                               "(default 0)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="a model file (.onnx, Caffe .prototxt, Darknet .cfg) as readable "
                                      "netdsl text, its weights as a checkpoint")
    reads(p.add_argument("model", help="the model file: .onnx, .prototxt or .cfg"))
    writes(p.add_argument("-o", "--output", required=True, metavar="OUT.net", help="the .net file, written atomically"))
    writes(p.add_argument("--weights", metavar="OUT.safetensors", help="also write the model's weights as a checkpoint"))
    reads(p.add_argument("--caffemodel", metavar="MODEL.caffemodel",
                         help="a Caffe prototxt's trained weights (with --weights, which writes them)"))
    reads(p.add_argument("--darknet-weights", metavar="MODEL.weights",
                         help="a Darknet cfg's trained weights (with --weights, which writes them)"))
    p.set_defaults(func=cmd_import)
