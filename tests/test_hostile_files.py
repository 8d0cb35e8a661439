"""Hostile model files: pickles that would run code, object arrays, headers that
claim huge shapes, zip bombs, and a seeded fuzz of thousands of truncated,
bit-flipped, spliced and structurally edited files. The loader must answer each
with a ModelFileError (or, for a change the format does not cover, load the
same valid model), in bounded memory, without hanging and without running
anything from the file.

tests/test_model_files.py has the individual refusals with their messages;
this file adds payloads that act, memory measurements and the fuzz counts.
Memory and fuzz runs are in subprocesses with timeouts."""
import io as stdio
import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import io
from fastmlp.io import ModelFileError


def trained_files(folder):
    """Two valid files: a fastmlp MLP with training state, classes, feature names
    and extra arrays; a float32 reference twin without state."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), np.arange(30) % 3
    a = fastmlp.MLP([4, 5, 3], "tanh", random_state=0)
    a.fit(X, y, epochs=2, batch_size=8, optimizer="adam")
    a.classes_ = np.array(["x", "y", "z"])
    a.feature_names_in_ = np.array(list("abcd"), dtype=object)
    first = os.path.join(folder, "state.fmlp")
    io.save(a, first, training_state=True, extra={"note": "hi"},
            extra_arrays={"order": np.arange(30), "scale": np.ones((2, 4), np.float32)})
    b = fastmlp.reference.MLP([4, 3, 2], "relu", "identity", dtype=np.float32, random_state=1)
    b.fit(X, rng.normal(size=(30, 2)), epochs=1, batch_size=10)
    second = os.path.join(folder, "plain.fmlp")
    io.save(b, second)
    return first, second


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    return trained_files(str(tmp_path_factory.mktemp("good")))


def members(data):
    with zipfile.ZipFile(stdio.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def rebuild(items, compress=zipfile.ZIP_STORED):
    buf = stdio.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compress) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return buf.getvalue()


def replace_member(data, name, payload):
    return rebuild([(n, payload if n == name else d) for n, d in members(data)])


# ---------------------------------------------------------------- pickles that act

class _CreatesAFile:
    """Unpickling this creates (truncates) the file at `path`: a harmless
    stand-in for a payload that runs a command."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def npy_bytes(array, allow_pickle=False):
    buf = stdio.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def pickle_payloads(good, marker):
    evil = _CreatesAFile(str(marker))
    raw = pickle.dumps(evil)
    header = members(good)[0][1]
    obj_array = np.empty(3, dtype=object)
    obj_array[:] = [evil, evil, evil]
    npz = stdio.BytesIO()
    np.savez(npz, params=obj_array)
    return {
        "object .npy as params": replace_member(good, "params.npy", npy_bytes(obj_array, allow_pickle=True)),
        "object .npy as loss_curve": replace_member(good, "loss_curve.npy", npy_bytes(obj_array, True)),
        "object .npy as an extra array": replace_member(good, "x_order.npy", npy_bytes(obj_array, True)),
        "raw pickle as params": replace_member(good, "params.npy", raw),
        "raw pickle as header": rebuild([("header.json", raw)] + members(good)[1:]),
        "raw pickle as the file": raw,
        "pickle protocol 0 as the file": pickle.dumps(evil, protocol=0),
        "pickle after a valid header": rebuild([("header.json", header), ("params.pkl", raw)]
                                               + members(good)[1:]),
        "npz of object arrays as the file": npz.getvalue(),
        "npy header saying <f8, pickle data": replace_member(
            good, "params.npy", npy_bytes(np.zeros(3))[:128] + raw),
    }


def test_pickle_payloads_never_run(tmp_path, good_files):
    good = open(good_files[0], "rb").read()
    marker = tmp_path / "pwned"
    payloads = pickle_payloads(good, marker)
    # the payload is real: unpickling it does create the file
    pickle.loads(pickle.dumps(_CreatesAFile(str(marker)))).close()
    assert marker.exists()
    marker.unlink()
    for name, data in payloads.items():
        path = tmp_path / "evil.fmlp"
        path.write_bytes(data)
        with pytest.raises(ModelFileError):
            io.load(path)
        with pytest.raises(ModelFileError):
            io.read(path)
        assert not marker.exists(), f"{name}: the payload ran"
    assert len(payloads) == 10


# ------------------------------------------------------- huge claims and zip bombs

def with_header(data, **changes):
    items = members(data)
    header = json.loads(items[0][1])
    header.update(changes)
    return rebuild([("header.json", json.dumps(header).encode())] + items[1:])


def npy_header_claiming(shape, descr="<f8"):
    buf = stdio.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def stored_member_claiming(data, size):
    """The first member's central directory entry edited to claim `size` bytes."""
    data = bytearray(data)
    start = data.find(b"PK\x01\x02")
    for offset in (20, 24):
        data[start + offset:start + offset + 4] = min(size, 2**32 - 1).to_bytes(4, "little")
    return bytes(data)


def overlapping_members(data):
    """A non-recursive zip bomb's trick (Fifield): every central directory entry
    points at the same local file, so one stored blob is read many times."""
    data = bytearray(data)
    entries = []
    at = data.find(b"PK\x01\x02")
    while at != -1:
        entries.append(at)
        at = data.find(b"PK\x01\x02", at + 4)
    first_local = int.from_bytes(data[entries[0] + 42:entries[0] + 46], "little")
    for entry in entries[1:]:
        data[entry + 42:entry + 46] = first_local.to_bytes(4, "little")
    return bytes(data)


def many_members(count):
    buf = stdio.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("header.json", b"{}")
        for i in range(count):
            zf.writestr(f"m{i}.npy", b"")
    return buf.getvalue()


def huge_cases(good):
    """name -> bytes: files whose naive reading would allocate gigabytes."""
    items = dict(members(good))
    header = json.loads(items["header.json"])
    arch = header["architecture"]
    zeros = np.zeros(10 * 2**20, np.uint8).tobytes()  # 10 MB of zeros
    return {
        "layer sizes of 1e6 x 1e6": with_header(good, architecture=dict(arch, layer_sizes=[10**6, 10**6, 3])),
        "layer sizes at the 2**40 limit": with_header(
            good, architecture=dict(arch, layer_sizes=[2**40, 2**40, 3])),
        "10000 layers of 1e6": with_header(good, architecture=dict(arch, layer_sizes=[10**6] * 10_000)),
        "loss curve of 2**40 entries": with_header(good, loss_curve_length=2**40),
        "extra array of 2**40 x 2**40": with_header(
            good, extra_arrays=dict(header["extra_arrays"],
                                    order={"dtype": "float64", "shape": [2**40, 2**40]})),
        "npy header claiming 1e11 floats": replace_member(good, "params.npy", npy_header_claiming((10**11,))),
        "npy header claiming 2**62 bytes": replace_member(good, "params.npy",
                                                          npy_header_claiming((2**59,), "<f8")),
        "member claiming 4 GB": stored_member_claiming(good, 2**32 - 2),
        "deflate bomb (10 MB of zeros)": rebuild(list(items.items())[:1] + [("params.npy", zeros)]
                                                 + list(items.items())[2:], zipfile.ZIP_DEFLATED),
        "bzip2 bomb (10 MB of zeros)": rebuild(list(items.items())[:1] + [("params.npy", zeros)]
                                               + list(items.items())[2:], zipfile.ZIP_BZIP2),
        "overlapping members": overlapping_members(good),
        "20000 members": many_members(20_000),
        "16 MB header of spaces": rebuild([("header.json", b" " * (16 * 2**20 + 1))]
                                          + list(items.items())[1:]),
        "deeply nested header": rebuild([("header.json", b"[" * 200_000 + b"]" * 200_000)]
                                        + list(items.items())[1:]),
        "header with a 100k-digit integer": rebuild([("header.json", items["header.json"].replace(
            b'"n_iter": 2', b'"n_iter": ' + b"9" * 100_000))] + list(items.items())[1:]),
    }


MEMORY_SCRIPT = textwrap.dedent("""
    import json, os, resource, sys, time
    import fastmlp
    from fastmlp import io
    folder, good = sys.argv[1], sys.argv[2]
    io.load(good)  # warm up: imports, first allocations
    def vm_kb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmSize"))
    # any attempt to allocate the claimed gigabytes now fails loudly (MemoryError)
    limit = (vm_kb() + 768 * 1024) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = {}
    for name in sorted(os.listdir(folder)):
        t = time.perf_counter()
        try:
            io.load(os.path.join(folder, name))
            outcome = "loaded"
        except io.ModelFileError as e:
            outcome = "ModelFileError"
        except BaseException as e:
            outcome = f"{type(e).__name__}: {str(e)[:200]}"
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start
        results[name] = {"outcome": outcome, "seconds": time.perf_counter() - t,
                         "maxrss_growth_mb": grown / 1024}
    print(json.dumps(results))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and RLIMIT_AS")
def test_huge_claims_and_zip_bombs_are_refused_in_flat_memory(tmp_path, good_files):
    good = open(good_files[0], "rb").read()
    cases = huge_cases(good)
    folder = tmp_path / "cases"
    folder.mkdir()
    names = {}
    for i, (name, data) in enumerate(cases.items()):
        names[f"{i:02d}.fmlp"] = name
        (folder / f"{i:02d}.fmlp").write_bytes(data)
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(folder), good_files[0]],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout)
    for file, r in results.items():
        assert r["outcome"] == "ModelFileError", (names[file], r)
    # memory stays flat: the biggest file here is ~16 MB (the header of spaces,
    # refused by its declared size before it is read); nothing else is allocated
    growth = max(r["maxrss_growth_mb"] for r in results.values())
    assert growth < 64, {names[f]: r for f, r in results.items()}
    assert len(results) == len(cases) == 15


# ------------------------------------------------------------------- the fuzz loop

FUZZ_SCRIPT = textwrap.dedent('''
    import io as stdio, json, os, random, resource, sys, zipfile
    import numpy as np
    import fastmlp
    from fastmlp import io

    folder, count_per_file = sys.argv[1], int(sys.argv[2])
    goods = [os.path.join(folder, name) for name in ("state.fmlp", "plain.fmlp")]
    HOSTILE = [None, True, False, -1, 0, 1, 2**31, 2**63, 2**64, -2**63 - 1, 1e308, -1e-308, 0.5,
               "", "x" * 10_000, "float16", "object", "<f8", "O", "__import__('os').system('true')",
               [], {}, [0] * 10_000, [[[[[]]]]], {"a": {"b": {"c": {}}}}, [2**40, 2**40],
               [1, -1], "MLPClassifier", "MLPRegressor", "Pipeline", "RandomState", "Generator"]
    BOUNDARY32 = [0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**16, 2**31]

    def members(data):
        with zipfile.ZipFile(stdio.BytesIO(data)) as zf:
            return [(i.filename, zf.read(i)) for i in zf.infolist()]

    def rebuild(items):
        buf = stdio.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in items:
                zf.writestr(name, data)
        return buf.getvalue()

    def paths(value, prefix=()):
        yield prefix
        if isinstance(value, dict):
            for k, v in value.items():
                yield from paths(v, prefix + (k,))
        elif isinstance(value, list) and len(value) < 50:
            for i, v in enumerate(value):
                yield from paths(v, prefix + (i,))

    def set_path(tree, path, value):
        if not path:
            return value
        node = tree
        for key in path[:-1]:
            node = node[key]
        if value is KeyError and isinstance(node, dict):
            del node[path[-1]]
        else:
            node[path[-1]] = None if value is KeyError else value
        return tree

    def mutate_raw(data, rng):
        data = bytearray(data)
        kind = rng.choice(["flip", "flips", "byte", "block", "insert", "delete", "truncate", "duplicate",
                           "swap"])
        n = len(data)
        if kind == "flip":
            i = rng.randrange(n); data[i] ^= 1 << rng.randrange(8)
        elif kind == "flips":
            for _ in range(rng.randint(2, 16)):
                i = rng.randrange(n); data[i] ^= 1 << rng.randrange(8)
        elif kind == "byte":
            data[rng.randrange(n)] = rng.choice([0, 0xFF, 0x7F, 0x80, 0x20, ord("{"), ord("P")])
        elif kind == "block":
            i = rng.randrange(n); k = rng.randint(1, 64); data[i:i + k] = os.urandom(min(k, n - i))
        elif kind == "insert":
            i = rng.randrange(n); data[i:i] = os.urandom(rng.randint(1, 64))
        elif kind == "delete":
            i = rng.randrange(n); del data[i:i + rng.randint(1, 64)]
        elif kind == "truncate":
            del data[rng.randrange(n):]
        elif kind == "duplicate":
            i = rng.randrange(n); k = rng.randint(1, 256); data[i:i] = data[i:i + k]
        else:
            i, j = sorted(rng.sample(range(n), 2)); k = min(rng.randint(1, 32), j - i)
            data[i:i + k], data[j:j + k] = data[j:j + k], data[i:i + k]
        return "raw " + kind, bytes(data)

    def mutate_zip(data, rng):
        """A field of a local header, central directory entry or end record."""
        data = bytearray(data)
        sig, fields = rng.choice([
            (b"PK\\x03\\x04", [(6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)]),
            (b"PK\\x01\\x02", [(8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (34, 2),
                              (38, 4), (42, 4)]),
            (b"PK\\x05\\x06", [(4, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2)])])
        spots = []
        at = data.find(sig)
        while at != -1:
            spots.append(at)
            at = data.find(sig, at + 4)
        at = rng.choice(spots)
        offset, width = rng.choice(fields)
        old = int.from_bytes(data[at + offset:at + offset + width], "little")
        new = rng.choice(BOUNDARY32 + [old + 1, old - 1, old * 2, old + 30]) % (1 << (8 * width))
        data[at + offset:at + offset + width] = new.to_bytes(width, "little")
        return "zip " + sig[2:].hex() + f"+{offset}", bytes(data)

    def mutate_header(data, rng):
        items = members(data)
        header = json.loads(items[0][1])
        path = rng.choice(list(paths(header)))
        value = rng.choice(HOSTILE + [KeyError])
        header = set_path(header, path, value) if path else rng.choice(HOSTILE)
        if rng.random() < 0.1 and isinstance(header, dict):
            header[rng.choice(["evil", "__class__", "pickle"])] = 1
        text = json.dumps(header).encode()
        return "header " + (str(path[0]) if path else "root"), rebuild([("header.json", text)] + items[1:])

    def mutate_npy(data, rng):
        items = members(data)
        index = rng.randrange(1, len(items))
        name, blob = items[index]
        text = blob[:128]
        choice = rng.choice(["shape", "descr", "fortran", "version", "data"])
        if choice == "shape":
            text = text.replace(b"'shape': (", b"'shape': (" + rng.choice(
                [b"10000000000, ", b"-1, ", b"0, ", b"3, ", b"2**40, "]), 1)
        elif choice == "descr":
            for d in (b"'<f8'", b"'<f4'", b"'<i8'", b"'<u4'", b"'|u1'", b"'|b1'", b"'<i4'"):
                text = text.replace(d, rng.choice([b"'|O' ", b"'>f8'", b"'<c16'", b"'<f2' ", b"'V8'  ",
                                                   b"'<U2'"]))
        elif choice == "fortran":
            text = text.replace(b"False", b"True ")
        elif choice == "version":
            text = text[:6] + bytes([rng.choice([0, 2, 3, 9]), 0]) + text[8:]
        else:
            blob = blob[:128] + bytes(rng.randrange(256) for _ in range(len(blob) - 128))
        items[index] = (name, text + blob[128:])
        return "npy " + choice, rebuild(items)

    try:  # a header may name an estimator kind: its module (and scikit-learn) loads once
        import fastmlp.estimators  # noqa: F401
    except ImportError:
        pass
    np.seterr(all="ignore")  # weights from fuzzed data may overflow in forward
    rng = random.Random(20261123)
    counts, unexpected = {}, []
    # the NumPy twin checks what loads: this run tests the loader, not the kernels
    originals = {p: io.load(p, twin="reference") for p in goods}
    start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    target = os.path.join(folder, "fuzzed.fmlp")
    for good in goods:
        data = open(good, "rb").read()
        for i in range(count_per_file):
            mutate = rng.choices([mutate_raw, mutate_zip, mutate_header, mutate_npy], [6, 2, 3, 1])[0]
            kind, fuzzed = mutate(data, rng)
            with open(target, "wb") as f:
                f.write(fuzzed)
            try:
                model = io.load(target, twin="reference")
            except io.ModelFileError:
                outcome = "refused"
            except BaseException as e:
                outcome = "UNEXPECTED"
                unexpected.append(f"{kind} of {os.path.basename(good)} #{i}: "
                                  f"{type(e).__name__}: {str(e)[:300]}")
            else:
                # loaded: must be a valid model; the change fell where the format
                # does not look (timestamps, attributes, padding)
                net = getattr(model, "_mlp", model)
                finite = bool(np.isfinite(net.params).all())
                same = (type(model) is type(originals[good]) and
                        np.array_equal(net.params, originals[good].params))
                try:
                    works = bool(np.isfinite(net.forward(np.zeros((1, net.layer_sizes[0])))).all())
                except ValueError as e:  # the documented refusal of overflowing outputs
                    if "overflowed" not in str(e):
                        raise
                    works = False
                if finite and same and works:
                    outcome = "loaded same"
                elif kind == "npy data" and finite:
                    # other finite weights in a well-formed file (the zip's CRC was
                    # recomputed): a different, valid model (its outputs may overflow)
                    outcome = "loaded other weights"
                else:
                    outcome = "loaded DIFFERENT"
                    unexpected.append(f"{kind} of {os.path.basename(good)} #{i}: loaded a different model")
            key = kind.split()[0] + " " + outcome
            counts[key] = counts.get(key, 0) + 1
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - start) / 1024
    print(json.dumps({"counts": counts, "unexpected": unexpected, "maxrss_growth_mb": growth}))
''')

FUZZ_CASES_PER_FILE = 1500


def test_fuzzed_files_are_refused_or_load_the_same_model(tmp_path, good_files):
    """3000 seeded mutations of two valid files (raw bytes, zip fields, header
    JSON, .npy headers): each is refused with a ModelFileError or, when the
    change falls where the format does not look, loads the very same model."""
    for path in good_files:
        (tmp_path / os.path.basename(path)).write_bytes(open(path, "rb").read())
    out = subprocess.run([sys.executable, "-c", FUZZ_SCRIPT, str(tmp_path), str(FUZZ_CASES_PER_FILE)],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    assert result["unexpected"] == []
    counts = result["counts"]
    assert sum(counts.values()) == 2 * FUZZ_CASES_PER_FILE
    for family in ("raw", "zip", "header", "npy"):  # every family was tried and did get refused
        assert counts.get(f"{family} refused", 0) > 100, counts
    # (zip fields the format does not use -- times, versions, attributes -- load the same model)
    assert result["maxrss_growth_mb"] < 64
    print(json.dumps(counts, sort_keys=True))  # the table's numbers (pytest -s shows them)


def test_exhaustive_truncation_of_a_small_file(tmp_path, good_files):
    """Every prefix of the small file (test_model_files.py samples 60)."""
    data = open(good_files[1], "rb").read()
    path = tmp_path / "t.fmlp"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            io.load(path)
    assert len(data) > 1000


@pytest.mark.parametrize("change", [
    dict(kind={"a": 1}), dict(kind=["MLP"]), dict(kind=None), dict(kind=7),
    dict(training={"optimizer": "adam", "lr": 0.01, "momentum": 0.0, "nesterov": False, "alpha": 0.0,
                   "beta_1": 0.9, "beta_2": 1.0, "epsilon": 1e-8}),
    dict(training={"optimizer": "sgd", "lr": 0.01, "momentum": 1, "nesterov": False, "alpha": 0.0,
                   "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}),
], ids=["kind dict", "kind list", "kind null", "kind int", "beta_2 of 1", "momentum of 1"])
def test_header_values_the_fuzz_found(tmp_path, good_files, change):
    """Found by the fuzz loop: an unhashable kind raised TypeError, and a
    momentum/beta of exactly 1 passed the header check but not the optimizer's."""
    path = tmp_path / "f.fmlp"
    path.write_bytes(with_header(open(good_files[0], "rb").read(), **change))
    with pytest.raises(ModelFileError, match=r"header field '(kind|training)'"):
        io.load(path)
