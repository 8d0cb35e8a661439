"""Model files: `save(model, path)` and `load(path)`, without pickle.

A model file is an uncompressed zip (every member ZIP_STORED) holding

    header.json        format name and version, kind, architecture, dtype,
                       classes, training settings, counters; always the first member
    params.npy         the flat parameter vector (the model's dtype, little-endian)
    loss_curve.npy     float64, one loss per epoch
    velocity.npy       } only with training state: momentum velocity and Adam
    adam_m.npy         } moments in the params layout; the header then also holds
    adam_v.npy         } Adam's step count and the random generator's state
    x_<name>.npy       extra arrays a caller declared in the header (the CLI keeps
                       its input scaling and epoch order there)

Loading reads the zip directory and the header first and checks everything
against each other before it reads an array: the header's fields one by one
(unknown or missing fields are errors), the members' names and number, that
each member is stored uncompressed and unencrypted, lies inside the file and
overlaps no other, and that its size equals the size the architecture (or the
declared shape) implies. Arrays are read with numpy's .npy header parser and
`readinto` into a fresh buffer of the checked dtype: no pickle, no object
arrays, nothing from the file is executed. Every problem is a `ModelFileError`.

Writes go to a temporary file in the destination's directory, are fsynced and
then renamed over the destination (`os.replace`), so an interrupted save
leaves the old file or none, never a broken one.

Other kinds of model (the scikit-learn estimators) plug in with
`register_kind`: they name their kind, say how to split an object into its
network (a `BaseMLP`) plus a JSON section, and how to build it back.
"""

import json
import math
import numbers
import os
import re
import secrets
import struct
import zipfile
from dataclasses import dataclass, field

import numpy as np
import numpy.lib.format as npy_format

from fastmlp.datasets import open_error

FORMAT = "fastmlp-model"
VERSION = 1
SUFFIX = ".fmlp"
HEADER = "header.json"
MAX_HEADER_BYTES = 16 * 2**20
MAX_LAYERS = 10_000
MAX_NPY_HEADER = 10_000
STATE_ARRAYS = ("velocity", "adam_m", "adam_v")
_EXTRA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_EXTRA_DTYPES = ("float64", "float32", "int64", "int32", "uint32", "uint64", "uint8", "bool")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so the same model gives the same bytes
_BIT_GENERATORS = ("MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64")


class ModelFileError(ValueError):
    """A model file that cannot be read or written; the message says why."""


# ----------------------------------------------------------------- kinds
@dataclass(frozen=True)
class Kind:
    """How an object of kind `name` maps to a network plus a JSON section.

    to_parts(obj) -> (network: BaseMLP, section: dict of JSON values)
    from_parts(network, section) -> obj; must validate `section` and raise
    ValueError (turned into ModelFileError) on anything unexpected."""

    name: str
    cls: type
    to_parts: object
    from_parts: object


_KINDS = {}
# kinds whose module registers them on import; imported when a file names them
_KIND_MODULES = {"MLPClassifier": "fastmlp.estimators", "MLPRegressor": "fastmlp.estimators"}


def register_kind(name, cls, to_parts, from_parts):
    """Let `save` and `load` handle objects of class `cls` under kind `name`."""
    if not isinstance(name, str) or not _EXTRA_NAME.match(name.lower()) or name == "MLP":
        raise ValueError(f"bad kind name {name!r}")
    _KINDS[name] = Kind(name, cls, to_parts, from_parts)


def _kind_of(obj):
    from fastmlp._base import BaseMLP

    for kind in _KINDS.values():
        if isinstance(obj, kind.cls):
            return kind
    if isinstance(obj, BaseMLP):
        return None
    raise TypeError(f"cannot save a {type(obj).__name__}: not a fastmlp model")


# ------------------------------------------------------------ RNG state
def _encode_rng_value(value):
    if isinstance(value, dict):
        return {str(k): _encode_rng_value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        if value.dtype not in (np.uint32, np.uint64) or value.ndim != 1:
            raise ModelFileError(f"cannot save a random state holding a {value.dtype} array")
        return {"array": value.dtype.name, "values": [int(v) for v in value]}
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (numbers.Integral, np.integer)):
        return int(value)
    if isinstance(value, (numbers.Real, np.floating)):
        return float(value)
    if isinstance(value, str):
        return value
    raise ModelFileError(f"cannot save a random state holding {type(value).__name__}")


def encode_rng(rng):
    """The state of a RandomState or Generator as JSON values."""
    if isinstance(rng, np.random.RandomState):
        return {"type": "RandomState", "state": _encode_rng_value(rng.get_state(legacy=False))}
    if isinstance(rng, np.random.Generator):
        return {"type": "Generator", "state": _encode_rng_value(rng.bit_generator.state)}
    raise ModelFileError(f"cannot save a random generator of type {type(rng).__name__}")


def _decode_rng_value(value, where, depth=0):
    if depth > 4:
        raise ModelFileError(f"{where} is nested too deeply")
    if isinstance(value, dict):
        if set(value) == {"array", "values"}:
            dtype = value["array"]
            values = value["values"]
            if dtype not in ("uint32", "uint64") or not isinstance(values, list) or len(values) > 1024:
                raise ModelFileError(f"{where} is not an array of at most 1024 uint32/uint64")
            top = 2**32 if dtype == "uint32" else 2**64
            if not all(type(v) is int and 0 <= v < top for v in values):
                raise ModelFileError(f"{where} holds values that are not {dtype}")
            return np.array(values, dtype=dtype)
        return {k: _decode_rng_value(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    if type(value) in (int, float, bool, str):
        if type(value) is float and not math.isfinite(value):
            raise ModelFileError(f"{where} is not finite")
        return value
    raise ModelFileError(f"{where} has a value of type {type(value).__name__}")


def decode_rng(spec, where="state.rng"):
    """A new RandomState or Generator in the state `encode_rng` recorded."""
    if not isinstance(spec, dict) or set(spec) != {"type", "state"}:
        raise ModelFileError(f"{where} must have exactly the fields 'type' and 'state'")
    state = _decode_rng_value(spec["state"], f"{where}.state")
    if not isinstance(state, dict) or state.get("bit_generator") not in _BIT_GENERATORS:
        raise ModelFileError(f"{where}.state names no known bit generator (one of {', '.join(_BIT_GENERATORS)})")
    try:
        if spec["type"] == "RandomState":
            if state["bit_generator"] != "MT19937":
                raise ValueError("a RandomState runs on MT19937")
            rng = np.random.RandomState()
            rng.set_state(state)
            return rng
        if spec["type"] == "Generator":
            bit_generator = getattr(np.random, state["bit_generator"])()
            bit_generator.state = state
            return np.random.Generator(bit_generator)
    except (ValueError, TypeError, KeyError, OverflowError) as e:
        raise ModelFileError(f"{where} is not a valid random state: {e}") from None
    raise ModelFileError(f"{where}.type must be 'RandomState' or 'Generator'; got {spec['type']!r}")


# ----------------------------------------------------------------- save
def _json_value(x, where):
    """Check that x is made of JSON values only (what the header may hold)."""
    if x is None or type(x) in (bool, int, str):
        return x
    if type(x) is float:
        if not math.isfinite(x):
            raise ModelFileError(f"{where} is not finite: {x}")
        return x
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return _json_value(float(x), where)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(x)]
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            if not isinstance(k, str):
                raise ModelFileError(f"{where} has a key that is not a string: {k!r}")
            out[k] = _json_value(v, f"{where}.{k}")
        return out
    raise ModelFileError(f"{where} holds a {type(x).__name__}, which a model file cannot store")


def _classes_to_json(classes):
    if classes is None:
        return None
    classes = np.asarray(classes)
    if classes.ndim != 1 or classes.dtype.kind not in "biufU":
        raise ModelFileError(f"classes_ must be a 1-D array of numbers or strings; got {classes.dtype} "
                             f"of shape {classes.shape}")
    return [_json_value(v.item() if hasattr(v, "item") else v, "classes") for v in classes]


def _network_header(net, twin, training_state):
    settings = getattr(net, "_settings", None)
    training = None
    if settings is not None:
        training = {k: getattr(settings, k) for k in
                    ("lr", "momentum", "nesterov", "alpha", "beta_1", "beta_2", "epsilon")}
        training["optimizer"] = settings.name
    random_state = net.random_state
    if random_state is not None and not isinstance(random_state, (numbers.Integral, np.integer)):
        random_state = None  # a generator object: its state goes in "state" if asked for
    state = None
    if training_state:
        state = {"optimizer": getattr(net, "_optimizer_name", None), "adam_step": int(net._adam_step),
                 "rng": encode_rng(net._rng)}
    return {
        "twin": twin,
        "architecture": {"layer_sizes": [int(s) for s in net.layer_sizes], "activation": net.activation,
                         "output": net.output, "bias": bool(net.bias), "reduction": net.reduction},
        "dtype": net.dtype.name,
        "random_state": random_state,
        "training": training,
        "n_iter": int(net.n_iter_),
        "t": int(net.t_),
        "loss_curve_length": len(net.loss_curve_),
        "state": state,
    }


def _write_npy(zf, name, array):
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    with zf.open(info, "w", force_zip64=array.nbytes > 2**31 - 2**20) as f:
        npy_format.write_array(f, array, version=(1, 0), allow_pickle=False)


def save(obj, path, *, training_state=False, extra=None, extra_arrays=None):
    """Write `obj` (an MLP, or an object of a registered kind) to `path`, atomically.

    training_state: also store the optimizer state (velocity, Adam moments and
        step) and the random generator's state, so that training continues after
        `load` exactly as it would have without the save.
    extra: a dict of JSON values kept under "extra" (for the caller, e.g. the CLI).
    extra_arrays: {name: array} of plain numeric arrays kept beside it; names are
        lower-case identifiers, the arrays 1-D or 2-D.
    """
    from fastmlp._base import BaseMLP

    kind = _kind_of(obj)
    if kind is None:
        net, section, kind_name = obj, None, "MLP"
    else:
        net, section = kind.to_parts(obj)
        kind_name = kind.name
        if not isinstance(net, BaseMLP):
            raise TypeError(f"kind {kind_name}: to_parts must return a fastmlp network")
    twin = "reference" if type(net).__module__ == "fastmlp.reference" else "fastmlp"
    classes = getattr(obj, "classes_", None)
    if classes is None:
        classes = getattr(net, "classes_", None)
    names = getattr(obj, "feature_names_in_", None)
    if names is None:
        names = getattr(net, "feature_names_in_", None)
    header = {"format": FORMAT, "version": VERSION, "kind": kind_name}
    header.update(_network_header(net, twin, training_state))
    header["classes"] = _classes_to_json(classes)
    header["feature_names"] = None if names is None else [str(s) for s in names]
    if header["feature_names"] is not None and len(header["feature_names"]) != net.layer_sizes[0]:
        raise ModelFileError(f"feature_names_in_ has {len(names)} names; the model takes "
                             f"{net.layer_sizes[0]} features")
    header["estimator"] = _json_value(section, "estimator")
    header["extra"] = _json_value(dict(extra or {}), "extra")
    arrays = {"params": np.ascontiguousarray(net.params),
              "loss_curve": np.asarray(net.loss_curve_, dtype=np.float64)}
    if training_state:
        arrays.update(velocity=net._velocity, adam_m=net._adam_m, adam_v=net._adam_v)
    declared = {}
    for name, a in (extra_arrays or {}).items():
        a = np.asarray(a)
        if not _EXTRA_NAME.match(name) or a.dtype.name not in _EXTRA_DTYPES or a.ndim not in (1, 2):
            raise ModelFileError(f"extra array {name!r} must have a lower-case name, a plain numeric "
                                 f"dtype and 1 or 2 dimensions; got {a.dtype} of shape {a.shape}")
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
        declared[name] = {"dtype": a.dtype.name, "shape": list(a.shape)}
        arrays["x_" + name] = a
    header["extra_arrays"] = declared
    for name in ("params", "velocity", "adam_m", "adam_v"):
        if name in arrays:
            arrays[name] = np.ascontiguousarray(arrays[name], dtype=net.dtype.newbyteorder("<"))
    text = json.dumps(header, indent=1, allow_nan=False).encode("utf-8")
    if len(text) > MAX_HEADER_BYTES:
        raise ModelFileError(f"the header would take {len(text)} bytes; at most {MAX_HEADER_BYTES} are allowed")

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            info = zipfile.ZipInfo(HEADER, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            zf.writestr(info, text)
            for name, a in arrays.items():
                _write_npy(zf, name + ".npy", a)

    atomic_write(path, write)
    return os.fspath(path)


def atomic_write(path, write):
    """Call write(file) on a temporary file beside `path`, fsync it, rename it to `path`.

    Ctrl-C at any moment leaves `path` as it was (or, after the rename, the new
    file) and removes the temporary file: its name is chosen before it is
    created, so the clean-up knows it even when the interrupt lands inside the
    call that creates it. A KeyboardInterrupt that zipfile's own clean-up turned
    into another error is raised as a KeyboardInterrupt again."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    # 96 random bits: no other file has this name (and os.open below refuses one that does)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(12)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as error:
        _remove_temporary(tmp)
        if not isinstance(error, KeyboardInterrupt) and _caused_by_interrupt(error):
            raise KeyboardInterrupt from error
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _remove_temporary(tmp):
    for _ in range(3):  # a second Ctrl-C during the clean-up: finish it first
        try:
            os.unlink(tmp)
            return
        except OSError:  # never created, already renamed, or not ours to remove
            return
        except KeyboardInterrupt:
            continue


def _caused_by_interrupt(error):
    """Whether a KeyboardInterrupt is in the chain of exceptions behind `error`
    (e.g. zipfile refusing to close an archive whose member write was interrupted)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


# ----------------------------------------------------------------- load
@dataclass
class ModelFile:
    """A checked model file: its header and arrays (nothing built yet)."""

    path: str
    header: dict
    arrays: dict = field(default_factory=dict)

    @property
    def extra(self):
        return self.header["extra"]

    def extra_array(self, name):
        return self.arrays["x_" + name]

    def network(self, twin=None):
        """The network as a `fastmlp.MLP` (or the twin named: "fastmlp",
        "reference", or "saved" for the one recorded in the file)."""
        h = self.header
        if twin == "saved":
            twin = h["twin"]
        if twin in (None, "fastmlp"):
            from fastmlp.core import MLP
        elif twin == "reference":
            from fastmlp.reference import MLP
        else:
            raise ValueError(f"twin must be 'fastmlp', 'reference' or 'saved'; got {twin!r}")
        a = h["architecture"]
        try:
            net = MLP(a["layer_sizes"], a["activation"], a["output"], bias=a["bias"],
                      reduction=a["reduction"], dtype=h["dtype"], random_state=h["random_state"])
            net.set_params_vector(self.arrays["params"])
        except ValueError as e:
            raise ModelFileError(f"{self.path}: {e}") from None
        net.loss_curve_ = [float(v) for v in self.arrays["loss_curve"]]
        net.n_iter_ = h["n_iter"]
        net.t_ = h["t"]
        t = h["training"]
        if t is not None:
            try:
                net._settings = net._check_optimizer(t["optimizer"], t["lr"], t["momentum"], t["nesterov"],
                                                     t["alpha"], t["beta_1"], t["beta_2"], t["epsilon"])
            except ValueError as e:
                raise ModelFileError(f"{self.path}: header field 'training': {e}") from None
        s = h["state"]
        if s is not None:
            for name in STATE_ARRAYS:
                getattr(net, "_" + name)[...] = self.arrays[name]
            net._adam_step = s["adam_step"]
            if s["optimizer"] is not None:
                net._optimizer_name = s["optimizer"]
            net._rng = decode_rng(s["rng"])
        if h["classes"] is not None:
            net.classes_ = np.array(h["classes"])
        if h["feature_names"] is not None:
            net.feature_names_in_ = np.array(h["feature_names"], dtype=object)
        return net

    def model(self, twin=None):
        """The saved object: an MLP, or an object of the registered kind."""
        net = self.network(twin)
        kind = self.header["kind"]
        if kind == "MLP":
            return net
        try:
            return _KINDS[kind].from_parts(net, self.header["estimator"])
        except (ValueError, TypeError, KeyError) as e:
            raise ModelFileError(f"{self.path}: bad {kind} section: {e}") from None


def load(path, *, twin=None):
    """Read a model file written by `save` (or `model.save`, or `fastmlp train`).

    Returns a `fastmlp.MLP` (twin="reference" gives `fastmlp.reference.MLP`,
    twin="saved" the twin that wrote the file), or an object of the file's kind.
    Raises ModelFileError, with the reason, for anything that is not a valid file.
    """
    return read(path).model(twin)


def read(path):
    """Check a model file completely and return its header and arrays (a ModelFile)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            return _read(path, f, size)
    except ModelFileError:
        raise
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise ModelFileError(open_error(path, e)) from None
    except zipfile.BadZipFile as e:
        raise ModelFileError(f"{path}: not a valid model file (broken zip: {e})") from None
    except (OSError, EOFError, ValueError, struct.error, NotImplementedError, RuntimeError,
            OverflowError, KeyError, IndexError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: not a valid model file ({type(e).__name__}: {e})") from None


def _fail(path, message):
    raise ModelFileError(f"{path}: {message}")


def _check_directory(path, zf, size):
    infos = zf.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        _fail(path, f"duplicate members {dup}")
    if not names or names[0] != HEADER:
        _fail(path, f"the first member must be {HEADER}; this file starts with {names[:1]}")
    if len(infos) > 64:
        _fail(path, f"{len(infos)} members; a model file has at most a few dozen")
    total = 0
    spans = []
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED:
            _fail(path, f"member {i.filename} is compressed (method {i.compress_type}); "
                        "model files store members uncompressed")
        if i.flag_bits & 0x1:
            _fail(path, f"member {i.filename} is encrypted")
        if i.compress_size != i.file_size:
            _fail(path, f"member {i.filename} declares {i.file_size} bytes but stores {i.compress_size}")
        start = i.header_offset
        end = start + 30 + len(i.orig_filename.encode("utf-8")) + i.compress_size
        if start < 0 or end > size:
            _fail(path, f"member {i.filename} ({i.file_size} bytes) reaches past the end of the "
                        f"file ({size} bytes): the file is truncated or corrupt")
        spans.append((start, end, i.filename))
        total += i.file_size
    if total > size:
        _fail(path, f"members declare {total} bytes in a file of {size}")
    spans.sort()
    for (s0, e0, n0), (s1, _, n1) in zip(spans, spans[1:]):
        if e0 > s1:
            _fail(path, f"members {n0} and {n1} overlap")
    return {i.filename: i for i in infos}


def _read(path, f, size):
    with zipfile.ZipFile(f) as zf:
        infos = _check_directory(path, zf, size)
        hinfo = infos[HEADER]
        if hinfo.file_size > MAX_HEADER_BYTES:
            _fail(path, f"header of {hinfo.file_size} bytes; at most {MAX_HEADER_BYTES} are allowed")
        with zf.open(hinfo) as m:
            raw = m.read(hinfo.file_size + 1)
        header = _parse_header(path, raw)
        expected = _expected_arrays(path, header)
        wanted = {name + ".npy" for name in expected} | {HEADER}
        missing = sorted(wanted - set(infos))
        extra = sorted(set(infos) - wanted)
        if missing:
            _fail(path, f"missing members {missing}")
        if extra:
            _fail(path, f"unexpected members {extra}")
        # every size first, then read
        for name, (dtype, shape) in expected.items():
            info = infos[name + ".npy"]
            data_bytes = dtype.itemsize * math.prod(shape)
            if not data_bytes < info.file_size <= data_bytes + 128 + MAX_NPY_HEADER:
                _fail(path, f"member {name}.npy has {info.file_size} bytes; an array of {dtype.name} "
                            f"with shape {tuple(shape)} takes {data_bytes} plus a small header")
        arrays = {name: _read_npy(path, zf, infos[name + ".npy"], dtype, shape)
                  for name, (dtype, shape) in expected.items()}
    _check_values(path, header, arrays)
    return ModelFile(path, header, arrays)


def _read_npy(path, zf, info, dtype, shape):
    name = info.filename
    with zf.open(info) as m:
        try:
            version = npy_format.read_magic(m)
            if version == (1, 0):
                got_shape, fortran, got_dtype = npy_format.read_array_header_1_0(m, MAX_NPY_HEADER)
            elif version == (2, 0):
                got_shape, fortran, got_dtype = npy_format.read_array_header_2_0(m, MAX_NPY_HEADER)
            else:
                _fail(path, f"member {name}: .npy version {version} is not supported")
        except ModelFileError:
            raise
        except (ValueError, SyntaxError, TypeError) as e:
            _fail(path, f"member {name}: bad .npy header ({e})")
        if got_dtype.hasobject or got_dtype.kind not in "biuf":
            _fail(path, f"member {name} holds {got_dtype} data; model files hold plain numbers only")
        if got_dtype != dtype.newbyteorder("<") or tuple(got_shape) != tuple(shape) or fortran:
            _fail(path, f"member {name} holds {got_dtype.str} of shape {tuple(got_shape)}"
                        f"{' (Fortran order)' if fortran else ''}; expected {dtype.newbyteorder('<').str} "
                        f"of shape {tuple(shape)}")
        count = math.prod(shape)
        if m.tell() + count * dtype.itemsize != info.file_size:
            _fail(path, f"member {name}: {info.file_size - m.tell()} data bytes after the .npy header; "
                        f"the shape needs {count * dtype.itemsize}")
        out = np.empty(count, dtype=dtype.newbyteorder("<"))
        view = memoryview(out).cast("B")
        done = 0
        while done < len(view):
            n = m.readinto(view[done:])
            if not n:
                _fail(path, f"member {name} is truncated")
            done += n
        if m.read(1):  # also makes zipfile check the CRC
            _fail(path, f"member {name} is longer than its .npy header says")
    return out.astype(dtype, copy=False).reshape(shape)


# ------------------------------------------------------- header checks
class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, where, message):
        _fail(self.path, f"header field '{where}' {message}")

    def fields(self, obj, where, required, optional=()):
        if not isinstance(obj, dict):
            self.fail(where, f"must be an object; got {type(obj).__name__}")
        missing = [k for k in required if k not in obj]
        unknown = [k for k in obj if k not in required and k not in optional]
        if missing:
            _fail(self.path, f"header {where or 'top level'} is missing {missing}")
        if unknown:
            _fail(self.path, f"header {where or 'top level'} has unknown fields {unknown}")
        return obj

    def int(self, value, where, low=0, high=2**63 - 1):
        if type(value) is not int or not low <= value <= high:
            self.fail(where, f"must be an integer in [{low}, {high}]; got {value!r:.80}")
        return value

    def real(self, value, where, low=-math.inf, high=math.inf):
        if type(value) not in (int, float) or not (math.isfinite(value) and low <= value <= high):
            self.fail(where, f"must be a finite number in [{low}, {high}]; got {value!r:.80}")
        return value

    def choice(self, value, where, choices):
        if not isinstance(value, str) or value not in choices:
            self.fail(where, f"must be one of {list(choices)}; got {value!r:.80}")
        return value

    def bool(self, value, where):
        if type(value) is not bool:
            self.fail(where, f"must be true or false; got {value!r:.80}")
        return value

    def strings(self, value, where, count, max_len=10_000):
        if not isinstance(value, list) or len(value) != count:
            self.fail(where, f"must be a list of {count} strings")
        for s in value:
            if not isinstance(s, str) or len(s) > max_len:
                self.fail(where, f"must hold strings of at most {max_len} characters")
        return value


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    return dict(pairs)


def _reject_constant(name):
    raise ValueError(f"{name} is not a valid JSON number")


def _parse_header(path, raw):
    from fastmlp._base import HIDDEN_ACTIVATIONS, OPTIMIZERS, OUTPUTS, REDUCTIONS

    try:
        text = raw.decode("utf-8")
        header = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        _fail(path, f"{HEADER} is not valid JSON: {e}")
    c = _Checker(path)
    if not isinstance(header, dict):
        _fail(path, f"{HEADER} must hold a JSON object")
    if header.get("format") != FORMAT:
        _fail(path, f"not a fastmlp model file (format {header.get('format')!r:.60}, expected {FORMAT!r})")
    version = header.get("version")
    if type(version) is not int or version != VERSION:
        _fail(path, f"format version {version!r:.40} is not supported; this fastmlp reads version {VERSION}"
                    + (" (the file is newer: upgrade fastmlp)" if type(version) is int and version > VERSION else ""))
    c.fields(header, "", ("format", "version", "kind", "twin", "architecture", "dtype", "random_state",
                          "training", "n_iter", "t", "loss_curve_length", "state", "classes",
                          "feature_names", "estimator", "extra", "extra_arrays"))
    kind = header["kind"]
    if not isinstance(kind, str):
        c.fail("kind", f"must be a string; got {type(kind).__name__}")
    if kind in _KIND_MODULES and kind not in _KINDS:
        import importlib

        try:
            importlib.import_module(_KIND_MODULES[kind])
        except ImportError as e:
            _fail(path, f"a {kind} file needs {_KIND_MODULES[kind]}, which cannot be imported ({e})")
    if kind != "MLP" and kind not in _KINDS:
        _fail(path, f"unknown kind {kind!r:.60}; this fastmlp knows {['MLP', *_KINDS]}")
    c.choice(header["twin"], "twin", ("fastmlp", "reference"))
    a = c.fields(header["architecture"], "architecture",
                 ("layer_sizes", "activation", "output", "bias", "reduction"))
    sizes = a["layer_sizes"]
    if not isinstance(sizes, list) or not 2 <= len(sizes) <= MAX_LAYERS:
        c.fail("architecture.layer_sizes", f"must list 2 to {MAX_LAYERS} sizes")
    for s in sizes:
        c.int(s, "architecture.layer_sizes", 1, 2**40)
    c.choice(a["activation"], "architecture.activation", HIDDEN_ACTIVATIONS)
    c.choice(a["output"], "architecture.output", OUTPUTS)
    if a["output"] == "softmax" and sizes[-1] < 2:
        c.fail("architecture.layer_sizes", "must end in 2 or more units for a softmax output")
    c.bool(a["bias"], "architecture.bias")
    c.choice(a["reduction"], "architecture.reduction", REDUCTIONS)
    c.choice(header["dtype"], "dtype", ("float32", "float64"))
    if header["random_state"] is not None:
        c.int(header["random_state"], "random_state", 0, 2**32 - 1)
    if header["training"] is not None:
        t = c.fields(header["training"], "training",
                     ("optimizer", "lr", "momentum", "nesterov", "alpha", "beta_1", "beta_2", "epsilon"))
        c.choice(t["optimizer"], "training.optimizer", OPTIMIZERS)
        c.real(t["lr"], "training.lr", 0.0)
        c.real(t["momentum"], "training.momentum", 0.0, 1.0)
        c.bool(t["nesterov"], "training.nesterov")
        c.real(t["alpha"], "training.alpha", 0.0)
        c.real(t["beta_1"], "training.beta_1", 0.0, 1.0)
        c.real(t["beta_2"], "training.beta_2", 0.0, 1.0)
        c.real(t["epsilon"], "training.epsilon", 0.0)
        if not t["lr"] > 0 or not t["epsilon"] > 0:
            c.fail("training", "must have lr > 0 and epsilon > 0")
        if max(t["momentum"], t["beta_1"], t["beta_2"]) >= 1:
            c.fail("training", "must have momentum, beta_1 and beta_2 below 1")
    c.int(header["n_iter"], "n_iter")
    c.int(header["t"], "t")
    c.int(header["loss_curve_length"], "loss_curve_length", 0, 2**40)
    if header["state"] is not None:
        s = c.fields(header["state"], "state", ("optimizer", "adam_step", "rng"))
        if s["optimizer"] is not None:
            c.choice(s["optimizer"], "state.optimizer", OPTIMIZERS)
        c.int(s["adam_step"], "state.adam_step")
        decode_rng(s["rng"])  # checked now; built again when the model is made
    classes = header["classes"]
    if classes is not None:
        n_out = sizes[-1]
        want = 2 if (a["output"] == "sigmoid" and n_out == 1) else n_out
        if not isinstance(classes, list) or len(classes) != want:
            c.fail("classes", f"must list {want} class labels for this {a['output']} output of {n_out} units")
        kinds = {type(v) for v in classes}
        if not (kinds <= {int} or kinds <= {int, float} or kinds <= {str} or kinds <= {bool}):
            c.fail("classes", "must hold labels all of one type: numbers, strings or booleans")
        for v in classes:
            if type(v) is int and not -2**63 <= v < 2**63:
                c.fail("classes", "holds an integer outside int64")
            if type(v) is float and not math.isfinite(v):
                c.fail("classes", "holds a number that is not finite")
            if type(v) is str and len(v) > 10_000:
                c.fail("classes", "holds a label longer than 10000 characters")
        if len(set(classes)) != len(classes):
            c.fail("classes", "holds the same label twice")
    if header["feature_names"] is not None:
        c.strings(header["feature_names"], "feature_names", sizes[0])
    if kind == "MLP" and header["estimator"] is not None:
        c.fail("estimator", "must be null for kind MLP")
    if not isinstance(header["extra"], dict):
        c.fail("extra", "must be an object")
    ex = header["extra_arrays"]
    if not isinstance(ex, dict) or len(ex) > 32:
        c.fail("extra_arrays", "must be an object of at most 32 entries")
    for name, spec in ex.items():
        if not _EXTRA_NAME.match(name):
            c.fail("extra_arrays", f"has a bad array name {name!r:.60}")
        c.fields(spec, f"extra_arrays.{name}", ("dtype", "shape"))
        c.choice(spec["dtype"], f"extra_arrays.{name}.dtype", _EXTRA_DTYPES)
        shape = spec["shape"]
        if not isinstance(shape, list) or len(shape) not in (1, 2):
            c.fail(f"extra_arrays.{name}.shape", "must list 1 or 2 sizes")
        for s in shape:
            c.int(s, f"extra_arrays.{name}.shape", 0, 2**40)
    return header


def n_params(layer_sizes, bias):
    return sum(i * o + (o if bias else 0) for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))


def _expected_arrays(path, header):
    """{member stem: (dtype, shape)} that the header implies."""
    a = header["architecture"]
    dtype = np.dtype(header["dtype"])
    p = n_params(a["layer_sizes"], a["bias"])
    expected = {"params": (dtype, (p,)),
                "loss_curve": (np.dtype(np.float64), (header["loss_curve_length"],))}
    if header["state"] is not None:
        for name in STATE_ARRAYS:
            expected[name] = (dtype, (p,))
    for name, spec in header["extra_arrays"].items():
        expected["x_" + name] = (np.dtype(spec["dtype"]), tuple(spec["shape"]))
    return expected


def _check_values(path, header, arrays):
    for name in ("params", "loss_curve", *STATE_ARRAYS):
        if name in arrays and not np.isfinite(arrays[name]).all():
            _fail(path, f"member {name}.npy holds NaN or infinity")
    if "adam_v" in arrays and (arrays["adam_v"] < 0).any():
        _fail(path, "member adam_v.npy holds negative second moments")
