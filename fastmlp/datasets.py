"""Data for the `fastmlp` command: CSV, .npz, .npy, MNIST IDX files, bundled sets.

    load("data.csv", target="price")    a CSV with a header row
    load("data.npz")                    arrays X and y (or x/y, data/target)
    load("data.npy")                    one 2-D array; the target is its last column
    load("mnist:DIR")                   the MNIST IDX files in DIR (gzipped or not)
    load("mnist:DIR/t10k-images-idx3-ubyte.gz")   one images file and its labels
    load("iris")                        digits, iris, wine, breast_cancer (scikit-learn)

Every problem is a `DataError` whose message is one line naming the file and,
where there is one, the row and column: "data.csv: row 17, column 'age': 'abc'
is not a number". CSV rows are counted as lines of the file, the header being
row 1; array positions are numpy indices, X[16, 3].
"""

import csv
import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np

BUNDLED = ("digits", "iris", "wine", "breast_cancer")
MNIST_PREFIX = "mnist:"
X_KEYS = ("X", "x", "data", "features")
Y_KEYS = ("y", "Y", "target", "targets", "labels")


class DataError(ValueError):
    """Data that cannot be used; the message is one line naming file, row and column."""


@dataclass
class Dataset:
    """Features as float64 (n, d) and the target as read (numbers or strings).

    y: None, or 1-D (or 2-D, from arrays) numbers, or 1-D strings (CSV text that
    is not all numbers). y_text: for CSV, the target cells as written."""

    X: np.ndarray
    y: np.ndarray | None
    source: str
    feature_names: list | None = None
    target_name: str | None = None
    y_text: np.ndarray | None = None
    rows: np.ndarray | None = None  # CSV line number of each row

    def where(self, i):
        """Where sample i's target is, for messages: "data.csv: row 17, column 'y'"."""
        if self.rows is not None:
            return f"{self.source}: row {int(self.rows[i])}, column {self.target_name!r}"
        name = self.target_name or "y"
        return f"{self.source}: {name}[{i}]"

    @property
    def y_numeric(self):
        return self.y is not None and self.y.dtype.kind in "biuf"


def describe_sources():
    return (".csv (header row), .npz (X and y), .npy (2-D, target last), mnist:DIR "
            f"(IDX files) or one of {', '.join(BUNDLED)}")


def load(spec, *, target=None, features=None, n_features=None, need_target=True, split="train"):
    """Read `spec` (see the module docstring).

    target: the target column's name (CSV; default: the last column), its index
        (.npy; default: the last column) or the y array's key (.npz).
    features: for CSV, the feature columns to take by name (a model's), in order.
    n_features: the width a model expects; a .npy that wide has no target column.
    need_target: whether a missing target is an error (training, evaluation).
    split: which MNIST files a directory gives: "train" or "test" (t10k).
    """
    spec = os.fspath(spec)
    if spec.startswith(MNIST_PREFIX):
        return load_mnist(spec[len(MNIST_PREFIX):], split=split)
    if spec in BUNDLED and not os.path.exists(spec):
        return load_bundled(spec)
    lower = spec.lower()
    if lower.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz")):
        return load_csv(spec, target=target, features=features, need_target=need_target)
    if lower.endswith(".npz"):
        return load_npz(spec, target=target, need_target=need_target)
    if lower.endswith(".npy"):
        return load_npy(spec, target=target, n_features=n_features, need_target=need_target)
    if os.path.isdir(spec):
        raise DataError(f"{spec}: a directory; for MNIST IDX files write mnist:{spec}")
    raise DataError(f"{spec}: unknown kind of data; give {describe_sources()}")


# ------------------------------------------------------------------ CSV
def open_error(path, error):
    """One line for an OSError met opening `path`."""
    if isinstance(error, FileNotFoundError):
        return f"{path}: no such file"
    if isinstance(error, IsADirectoryError):
        return f"{path}: is a directory, not a file"
    if isinstance(error, PermissionError):
        return f"{path}: permission denied"
    return f"{path}: cannot read ({error.strerror or error})"


def _open_text(path):
    try:
        if path.lower().endswith(".gz"):
            return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as e:
        raise DataError(open_error(path, e)) from None


def _delimiter(path, first_line):
    if path.lower().endswith((".tsv", ".tsv.gz")):
        return "\t"
    counts = {d: first_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _cell_problem(text):
    """Why a CSV cell is not a usable number (None if it is one)."""
    s = text.strip()
    if not s:
        return "is empty (a number is needed)"
    try:
        v = float(s)
    except ValueError:
        return f"{_quote(s)} is not a number"
    if not math.isfinite(v):
        return f"{_quote(s)} is not a finite number"
    return None


def _quote(s, limit=40):
    return repr(s if len(s) <= limit else s[:limit] + "...")


def _floats(cells, source, rows, names):
    """cells: list of rows of strings -> float64 array; on failure, the first bad cell."""
    try:
        out = np.array(cells, dtype=np.float64)
        if out.size == 0 or np.isfinite(out).all():
            return out.reshape(len(cells), len(names))
    except ValueError:
        pass
    for i, row in enumerate(cells):
        for j, cell in enumerate(row):
            problem = _cell_problem(cell)
            if problem:
                raise DataError(f"{source}: row {rows[i]}, column {names[j]!r}: {problem}")
    raise DataError(f"{source}: could not read the numbers")  # not reached


def load_csv(path, *, target=None, features=None, need_target=True):
    """A CSV file with a header row; features must be numbers, the target may be text."""
    try:
        with _open_text(path) as f:
            try:
                first = f.readline()
                f.seek(0)
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise DataError(f"{path}: cannot read ({e})") from None
            reader = csv.reader(f, delimiter=_delimiter(path, first))
            header, header_line, records, lines = None, 0, [], []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if header is None:
                    header, header_line = [c.strip() for c in row], reader.line_num
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}: row {reader.line_num} has {len(row)} fields; the header "
                                    f"(row {header_line}) has {len(header)}")
                records.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start})") from None
    except csv.Error as e:
        raise DataError(f"{path}: row {reader.line_num}: {e}") from None
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if header is None:
        raise DataError(f"{path}: empty file; a CSV needs a header row and data rows")
    names = [c if c else f"column {j + 1}" for j, c in enumerate(header)]
    seen = set()
    for c in names:
        if c in seen:
            raise DataError(f"{path}: row {header_line}: column {c!r} appears twice in the header")
        seen.add(c)
    if not records:
        raise DataError(f"{path}: no data rows after the header")
    index = {c: j for j, c in enumerate(names)}
    if target is not None and target not in index:
        raise DataError(f"{path}: no column {target!r}; the columns are {_list(names)}")
    if features is not None:
        missing = [c for c in features if c not in index]
        if missing:
            raise DataError(f"{path}: no column {missing[0]!r}, which the model needs; "
                            f"the columns are {_list(names)}")
        feature_cols = [index[c] for c in features]
    else:
        if target is None and need_target:
            target = names[-1]
        if target is not None and len(names) < 2:
            raise DataError(f"{path}: only one column, {names[0]!r}; there are no features besides the target")
        feature_cols = [j for j, c in enumerate(names) if c != target]
    feature_names = [names[j] for j in feature_cols]
    cells = [[r[j] for j in feature_cols] for r in records]
    X = _floats(cells, path, lines, feature_names)
    y = y_text = None
    if target is None and need_target:
        raise DataError(f"{path}: name the target column with --target")
    if target is not None:
        y_text = np.array([r[index[target]].strip() for r in records], dtype=str)
        for i, s in enumerate(y_text):
            if not s:
                raise DataError(f"{path}: row {lines[i]}, column {target!r}: the target is empty")
        try:
            y = np.array(y_text, dtype=np.float64)
            if not np.isfinite(y).all():
                i = int(np.flatnonzero(~np.isfinite(y))[0])
                raise DataError(f"{path}: row {lines[i]}, column {target!r}: "
                                f"{_quote(str(y_text[i]))} is not a finite number")
        except ValueError as e:
            if isinstance(e, DataError):
                raise
            y = y_text
    return Dataset(X, y, path, feature_names, target, y_text, np.array(lines))


def _list(names, limit=12):
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def first_non_number(values):
    """Index of the first string in `values` that is not a finite number, or None."""
    for i, s in enumerate(values):
        if _cell_problem(str(s)):
            return i
    return None


# -------------------------------------------------------- .npz and .npy
def _np_load(path, **kw):
    try:
        return np.load(path, allow_pickle=False, **kw)
    except OSError as e:
        raise DataError(open_error(path, e)) from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DataError(f"{path}: holds Python objects (pickled); only plain numeric arrays are read") from None
        raise DataError(f"{path}: not a valid NumPy file ({e})") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a valid NumPy file ({e})") from None


def _numeric_2d(a, source, name):
    if a.dtype.kind not in "biuf":
        raise DataError(f"{source}: {name} holds {a.dtype} values; numbers are needed")
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise DataError(f"{source}: {name} has shape {a.shape}; a 2-D array (samples, features) is needed")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise DataError(f"{source}: {name} has shape {a.shape}: no data")
    X = np.asarray(a, dtype=np.float64)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError(f"{source}: {name}[{i}, {j}] is {X[i, j]}, not a finite number")
    return X


def _checked_target(y, source, name, n):
    if y.dtype.kind not in "biufU":
        raise DataError(f"{source}: {name} holds {y.dtype} values; numbers or strings are needed")
    if y.ndim not in (1, 2) or y.shape[0] != n:
        raise DataError(f"{source}: {name} has shape {y.shape}; {n} rows are needed, one per sample")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y)
        if bad.any():
            pos = tuple(int(v) for v in np.argwhere(bad)[0])
            raise DataError(f"{source}: {name}[{', '.join(map(str, pos))}] is {y[pos]}, not a finite number")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    return y


def load_npz(path, *, target=None, need_target=True):
    with _np_load(path) as z:
        try:
            keys = list(z.files)
            xk = next((k for k in X_KEYS if k in keys), None)
            if xk is None:
                raise DataError(f"{path}: no features array; name it X (holds {_list(keys)})")
            yk = target if target is not None else next((k for k in Y_KEYS if k in keys), None)
            if target is not None and target not in keys:
                raise DataError(f"{path}: no array {target!r}; it holds {_list(keys)}")
            X = z[xk]
            y = z[yk] if yk is not None else None
        except DataError:
            raise
        except ValueError as e:
            if "pickle" in str(e).lower():
                raise DataError(f"{path}: holds Python objects (pickled); only plain numeric arrays "
                                "are read") from None
            raise DataError(f"{path}: not a valid NumPy file ({e})") from None
        except (OSError, EOFError, KeyError) as e:
            raise DataError(f"{path}: not a valid NumPy file ({e})") from None
    X = _numeric_2d(X, path, xk)
    if y is None:
        if need_target:
            raise DataError(f"{path}: no target array; name it y (holds {_list(keys)})")
        return Dataset(X, None, path)
    y = _checked_target(y, path, yk, len(X))
    return Dataset(X, y, path, target_name=yk)


def load_npy(path, *, target=None, n_features=None, need_target=True):
    a = _np_load(path, mmap_mode=None)
    if not isinstance(a, np.ndarray):
        raise DataError(f"{path}: not a single array")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path}: holds {a.dtype} values; numbers are needed")
    if a.ndim != 2:
        raise DataError(f"{path}: shape {a.shape}; a 2-D array (samples, features + target) is needed")
    width = a.shape[1]
    if target is None:
        if n_features is not None and width == n_features:
            col = None
        elif n_features is not None and width == n_features + 1 or need_target:
            col = width - 1
        else:
            col = None
    else:
        try:
            col = int(target)
        except ValueError:
            raise DataError(f"{path}: --target for a .npy file is a column number; got {target!r}") from None
        if not -width <= col < width:
            raise DataError(f"{path}: no column {col}; the array has {width}")
        col %= width
    if col is None:
        return Dataset(_numeric_2d(a, path, "X"), None, path)
    if width < 2:
        raise DataError(f"{path}: one column only; no features besides the target")
    y = _checked_target(np.ascontiguousarray(a[:, col]), path, f"column {col}", len(a))
    X = _numeric_2d(np.delete(a, col, axis=1), path, "X")
    return Dataset(X, y, path, target_name=f"column {col}")


# ---------------------------------------------------------------- MNIST
IDX_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path, ndim=None):
    """An IDX file (the MNIST format), gzipped or not, checked against its header."""
    try:
        with open(path, "rb") as raw:
            gz = raw.read(2) == b"\x1f\x8b"
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"{path}: {len(head)} bytes; too short for an IDX header")
            zero, code, dims = struct.unpack(">HBB", head)
            magic = int.from_bytes(head, "big")
            if zero != 0 or code not in IDX_TYPES:
                raise DataError(f"{path}: magic number {magic:#010x} is not an IDX header "
                                "(0x000008NN for unsigned bytes with NN dimensions)")
            if ndim is not None and dims != ndim:
                raise DataError(f"{path}: magic number {magic:#010x} says {dims} dimension(s); "
                                f"expected {ndim} ({0x800 + ndim:#010x})")
            if dims == 0:
                raise DataError(f"{path}: magic number {magic:#010x} says 0 dimensions")
            shape_bytes = f.read(4 * dims)
            if len(shape_bytes) < 4 * dims:
                raise DataError(f"{path}: truncated in its header ({dims} sizes expected)")
            shape = struct.unpack(f">{dims}I", shape_bytes)
            dtype = IDX_TYPES[code]
            count = math.prod(shape)
            need = count * dtype.itemsize
            if not gz:
                have = os.path.getsize(path) - 4 - 4 * dims
                if have != need:
                    raise DataError(f"{path}: {have} data bytes; the header's sizes {shape} need {need}"
                                    + (" (the file is truncated)" if have < need else ""))
            data = f.read(need)
            if len(data) < need:
                raise DataError(f"{path}: {len(data)} data bytes; the header's sizes {shape} need {need} "
                                "(the file is truncated)")
            if f.read(1):
                raise DataError(f"{path}: data continues past the {need} bytes the header's sizes {shape} give")
    except (gzip.BadGzipFile, EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: broken gzip data ({e})") from None
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def _find(directory, names):
    for name in names:
        for candidate in (name, name + ".gz"):
            p = os.path.join(directory, candidate)
            if os.path.isfile(p):
                return p
    return None


def mnist_files(path, split="train"):
    """(images, labels) paths for a directory + split, or for an images file."""
    if os.path.isdir(path):
        prefix = "train" if split == "train" else "t10k"
        images = _find(path, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"])
        labels = _find(path, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"])
        if images is None or labels is None:
            want = f"{prefix}-images-idx3-ubyte" if images is None else f"{prefix}-labels-idx1-ubyte"
            raise DataError(f"{path}: no {want} (or {want}.gz) in this directory")
        return images, labels
    if os.path.isfile(path):
        base = os.path.basename(path)
        for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1")):
            if a in base:
                labels = os.path.join(os.path.dirname(path), base.replace(a, b))
                if not os.path.isfile(labels):
                    raise DataError(f"{path}: its labels file {labels} does not exist")
                return path, labels
        raise DataError(f"{path}: not an MNIST images file (…-images-idx3-ubyte[.gz])")
    raise DataError(f"{path}: no such file or directory")


def load_mnist(path, split="train"):
    """MNIST (or Fashion-MNIST) IDX files: pixels scaled to [0, 1], integer labels."""
    images_path, labels_path = mnist_files(os.path.expanduser(path), split)
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{images_path if images.dtype != np.uint8 else labels_path}: "
                        "MNIST files hold unsigned bytes (type 0x08)")
    if len(images) != len(labels):
        raise DataError(f"{labels_path}: {len(labels)} labels for the {len(images)} images "
                        f"of {images_path}")
    if len(images) == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{images_path}: no images (shape {images.shape})")
    X = images.reshape(len(images), -1).astype(np.float64) / 255.0
    return Dataset(X, labels.astype(np.int64), labels_path, target_name="label")


# -------------------------------------------------------------- bundled
def load_bundled(name):
    """One of scikit-learn's bundled data sets (scikit-learn is optional)."""
    try:
        from sklearn import datasets as skd
    except ImportError:
        raise DataError(f"the bundled data set {name!r} comes with scikit-learn, which is not installed: "
                        "pip install scikit-learn") from None
    bunch = getattr(skd, f"load_{name}")()
    X = np.asarray(bunch.data, dtype=np.float64)
    names = np.asarray(bunch.target_names)
    y = names[bunch.target]
    feature_names = [str(s) for s in getattr(bunch, "feature_names", [])] or None
    if feature_names is not None and len(feature_names) != X.shape[1]:
        feature_names = None
    return Dataset(X, y, name, feature_names, "target")
