"""Fault table (data, checkpoints, atomic writes).

Run:  OPENBLAS_NUM_THREADS=1 python benchmarks/fault_campaign.py [label]
With PYTHONPATH pointing at another copy of fastadmm it measures that copy (the "before" run uses an
export of the commit before the fixes).  Prints one line per case: case | outcome.
"""
import collections, gzip, io, json, os, resource, signal, struct, subprocess, sys, tempfile, time, warnings, zipfile
from pathlib import Path

resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))  # no case may take the machine's memory
import numpy as np
import fastadmm
from fastadmm import data as D, train_admm
from fastadmm import distributed as dist

label = sys.argv[1] if len(sys.argv) > 1 else "run"
tmp = Path(tempfile.mkdtemp(prefix=f"faults-{label}-"))
rows = []


def outcome(fn):
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            value = fn()
        ws = sorted({type(x.message).__name__ for x in w if not issubclass(x.category, (DeprecationWarning,))})
        return ("ok" + (f" [warns {','.join(ws)}]" if ws else ""), value)
    except BaseException as exc:  # noqa: BLE001 - the point is to see what escapes
        msg = " ".join(str(exc).split())
        return (f"{type(exc).__name__}: {msg[:110]}", None)


def case(name, fn, check=None):
    res, value = outcome(fn)
    if check is not None and value is not None:
        res += " | " + check(value)
    rows.append((name, res))
    print(f"{name:58s} | {res}", flush=True)


# ---------------------------------------------------------------- checkpoints
rng = np.random.default_rng(0)
X = rng.normal(size=(24, 4)); y = rng.integers(0, 3, 24)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:  # the full-batch method (train_admm's default became mini-batch ADMM during this work)
        res = train_admm(X, y, hidden=(3,), max_iter=2, random_state=0, X_test=X[:6], y_test=y[:6], batch_size=None)
    except TypeError:
        res = train_admm(X, y, hidden=(3,), max_iter=2, random_state=0, X_test=X[:6], y_test=y[:6])
good = res.save(tmp / "m.npz")
raw = good.read_bytes()


def same(a, b):
    ok = all(np.array_equal(u, v) for u, v in zip(a.weights, b.weights)) and len(a.weights) == len(b.weights)
    ok &= a.status == b.status and a.n_iter == b.n_iter and a.loss == b.loss and a.intercept == b.intercept
    ok &= np.array_equal(np.asarray(a.classes), np.asarray(b.classes))
    ok &= json.dumps(a.history, default=float) == json.dumps(b.history, default=float)
    ok &= same_state(a.state, b.state)
    return ok


def flip_campaign(xor):
    counts = collections.Counter()
    p = tmp / "flip.npz"
    for i in range(len(raw)):
        b = bytearray(raw); b[i] ^= xor; p.write_bytes(bytes(b))
        r, v = outcome(lambda: fastadmm.load(p))
        if r.startswith("ok"):
            counts["loaded, equal" if same(res, v) else "LOADED, DIFFERENT"] += 1
        else:
            kind = r.split(":")[0]
            counts[kind + (" (names file)" if kind == "CheckpointError" and "flip.npz" in r else "")] += 1
    return dict(counts)


def minibatch_campaign():
    global res, raw
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mb = train_admm(X, y, hidden=(3,), max_iter=2, random_state=0, X_test=X[:6], y_test=y[:6], batch_size=8, prox_metric="gram")
    except TypeError as exc:
        return {"n/a": str(exc)[:60]}
    saved = (res, raw)
    res, raw = mb, mb.save(tmp / "mb.npz").read_bytes()
    try:
        return flip_campaign(0xFF)
    finally:
        res, raw = saved


def same_state(a, b):
    if a.keys() != b.keys():
        return False
    for k in a:
        u, v = a[k], b[k]
        if isinstance(u, list) and u and isinstance(u[0], np.ndarray):
            if len(u) != len(v) or not all(np.array_equal(p, q) for p, q in zip(u, v)):
                return False
        elif isinstance(u, np.ndarray):
            if not np.array_equal(u, v):
                return False
        elif u != v:
            return False
    return True


case("checkpoint (mini-batch state): every single-byte flip (xor 0xFF)", minibatch_campaign, lambda c: str(c))
case(f"checkpoint: every single-byte flip (xor 0xFF), {len(raw)} bytes", lambda: flip_campaign(0xFF), lambda c: str(c))
case(f"checkpoint: every single-byte flip (xor 0x01), {len(raw)} bytes", lambda: flip_campaign(0x01), lambda c: str(c))


def rewrite(name, change):
    with np.load(good, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    meta = json.loads(str(arrays["meta"]))
    meta = change(meta, arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    path = tmp / name
    np.savez(path, **arrays)
    return path


case("checkpoint: meta is a JSON list", lambda: fastadmm.load(rewrite("list.npz", lambda m, a: [1, 2])))
case("checkpoint: meta without 'history'", lambda: fastadmm.load(rewrite("nohist.npz", lambda m, a: {k: v for k, v in m.items() if k != "history"})))
case("checkpoint: meta n_weights a string", lambda: fastadmm.load(rewrite("nw.npz", lambda m, a: {**m, "n_weights": "2"})))
def wrong_w(m, a):
    a["W1"] = np.zeros((3, 5)); return m
case("checkpoint: weights that do not chain (W1 3x5 after W0 3x5)", lambda: fastadmm.load(rewrite("chain.npz", wrong_w)))
def wrong_z(m, a):
    a["Z0"] = np.zeros((24, 7)); return m
case("checkpoint: state Z0 width != W0 rows", lambda: fastadmm.load(rewrite("z.npz", wrong_z)))
def wrong_lam(m, a):
    a["lam"] = np.zeros((20, 3)); return m
case("checkpoint: state lam rows != Z rows", lambda: fastadmm.load(rewrite("lam.npz", wrong_lam)))
def wrong_out(m, a):
    a["classes"] = np.arange(5); return m
case("checkpoint: 5 classes but 3 output units", lambda: fastadmm.load(rewrite("cls.npz", wrong_out)))


def inf_round_trip():
    r2 = fastadmm.load(good)
    r2.history["train_loss"][0] = float("inf"); r2.history["objective"][1] = float("-inf")
    back = fastadmm.load(r2.save(tmp / "inf.npz"))
    return back.history["train_loss"][0], back.history["objective"][1], back.history["test_accuracy"][0]
case("JSON: +inf, -inf, NaN in history through save/load", inf_round_trip, lambda v: f"values {v!r}")

# ---------------------------------------------------------------- IDX
def idx(arr, dims=None):
    arr = np.ascontiguousarray(arr, np.uint8); dims = arr.shape if dims is None else dims
    return struct.pack(">I", 0x800 | len(dims)) + struct.pack(f">{len(dims)}I", *dims) + arr.tobytes()

imgs = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8); labs = (np.arange(10) % 10).astype(np.uint8)
def put(name, payload, gz=True):
    p = tmp / (name + (".gz" if gz else "")); p.write_bytes(gzip.compress(payload) if gz else payload); return p

case("IDX .gz: header says 4,294,967,295 images", lambda: D.read_idx(put("n4g", idx(imgs, (2**32 - 1, 28, 28)))).shape)
case("IDX raw: header says 4,294,967,295 images", lambda: D.read_idx(put("n4g", idx(imgs, (2**32 - 1, 28, 28)), gz=False)).shape)
case("IDX .gz labels: header says 4,294,967,295 labels", lambda: D.read_idx(put("l4g", idx(labs, (2**32 - 1,)))).shape)
case("IDX .gz: dimensions 10 x 2^32-1 x 2^32-1", lambda: D.read_idx(put("huge", idx(imgs, (10, 2**32 - 1, 2**32 - 1)))).shape)
case("IDX .gz: header+ISIZE consistent mod 2^32, +2^28 images", lambda: D.read_idx(put("mod", idx(imgs, (10 + 2**28, 28, 28)))).shape)
case("IDX .gz shard: header says 4,294,967,295 images", lambda: dist.read_idx_shard(put("n4gs", idx(imgs, (2**32 - 1, 28, 28))), 0, 2).shape)

def folder(name, train=imgs, test=imgs, trl=labs, tel=labs, gz=True):
    f = tmp / name; f.mkdir()
    for fn, payload in [("train-images-idx3-ubyte", idx(train)), ("train-labels-idx1-ubyte", idx(trl)),
                        ("t10k-images-idx3-ubyte", idx(test)), ("t10k-labels-idx1-ubyte", idx(tel))]:
        p = f / (fn + (".gz" if gz else "")); p.write_bytes(gzip.compress(payload) if gz else payload)
    return f

case("folder: 0 training images and labels", lambda: D.read_mnist_folder(folder("zero", train=imgs[:0], trl=labs[:0])))
case("folder: 28x27 test images", lambda: D.read_mnist_folder(folder("w27", test=imgs[:, :, :27])), lambda m: f"X_train {m.X_train.shape}, X_test {m.X_test.shape}")
case("shard: 28x27 test images", lambda: dist.load_mnist_shard(folder("w27s", test=imgs[:, :, :27]), 0, 2), lambda s: f"X_test {s.data.X_test.shape}")
case("folder: label 200 in training labels", lambda: D.read_mnist_folder(folder("lab200", trl=np.full(10, 200, np.uint8))), lambda m: f"labels {sorted(set(m.y_train.tolist()))}")

def corrupt_deflate():
    f = folder("defl")
    p = f / "train-images-idx3-ubyte.gz"
    b = bytearray(p.read_bytes()); b[10:40] = b"\xff" * 30; p.write_bytes(bytes(b))
    return p
cp = corrupt_deflate()
case("shard reader: corrupt deflate stream (read_idx_shard)", lambda: dist.read_idx_shard(cp, 0, 2).shape)
case("shard reader: corrupt deflate stream (load_mnist_shard)", lambda: dist.load_mnist_shard(cp.parent, 0, 2))
case("read_idx: corrupt deflate stream", lambda: D.read_idx(cp).shape)

# ---------------------------------------------------------------- embedded fallback
def offline():
    m = D.load_mnist(mirrors=["http://127.0.0.1:9/"], cache_dir=tmp / "cache", progress=False, timeout=1)
    return m
case("load_mnist offline (embedded)", offline,
     lambda m: f"X_test {None if m.X_test is None else m.X_test.shape}; describe {len(m.describe())} chars, "
               f"{m.describe().count('http')} URLs")
def readme_example():
    from fastadmm import train_admm as ta
    m = D.load_mnist(mirrors=["http://127.0.0.1:9/"], cache_dir=tmp / "cache2", progress=False, timeout=1).select((0, 1))
    r = ta(m.X_train / 255.0, m.y_train, hidden=(100, 50, 10), loss="mse", max_iter=20, X_test=m.X_test / 255.0, y_test=m.y_test, random_state=0)
    return r.history["test_accuracy"][-1]
case("README Python example offline (its ADMM call, 20 iterations)", readme_example, lambda a: f"test accuracy {a:.3f}")

# ---------------------------------------------------------------- SIGKILL during a save
def sigkill():
    target = tmp / "killed" / "ck.npz"; target.parent.mkdir()
    code = ("import sys, time, numpy as np; from fastadmm._atomic import atomic_write\n"
            "def w(f):\n    f.write(b'x' * 1000000); f.flush(); print('writing', flush=True); time.sleep(60)\n"
            f"atomic_write({str(target)!r}, w)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    p.stdout.readline(); os.kill(p.pid, signal.SIGKILL); p.wait()
    after_kill = sorted(x.name for x in target.parent.iterdir())
    res.save(target)
    after_save = sorted(x.name for x in target.parent.iterdir())
    return f"after kill {len(after_kill)} files ({sum(n.endswith('.tmp') for n in after_kill)} .tmp); after next save {after_save}"
case("SIGKILL during atomic_write, then save again", sigkill, lambda s: s)

print("\nSUMMARY", label)
for name, r in rows:
    print(f"{name} | {r}")
