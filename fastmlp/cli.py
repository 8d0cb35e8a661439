"""The `fastmlp` command (also `python -m fastmlp`).

    fastmlp train data.csv --target price --hidden 64,32 --epochs 30 --out model.fmlp --plot curve.png
    fastmlp predict model.fmlp new.csv --proba --out predictions.csv
    fastmlp evaluate model.fmlp test.csv --plot confusion.png
    fastmlp gradcheck model.fmlp data.csv
    fastmlp bench ...

Exit codes: 0 done; 1 training diverged or a gradient check failed; 2 bad
arguments, data or model file (one line on stderr says what and where);
130 interrupted.
"""

import argparse
import hashlib
import os
import sys
import time

EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
TRAIN_DEFAULTS = dict(task="auto", hidden="64", activation="relu", epochs=20, batch_size=32, lr=1e-3,
                      optimizer="adam", momentum=0.9, nesterov=False, alpha=1e-4, dtype="float64",
                      val_fraction=0.1, seed=0, scale="standard", twin="fastmlp")
# settings fixed by a checkpoint: giving a different one with --resume is an error
RESUME_FIXED = ("target", "task", "hidden", "activation", "batch_size", "lr", "optimizer", "momentum",
                "nesterov", "alpha", "dtype", "val_fraction", "seed", "scale", "twin")
MAX_CLASSES_INFERRED = 20
CLI_FORMAT = 1


class CLIError(Exception):
    """A one-line error for the user; exit code 2."""


def _fail(message):
    raise CLIError(message)


# ------------------------------------------------------------------ parser
class _Formatter(argparse.HelpFormatter):
    """Shows a default only where there is one and the help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and "default" not in text:
            text += " (default: %(default)s)"
        return text


def _positive_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {v}")
    return v


def _hidden(text):
    try:
        sizes = [int(s) for s in text.replace(" ", "").split(",") if s != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated layer sizes like 64,32; got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"layer sizes must be at least 1; got {text!r}")
    return ",".join(map(str, sizes))


def _real_in(low, high, *, low_open=False, what="a number"):
    """An argparse type: a float in [low, high) (or (low, high) with low_open)."""
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}") from None
        if not ((low < v) if low_open else (low <= v)) or not v < high:
            raise argparse.ArgumentTypeError(f"must be {what}; got {text!r}")
        return v
    return parse


_fraction = _real_in(0.0, 1.0, what="a number in [0, 1)")
_positive_float = _real_in(0.0, float("inf"), low_open=True, what="a positive number")
_nonnegative_float = _real_in(0.0, float("inf"), what="a non-negative number")


DATA_HELP = ("a .csv file with a header row, a .npz file with arrays X and y, a .npy file "
             "(2-D, target in the last column), mnist:DIR (IDX files, gzipped or not) "
             "or a bundled data set: digits, iris, wine, breast_cancer (needs scikit-learn)")


def _add_threads(p):
    p.add_argument("--threads", type=_positive_int, metavar="N",
                   help="threads for fastmlp's parallel kernels (results do not depend on it)")


def build_parser():
    from fastmlp import __version__

    parser = argparse.ArgumentParser(
        prog="fastmlp", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train multilayer perceptrons on the CPU and use them, from files.",
        epilog="Run 'fastmlp COMMAND --help' for a command's options.\n\n"
               "examples:\n"
               "  fastmlp train data.csv --target price --hidden 64,32 --epochs 30 --plot curve.png\n"
               "  fastmlp predict model.fmlp new.csv --out predictions.csv\n"
               "  fastmlp evaluate model.fmlp test.csv --plot confusion.png\n"
               "  fastmlp train mnist:~/data/mnist --hidden 128 --epochs 10 --checkpoint-every 2\n"
               "  fastmlp train --resume model.fmlp.ckpt --epochs 20\n\n"
               "exit codes: 0 done, 1 training diverged or gradcheck failed, 2 bad arguments, "
               "data or model file, 130 interrupted")
    parser.add_argument("--version", action="version", version=f"fastmlp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser(
        "train", help="train a model on data and save it", formatter_class=_Formatter,
        description="Train an MLP and save it. Features are standardized on the training rows and the "
                    "scaling is folded into the saved model's first layer (regression targets likewise "
                    "into its last), so the saved model takes raw features. The task is classification "
                    f"when the target is text or has at most {MAX_CLASSES_INFERRED} distinct whole numbers, "
                    "regression otherwise; --task overrides. Progress: a bar on a terminal, one line "
                    "per epoch otherwise (stderr).",
        epilog="With --resume the architecture, optimizer settings, seed and data split come from "
               "the checkpoint (DATA, if omitted, too); --epochs is the total to reach.")
    t.add_argument("data", nargs="?", metavar="DATA", help=DATA_HELP)
    t.add_argument("--target", metavar="NAME",
                   help="target column (CSV: its name, default the last column; .npy: its index; "
                        ".npz: the array's name, default y)")
    t.add_argument("--task", choices=("auto", "classification", "regression"),
                   help=f"default: {TRAIN_DEFAULTS['task']}")
    t.add_argument("--hidden", type=_hidden, metavar="SIZES",
                   help=f"hidden layer sizes, comma-separated (empty for none); default {TRAIN_DEFAULTS['hidden']}")
    t.add_argument("--activation", choices=("relu", "tanh", "sigmoid", "identity"),
                   help=f"hidden activation; default {TRAIN_DEFAULTS['activation']}")
    t.add_argument("--epochs", type=_positive_int, help=f"default {TRAIN_DEFAULTS['epochs']}")
    t.add_argument("--batch-size", type=_positive_int, metavar="N",
                   help=f"default {TRAIN_DEFAULTS['batch_size']}")
    t.add_argument("--lr", type=_positive_float, help=f"learning rate; default {TRAIN_DEFAULTS['lr']}")
    t.add_argument("--optimizer", choices=("adam", "sgd"), help=f"default {TRAIN_DEFAULTS['optimizer']}")
    t.add_argument("--momentum", type=_nonnegative_float,
                   help=f"SGD momentum; default {TRAIN_DEFAULTS['momentum']}")
    t.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD)")
    t.add_argument("--alpha", type=_nonnegative_float,
                   help=f"L2 penalty on the weights; default {TRAIN_DEFAULTS['alpha']}")
    t.add_argument("--dtype", choices=("float64", "float32"), help=f"default {TRAIN_DEFAULTS['dtype']}")
    t.add_argument("--val-fraction", type=_fraction, metavar="F",
                   help="fraction of rows held out to score each epoch (0 for none); "
                        f"default {TRAIN_DEFAULTS['val_fraction']}")
    t.add_argument("--seed", type=int, help=f"seed of weights, split and shuffles; default {TRAIN_DEFAULTS['seed']}")
    t.add_argument("--scale", choices=("standard", "none"),
                   help=f"feature (and regression target) standardization; default {TRAIN_DEFAULTS['scale']}")
    t.add_argument("--twin", choices=("fastmlp", "reference"),
                   help="train with the compiled core or the NumPy twin (same numbers, slower); "
                        f"default {TRAIN_DEFAULTS['twin']}")
    _add_threads(t)
    t.add_argument("--out", default="model.fmlp", metavar="FILE", help="where to save the model")
    t.add_argument("--plot", metavar="PNG", help="write the loss and validation curves (needs matplotlib)")
    t.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="save a checkpoint (weights, optimizer and random state) every N epochs")
    t.add_argument("--checkpoint", metavar="FILE", help="checkpoint file (default: the --out file + .ckpt)")
    t.add_argument("--resume", metavar="FILE", help="continue training from a checkpoint")
    t.add_argument("--quiet", "-q", action="store_true", help="no progress, no summary")

    p = sub.add_parser("predict", help="predict with a saved model, write CSV", formatter_class=_Formatter,
                       description="Predictions of a saved model for DATA, as CSV: a 'prediction' column "
                                   "(the class label, or the value; prediction_0... for several outputs) "
                                   "and with --proba one probability column per class.")
    p.add_argument("model", metavar="MODEL", help="a model file (.fmlp) or a checkpoint")
    p.add_argument("data", metavar="DATA", help=DATA_HELP + "; a target column, if present, is ignored")
    p.add_argument("--proba", action="store_true", help="also write class probabilities")
    p.add_argument("--out", metavar="CSV", help="output file (default: standard output)")
    p.add_argument("--target", metavar="NAME", help="a column to leave out of the features (CSV)")
    p.add_argument("--split", choices=("train", "test"), default="test",
                   help="which files mnist:DIR gives")
    _add_threads(p)

    e = sub.add_parser("evaluate", help="score a saved model on labelled data", formatter_class=_Formatter,
                       description="Accuracy, log-loss and a confusion matrix for classifiers; R², RMSE "
                                   "and MAE for regression.")
    e.add_argument("model", metavar="MODEL", help="a model file (.fmlp) or a checkpoint")
    e.add_argument("data", metavar="DATA", help=DATA_HELP)
    e.add_argument("--target", metavar="NAME", help="target column (default: the one the model was trained on)")
    e.add_argument("--plot", metavar="PNG", help="write the confusion matrix as a picture (needs matplotlib)")
    e.add_argument("--split", choices=("train", "test"), default="test",
                   help="which files mnist:DIR gives")
    _add_threads(e)

    g = sub.add_parser("gradcheck", help="check a model's gradients by finite differences",
                       formatter_class=_Formatter,
                       description="Compare the analytic gradient of the loss on DATA with fourth-order "
                                   "central differences; exit 1 if the largest relative error exceeds --tol.")
    g.add_argument("model", metavar="MODEL", help="a model file (.fmlp) or a checkpoint")
    g.add_argument("data", metavar="DATA", help=DATA_HELP)
    g.add_argument("--target", metavar="NAME", help="target column (default: the model's)")
    g.add_argument("--rows", type=_positive_int, default=64, help="rows of DATA to use (the first ones)")
    g.add_argument("--max-checks", type=_positive_int, default=300, help="parameters to check at most")
    g.add_argument("--tol", type=_positive_float,
                   help="largest acceptable relative error (default 1e-6 for float64, 1e-2 for float32)")
    g.add_argument("--twin", choices=("fastmlp", "reference"), default="fastmlp",
                   help="which implementation to check")
    _add_threads(g)

    sub.add_parser("bench", help="side-by-side training speed (run 'fastmlp bench --help')", add_help=False)
    return parser


# -------------------------------------------------------------------- main
def main(argv=None):
    """Run the command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":
        return _bench(argv[1:])
    from fastmlp.datasets import DataError
    from fastmlp.io import ModelFileError
    from fastmlp.plots import PlotError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if getattr(args, "threads", None) is not None:
            _set_threads(args.threads)
        return COMMANDS[args.command](args)
    except (CLIError, DataError, ModelFileError, PlotError) as e:
        print(f"fastmlp {args.command}: {_one_line(str(e))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"fastmlp {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # e.g. `fastmlp predict ... | head`: the reader went away; not an error of ours
        # stdout is broken: point its descriptor at /dev/null so the exit flush is quiet
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass
        return 0


def _one_line(text):
    return " ".join(text.split())


def _bench(argv):
    import importlib

    try:
        bench = importlib.import_module("fastmlp.bench")
    except ImportError:
        print("fastmlp bench: not available in this installation (fastmlp.bench is missing)", file=sys.stderr)
        return EXIT_USAGE
    code = bench.main(argv)
    return int(code or 0)


def _set_threads(n):
    import numba

    import fastmlp

    top = numba.config.NUMBA_NUM_THREADS
    if n > top:
        _fail(f"--threads {n}: at most {top} here (numba's NUMBA_NUM_THREADS)")
    fastmlp.set_num_threads(n)


def _say(args, *lines):
    if not getattr(args, "quiet", False):
        for line in lines:
            print(line, flush=True)


# ------------------------------------------------------------- targets
class Target:
    """How the target maps to the network: classes (labels -> indices) or scaling."""

    def __init__(self, task, classes=None):
        self.task = task
        self.classes = classes  # numpy array of labels, classification only


def _infer_task(ds, task):
    """'classification' or 'regression' for dataset `ds` (and a reason, for the summary)."""
    from fastmlp.datasets import DataError

    y = ds.y
    if task == "regression":
        if not ds.y_numeric:
            from fastmlp.datasets import first_non_number

            i = first_non_number(ds.y_text if ds.y_text is not None else y)
            value = (ds.y_text if ds.y_text is not None else y)[i]
            raise DataError(f"{ds.where(i)}: {str(value)!r} is not a number, and --task regression "
                            "needs numeric targets")
        return task, "--task regression"
    if task == "classification":
        if y.ndim != 1:
            _fail(f"{ds.source}: the target has shape {y.shape}; classification needs one label per row")
        return task, "--task classification"
    if y.ndim == 2:
        return "regression", f"{y.shape[1]} target columns"
    if not ds.y_numeric:
        return "classification", "the target is text"
    import numpy as np

    values = np.unique(y)
    whole = bool(np.all(values == np.round(values)))
    if whole and len(values) <= MAX_CLASSES_INFERRED:
        return "classification", f"the target has {len(values)} distinct whole numbers"
    why = "the target has non-integer values" if not whole else f"the target has {len(values)} distinct values"
    return "regression", why


def _labels_of(ds):
    """Labels as the classes will hold them: numbers stay numbers (ints if whole)."""
    import numpy as np

    y = ds.y
    if ds.y_numeric:
        if y.dtype.kind == "f" and np.all(y == np.round(y)) and np.abs(y).max() < 2**53:
            return y.astype(np.int64)
        return y
    return np.asarray(y, dtype=str)


def _encode_labels(ds, classes):
    """Class indices of ds's labels under `classes`; an unknown label is a DataError."""
    import numpy as np

    from fastmlp.datasets import DataError

    if ds.y is None:
        _fail(f"{ds.source}: no target to compare with; name it with --target")
    if ds.y.ndim != 1:
        _fail(f"{ds.source}: the target has shape {ds.y.shape}; a classifier needs one label per row")
    if classes.dtype.kind in "biuf":
        if not ds.y_numeric:
            from fastmlp.datasets import first_non_number

            text = ds.y_text if ds.y_text is not None else ds.y
            i = first_non_number(text)
            raise DataError(f"{ds.where(i)}: {str(text[i])!r} is not one of the model's classes "
                            f"({_show(classes)})")
        values = ds.y.astype(np.float64)
        keys = classes.astype(np.float64)
    else:
        values = ds.y_text if ds.y_text is not None else np.asarray(ds.y).astype(str)
        keys = classes.astype(str)
    order = np.argsort(keys, kind="stable")
    pos = np.searchsorted(keys[order], values)
    pos = np.minimum(pos, len(keys) - 1)
    found = keys[order][pos] == values
    if not found.all():
        i = int(np.flatnonzero(~found)[0])
        shown = ds.y_text[i] if ds.y_text is not None else ds.y[i]
        raise DataError(f"{ds.where(i)}: {str(shown)!r} is not one of the model's classes ({_show(classes)})")
    return order[pos].astype(np.int64)


def _show(values, limit=10):
    items = [str(v) for v in values[:limit]]
    return ", ".join(items) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _fingerprint(ds):
    import numpy as np

    h = hashlib.sha256()
    h.update(np.ascontiguousarray(ds.X).tobytes())
    if ds.y is not None:
        y = ds.y_text if ds.y_text is not None else ds.y
        h.update(str(y.dtype).encode() + str(y.shape).encode())
        h.update(np.ascontiguousarray(y).tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ train
def _standardizer(A, enabled):
    import numpy as np

    if not enabled:
        return np.zeros(A.shape[1]), np.ones(A.shape[1])
    mean = A.mean(axis=0)
    scale = A.std(axis=0)
    scale[scale <= 1e-12 * np.maximum(np.abs(mean), 1.0)] = 1.0
    return mean, scale


def fold_scaling(net, x_mean, x_scale, y_mean=None, y_scale=None):
    """A copy of `net` that takes raw features and gives raw targets: the
    standardization (x - x_mean) / x_scale folded into the first layer and
    y * y_scale + y_mean into the last (identity output only)."""
    import numpy as np

    out = type(net)(net.layer_sizes, net.activation, net.output, bias=net.bias, reduction=net.reduction,
                    dtype=net.dtype, random_state=net.random_state if isinstance(net.random_state, int) else None)
    coefs = [np.array(w, dtype=np.float64) for w in net.coefs_]
    intercepts = [np.array(b, dtype=np.float64) for b in net.intercepts_]
    if not net.bias:
        raise ValueError("folding the scaling needs a model with biases")
    w0 = coefs[0]
    intercepts[0] = intercepts[0] - (x_mean / x_scale) @ w0
    coefs[0] = w0 / x_scale[:, None]
    if y_mean is not None:
        coefs[-1] = coefs[-1] * y_scale[None, :]
        intercepts[-1] = intercepts[-1] * y_scale + y_mean
    out.coefs_ = [w.astype(net.dtype) for w in coefs]
    out.intercepts_ = [b.astype(net.dtype) for b in intercepts]
    out.loss_curve_ = list(net.loss_curve_)
    out.n_iter_, out.t_ = net.n_iter_, net.t_
    if getattr(net, "_settings", None) is not None:
        out._settings = net._settings
    for name in ("classes_", "feature_names_in_"):
        if hasattr(net, name):
            setattr(out, name, getattr(net, name))
    return out


def _train_settings(args, resumed):
    """The effective settings: explicit options, else the checkpoint's, else defaults."""
    settings = dict(TRAIN_DEFAULTS, target=None)
    if resumed is not None:
        saved = resumed["settings"]
        for key in RESUME_FIXED:
            given = getattr(args, key)
            if given is not None and given != saved[key]:
                _fail(f"--{key.replace('_', '-')} {given} differs from the checkpoint's "
                      f"{saved[key]!r}; a resumed run keeps the checkpoint's settings")
        settings.update(saved)
    for key in settings:
        given = getattr(args, key, None)
        if given is not None:
            settings[key] = given
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    return settings


def _read_checkpoint(path):
    import numpy as np

    from fastmlp import io

    mf = io.read(path)
    cli = mf.extra.get("cli")
    if mf.header["state"] is None or not isinstance(cli, dict) or cli.get("format") != CLI_FORMAT:
        _fail(f"{path}: not a checkpoint of 'fastmlp train' (save one with --checkpoint-every)")
    try:
        settings = cli["settings"]
        missing = [key for key in (*RESUME_FIXED, "epochs") if key not in settings]
        if missing:
            raise KeyError(f"settings lack {missing}")
        n_train = int(cli["n_train"])
        order = mf.extra_array("order")
        x_mean, x_scale = mf.extra_array("x_mean"), mf.extra_array("x_scale")
        d = mf.header["architecture"]["layer_sizes"][0]
        if order.shape != (n_train,) or not np.array_equal(np.sort(order), np.arange(n_train)):
            raise ValueError("the saved epoch order is not a permutation of the training rows")
        if x_mean.shape != (d,) or x_scale.shape != (d,) or not (x_scale > 0).all():
            raise ValueError("the saved feature scaling does not fit the model")
        val_curve = [float(v) for v in cli["val_curve"]]
        str(cli["data"]), str(cli["fingerprint"])
    except (KeyError, TypeError, ValueError) as e:
        _fail(f"{path}: a broken 'fastmlp train' checkpoint ({e})")
    return {"file": mf, "settings": settings, "cli": cli, "order": order, "val_curve": val_curve}


def cmd_train(args):
    import numpy as np

    from fastmlp import datasets, io, plots

    resumed = None
    if args.resume:
        resumed = _read_checkpoint(args.resume)
    s = _train_settings(args, resumed)
    spec = args.data or (resumed and resumed["cli"]["data"])
    if spec is None:
        _fail("give the training DATA (or --resume a checkpoint)")
    if args.plot:
        plots.require_matplotlib()
    ckpt_path = args.checkpoint or args.out + ".ckpt"
    for path in [args.out] + ([ckpt_path] if args.checkpoint_every else []):
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            _fail(f"{path}: the folder {folder} does not exist")

    ds = datasets.load(spec, target=s["target"], split="train")
    if ds.rows is not None:  # CSV: keep the column's name, for evaluate and predict later
        s["target"] = ds.target_name
    if resumed is not None and _fingerprint(ds) != resumed["cli"]["fingerprint"]:
        _fail(f"{spec}: not the data the checkpoint {args.resume} was trained on")
    task, why = _infer_task(ds, s["task"])
    n, d = ds.X.shape
    if task == "classification":
        labels = _labels_of(ds)
        classes, y_all = np.unique(labels, return_inverse=True)
        if len(classes) < 2:
            _fail(f"{ds.source}: the target has one value only ({_show(classes)}); nothing to classify")
        k = len(classes)
    else:
        classes = None
        y_all = ds.y.astype(np.float64)
        if y_all.ndim == 1:
            y_all = y_all[:, None]
        k = y_all.shape[1]

    split_rng = np.random.RandomState(s["seed"])
    perm = split_rng.permutation(n)
    n_val = int(round(s["val_fraction"] * n)) if s["val_fraction"] > 0 else 0
    if n_val and n - n_val < 1:
        _fail(f"--val-fraction {s['val_fraction']} leaves no training rows out of {n}")
    val_rows, train_rows = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    scale = s["scale"] == "standard"
    X_train = ds.X[train_rows]
    x_mean, x_scale = _standardizer(X_train, scale)
    dtype = np.dtype(s["dtype"])
    Xs = ((ds.X - x_mean) / x_scale).astype(dtype)
    y_mean = y_scale = None
    if task == "regression":
        y_mean, y_scale = _standardizer(y_all[train_rows], scale)
        ys = ((y_all - y_mean) / y_scale).astype(dtype)
        y_fit = ys[:, 0] if k == 1 else ys
    else:
        y_fit = y_all.astype(np.int64)
    X_tr, y_tr = np.ascontiguousarray(Xs[train_rows]), y_fit[train_rows]
    X_val, y_val = Xs[val_rows], y_fit[val_rows]

    if s["twin"] == "reference":
        from fastmlp.reference import MLP
    else:
        from fastmlp import MLP
    hidden = [int(v) for v in s["hidden"].split(",") if v]
    sizes = [d, *hidden, k]
    output = "softmax" if task == "classification" else "identity"
    if resumed is not None:
        mf = resumed["file"]
        if mf.header["architecture"]["layer_sizes"] != sizes:
            _fail(f"{args.resume}: its layer sizes {mf.header['architecture']['layer_sizes']} do not fit "
                  f"this data ({sizes})")
        net = mf.network(s["twin"])
        order = np.array(resumed["order"], dtype=np.int64)
        val_curve = resumed["val_curve"]
        if len(order) != len(train_rows):
            _fail(f"{args.resume}: saved for {len(order)} training rows; this split has {len(train_rows)}")
        if net.n_iter_ >= s["epochs"]:
            _fail(f"{args.resume}: already trained for {net.n_iter_} epochs; ask for more with --epochs")
    else:
        net = MLP(sizes, s["activation"], output, dtype=dtype, random_state=s["seed"])
        order = np.arange(len(train_rows), dtype=np.int64)
        val_curve = []
    if classes is not None:
        net.classes_ = classes
    if ds.feature_names is not None:
        net.feature_names_in_ = np.array(ds.feature_names, dtype=object)
    score_name = "val accuracy" if task == "classification" else "val R²"

    _say(args, f"{ds.source}: {n} rows, {d} features; {task} ({why})"
               + (f", {k} classes" if task == "classification" else ""),
         f"network {'-'.join(map(str, sizes))} {s['activation']}/{output}, {s['optimizer']} lr {s['lr']}, "
         f"batch {s['batch_size']}, {dtype.name}; {len(train_rows)} training rows, {n_val} validation rows"
         + (f"; resuming at epoch {net.n_iter_ + 1} of {s['epochs']}" if resumed else ""))

    def extra():
        return {"cli": {"format": CLI_FORMAT, "settings": s, "data": spec, "task": task,
                        "n_train": len(train_rows), "fingerprint": _fingerprint(ds),
                        "val_curve": val_curve, "score_name": score_name}}

    def checkpoint():
        arrays = {"order": order, "x_mean": x_mean, "x_scale": x_scale}
        if y_mean is not None:
            arrays.update(y_mean=y_mean, y_scale=y_scale)
        io.save(net, ckpt_path, training_state=True, extra=extra(), extra_arrays=arrays)

    from fastmlp._progress import EpochProgress, format_score

    progress = EpochProgress(s["epochs"], len(train_rows), start=net.n_iter_,
                             mode="quiet" if args.quiet else "auto")
    start = time.perf_counter()
    first_epoch = net.n_iter_ + 1
    last_checkpoint = None
    try:
        while net.n_iter_ < s["epochs"]:
            net._rng.shuffle(order)  # as MLP.fit: each epoch reshuffles the last one's order
            t0 = time.perf_counter()
            try:
                net.partial_fit(X_tr, y_tr, order=order, batch_size=s["batch_size"], lr=s["lr"],
                                optimizer=s["optimizer"], momentum=s["momentum"] if s["optimizer"] == "sgd" else 0.0,
                                nesterov=bool(s["nesterov"]), alpha=s["alpha"])
            except ValueError as e:
                if "diverged" not in str(e):
                    raise
                progress.close()
                print(f"fastmlp train: {e}", file=sys.stderr)
                return EXIT_FAILED
            seconds = time.perf_counter() - t0
            score = None
            if n_val:
                score = _score(net, X_val, y_val, task)
                val_curve.append(score)
            progress.update(net.n_iter_, net.loss_curve_[-1], seconds, score=score, score_name=score_name)
            if args.checkpoint_every and net.n_iter_ % args.checkpoint_every == 0:
                checkpoint()
                last_checkpoint = net.n_iter_
    except KeyboardInterrupt:
        progress.close()
        where = (f"; the checkpoint {ckpt_path} holds epoch {last_checkpoint}" if last_checkpoint else "")
        print(f"fastmlp train: interrupted in epoch {net.n_iter_ + 1}{where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.close()
    total = time.perf_counter() - start
    if args.checkpoint_every and last_checkpoint != net.n_iter_:
        checkpoint()
    final = fold_scaling(net, x_mean, x_scale, y_mean, y_scale)
    out_extra = extra()["cli"]
    out_extra = {key: out_extra[key] for key in ("format", "settings", "data", "task", "val_curve", "score_name")}
    io.save(final, args.out, extra={"cli": out_extra})
    summary = [f"trained epochs {first_epoch}-{net.n_iter_} in {total:.2f} s; final loss {net.loss_curve_[-1]:.6g}"
               + (f"; {score_name} {format_score(val_curve[-1])}" if val_curve else ""),
               f"saved {args.out}" + (f" (checkpoint {ckpt_path})" if args.checkpoint_every else "")]
    if args.plot:
        plots.training_curves(args.plot, net.loss_curve_, val_curve, score_name,
                              title=f"{os.path.basename(ds.source)}: {'-'.join(map(str, sizes))}")
        summary.append(f"plot {args.plot}")
    _say(args, *summary)
    return 0


def _score(net, X, y, task):
    import numpy as np

    if task == "classification":
        return float((net.predict(X) == y).mean())
    pred = net.forward(X).astype(np.float64)
    y = y.reshape(pred.shape).astype(np.float64)
    return _r2(y, pred)


def _r2(y, pred):
    import numpy as np

    ss_res = ((y - pred) ** 2).sum(axis=0)
    ss_tot = ((y - y.mean(axis=0)) ** 2).sum(axis=0)
    r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1), np.where(ss_res > 0, 0.0, 1.0))
    return float(r2.mean())


# ------------------------------------------------- predict / evaluate
def _load_for_use(path, twin=None):
    """(network taking raw features, the file): folds a checkpoint's scaling in."""
    from fastmlp import io

    mf = io.read(path)
    net = mf.network(twin)
    cli = mf.extra.get("cli") if isinstance(mf.extra, dict) else None
    if isinstance(cli, dict) and "x_mean" in mf.header["extra_arrays"]:
        try:
            y_mean = mf.extra_array("y_mean") if "y_mean" in mf.header["extra_arrays"] else None
            y_scale = mf.extra_array("y_scale") if "y_scale" in mf.header["extra_arrays"] else None
            net = fold_scaling(net, mf.extra_array("x_mean"), mf.extra_array("x_scale"), y_mean, y_scale)
        except (ValueError, IndexError) as e:
            _fail(f"{path}: its saved scaling does not fit the model ({e})")
    return net, mf


def _model_target(mf, given):
    if given is not None:
        return given
    cli = mf.extra.get("cli") if isinstance(mf.extra, dict) else None
    if isinstance(cli, dict) and isinstance(cli.get("settings"), dict):
        return cli["settings"].get("target")
    return None


def _data_for(net, mf, spec, target, need_target, split):
    """The data a model is used on; CSV features are taken by the model's column names."""
    from fastmlp import datasets

    names = getattr(net, "feature_names_in_", None)
    is_csv = spec.lower().endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz"))
    given = target
    target = _model_target(mf, target)
    features = list(names) if (names is not None and is_csv) else None
    if is_csv and not need_target and given is None and features is not None:
        target = None  # predicting: the features are found by name, the target is not needed
    kw = dict(features=features, n_features=net.layer_sizes[0], need_target=need_target, split=split)
    try:
        ds = datasets.load(spec, target=target, **kw)
    except datasets.DataError:
        if not (is_csv and target is not None and given is None and not need_target):
            raise
        ds = datasets.load(spec, target=None, **kw)  # the model's target column is absent: fine
    if ds.X.shape[1] != net.layer_sizes[0]:
        _fail(f"{ds.source}: {ds.X.shape[1]} features; the model takes {net.layer_sizes[0]}")
    return ds


def _classes(net):
    import numpy as np

    classes = getattr(net, "classes_", None)
    if classes is not None:
        return classes
    if net.output == "softmax":
        return np.arange(net.layer_sizes[-1])
    if net.output == "sigmoid" and net.layer_sizes[-1] == 1:
        return np.array([0, 1])
    return None


def _fmt(v):
    import numpy as np

    if isinstance(v, np.float32):
        return f"{float(v):.9g}"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def cmd_predict(args):
    import csv

    net, mf = _load_for_use(args.model)
    ds = _data_for(net, mf, args.data, args.target, need_target=False, split=args.split)
    classes = _classes(net)
    is_classifier = net.output in ("softmax", "sigmoid") and classes is not None and (
        net.output == "softmax" or net.layer_sizes[-1] == 1)
    header, columns = [], []
    if is_classifier:
        header.append("prediction")
        columns.append(classes[net.predict(ds.X)])
        if args.proba:
            proba = net.predict_proba(ds.X)
            for j, c in enumerate(classes):
                header.append(f"proba_{c}")
                columns.append(proba[:, j])
    else:
        if args.proba:
            _fail(f"{args.model}: --proba needs a classifier; this model's output is {net.output}")
        pred = net.predict(ds.X)
        pred = pred[:, None] if pred.ndim == 1 else pred
        for j in range(pred.shape[1]):
            header.append("prediction" if pred.shape[1] == 1 else f"prediction_{j}")
            columns.append(pred[:, j])

    def write(f):
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        formatted = [[_fmt(v) for v in col] for col in columns]
        w.writerows(zip(*formatted))

    if args.out:
        from fastmlp.io import atomic_write

        def write_bytes(fb):
            import io as _io

            text = _io.StringIO()
            write(text)
            fb.write(text.getvalue().encode("utf-8"))

        try:
            atomic_write(args.out, write_bytes)
        except OSError as e:
            _fail(f"{args.out}: cannot write ({e.strerror or e})")
        print(f"{len(ds.X)} predictions written to {args.out}", file=sys.stderr)
    else:
        write(sys.stdout)
        sys.stdout.flush()
    return 0


def cmd_evaluate(args):
    import numpy as np

    from fastmlp import plots

    if args.plot:
        plots.require_matplotlib()
    net, mf = _load_for_use(args.model)
    ds = _data_for(net, mf, args.data, args.target, need_target=True, split=args.split)
    if ds.y is None:
        _fail(f"{ds.source}: no target to evaluate against; name it with --target")
    classes = _classes(net)
    n = len(ds.X)
    print(f"{ds.source}: {n} rows; model {'-'.join(map(str, net.layer_sizes))} "
          f"{net.activation}/{net.output}")
    if classes is not None and (net.output == "softmax" or (net.output == "sigmoid" and net.layer_sizes[-1] == 1)):
        y = _encode_labels(ds, np.asarray(classes))
        proba = net.predict_proba(ds.X).astype(np.float64)
        pred = proba.argmax(axis=1)
        accuracy = float((pred == y).mean())
        p = np.clip(proba[np.arange(n), y], 1e-15, 1.0)
        log_loss = float(-np.log(p).mean())
        k = len(classes)
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (y, pred), 1)
        print(f"accuracy  {accuracy:.4f}  ({int((pred == y).sum())} of {n})")
        print(f"log-loss  {log_loss:.6f}")
        print("confusion matrix (rows: true class, columns: predicted):")
        print(_matrix_text(cm, classes))
        if args.plot:
            plots.confusion_matrix(args.plot, cm, classes,
                                   title=f"{os.path.basename(ds.source)}: accuracy {accuracy:.4f}")
            print(f"plot {args.plot}")
        return 0
    if args.plot:
        _fail("--plot draws a confusion matrix, which needs a classifier")
    if not ds.y_numeric:
        from fastmlp.datasets import DataError, first_non_number

        i = first_non_number(ds.y_text if ds.y_text is not None else ds.y)
        raise DataError(f"{ds.where(i)}: {str((ds.y_text if ds.y_text is not None else ds.y)[i])!r} "
                        "is not a number; this model does regression")
    pred = net.forward(ds.X).astype(np.float64)
    y = ds.y.astype(np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.shape != pred.shape:
        _fail(f"{ds.source}: the target has {y.shape[1]} columns; the model gives {pred.shape[1]}")
    err = pred - y
    print(f"R²    {_r2(y, pred):.6f}")
    print(f"RMSE  {float(np.sqrt((err ** 2).mean())):.6g}")
    print(f"MAE   {float(np.abs(err).mean()):.6g}")
    return 0


def _matrix_text(cm, labels):
    names = [str(v) for v in labels]
    width = max(max(len(s) for s in names), len(str(cm.max())), 4)
    lines = [" " * width + " " + " ".join(f"{s:>{width}}" for s in names)]
    for name, row in zip(names, cm):
        lines.append(f"{name:>{width}} " + " ".join(f"{v:>{width}d}" for v in row))
    return "\n".join(lines)


def cmd_gradcheck(args):
    import numpy as np

    import fastmlp

    net, mf = _load_for_use(args.model, twin=args.twin)
    ds = _data_for(net, mf, args.data, args.target, need_target=True, split="train")
    if ds.y is None:
        _fail(f"{ds.source}: no target; name it with --target")
    rows = slice(0, min(args.rows, len(ds.X)))
    X = ds.X[rows].astype(net.dtype)
    classes = _classes(net)
    if net.output == "softmax" or (net.output == "sigmoid" and net.layer_sizes[-1] == 1 and classes is not None):
        sub = type(ds)(ds.X[rows], ds.y[rows], ds.source, ds.feature_names, ds.target_name,
                       None if ds.y_text is None else ds.y_text[rows],
                       None if ds.rows is None else ds.rows[rows])
        y = _encode_labels(sub, np.asarray(classes))
    else:
        if not ds.y_numeric:
            _fail(f"{ds.source}: the target must be numbers for this {net.output} output")
        y = ds.y[rows].astype(net.dtype)
    try:
        worst, details = fastmlp.gradcheck(net, X, y, max_checks=args.max_checks, return_details=True)
    except ValueError as e:
        _fail(f"{ds.source}: {e}")
    tol = args.tol if args.tol is not None else (1e-6 if net.dtype == np.float64 else 1e-2)
    checked = len(details["index"])
    verdict = "OK" if worst <= tol else "FAILED"
    print(f"gradcheck {net.dtype.name}, {type(net).__module__}: max relative error {worst:.3g} over {checked} "
          f"parameters of {net.params.size} ({len(details['kinks'])} at ReLU kinks left out), "
          f"{X.shape[0]} rows; tolerance {tol:g}: {verdict}")
    return 0 if worst <= tol else EXIT_FAILED


COMMANDS = {"train": cmd_train, "predict": cmd_predict, "evaluate": cmd_evaluate, "gradcheck": cmd_gradcheck}
