"""The Python package against the command line and onnxruntime's references.

Needs `pip install ./python` (the CI venv, `.ci/run`) and the `qmpc` binary of the same
tree (`target/release/qmpc`, or QMPC_BIN). The LeNet cases need ../shared/corpus: they
fail where it is missing unless QMPC_SKIP_SHARED=1 says to skip them.
"""

import json
import os
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

import qmpc

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHARED = os.path.join(ROOT, "..", "shared")
TINY = os.path.join(ROOT, "models", "tiny_mlp", "qop_s8_pt.onnx")
TINY_REF = os.path.join(ROOT, "models", "tiny_mlp", "ref", "qop_s8_pt")
LENET = os.path.join(SHARED, "corpus", "models", "lenet", "qdq_s8_pc.onnx")
LENET_REF = os.path.join(SHARED, "corpus", "models", "lenet", "ref", "qdq_s8_pc")


def qmpc_bin():
    path = os.environ.get("QMPC_BIN", os.path.join(ROOT, "target", "release", "qmpc"))
    assert os.path.exists(path), f"{path}: build it first (cargo build --release)"
    return path


def shared(path):
    if not os.path.exists(path):
        if os.environ.get("QMPC_SKIP_SHARED") == "1":
            pytest.skip(f"QMPC_SKIP_SHARED=1 and {path} is missing")
        pytest.fail(f"{path} is missing (../shared beside the repository; QMPC_SKIP_SHARED=1 skips)")
    return path


@pytest.fixture(scope="module")
def tiny():
    return qmpc.compile(TINY)


@pytest.fixture(scope="module")
def x_tiny():
    return np.load(os.path.join(TINY_REF, "input.npy"))


def test_clear_matches_onnxruntime(tiny, x_tiny):
    y = tiny.run(x_tiny)
    want = np.load(os.path.join(TINY_REF, "output_0.npy"))
    assert y.dtype == np.float32 and y.shape == want.shape
    assert (y.argmax(1) == want.argmax(1)).all()
    np.testing.assert_allclose(y, want, atol=1e-6)


@pytest.mark.parametrize("protocol,parties", [
    ("rep3", None), ("semi2k", 2), ("semi2k", 3), ("shamir", 3), ("fss", None),
    ("mal-rep3", None), ("spdz2k", 2),
])
def test_every_protocol_equals_clear(tiny, x_tiny, protocol, parties):
    clear = tiny.run(x_tiny)
    y = tiny.run(x_tiny, protocol=protocol, parties=parties)
    assert np.array_equal(y, clear)


def test_cost_equals_what_the_run_measures(tiny, x_tiny):
    c = tiny.cost(protocol="rep3", batch=len(x_tiny))
    y, stats = tiny.run(x_tiny, protocol="rep3", return_stats=True)
    assert c["rounds"] == stats["rounds"] > 0
    assert [p["bytes_sent"] for p in c["per_party"]] == [p["bytes_sent"] for p in stats["per_party"]]
    assert c["layers"] and "rounds" in c["text"]


def test_favouring_rounds_equals_clear_and_its_cost(tiny, x_tiny):
    clear = tiny.run(x_tiny)
    y, stats = tiny.run(x_tiny, protocol="rep3", favor="rounds", return_stats=True)
    assert np.array_equal(y, clear)
    c = tiny.cost(protocol="rep3", batch=len(x_tiny), favor="rounds")
    assert c["favor"] == stats["favor"] == "rounds"
    assert c["rounds"] == stats["rounds"]
    assert [p["bytes_sent"] for p in c["per_party"]] == [p["bytes_sent"] for p in stats["per_party"]]
    with pytest.raises(qmpc.SetupError, match="no choice between rounds and bytes"):
        tiny.run(x_tiny, protocol="semi2k", favor="rounds")
    with pytest.raises(qmpc.SetupError, match="favor must be"):
        tiny.cost(protocol="rep3", favor="latency")


def test_inputs_by_name_list_or_array(tiny, x_tiny):
    name = tiny.inputs[0]["name"]
    a = tiny.run(x_tiny)
    assert np.array_equal(tiny.run({name: x_tiny}), a)
    assert np.array_equal(tiny.run([x_tiny]), a)
    # numpy's default float64 is cast to the model's float32; strides do not matter.
    assert np.array_equal(tiny.run(x_tiny.astype(np.float64)), a)
    assert np.array_equal(tiny.run(np.asfortranarray(x_tiny)), a)
    # A nested list for a one-input model is one array, not several inputs.
    assert np.array_equal(tiny.run(x_tiny.tolist()), a)


def test_save_load_and_bytes(tiny, x_tiny, tmp_path):
    path = tmp_path / "m.qmpc"
    tiny.save(path)
    assert (tmp_path / "m.qmpw").exists()
    again = qmpc.load(path)
    assert again.digest == tiny.digest
    assert np.array_equal(again.run(x_tiny, protocol="rep3"), tiny.run(x_tiny))
    # The public program alone (what the other parties get) cannot run: no weights.
    public = qmpc.Program.from_bytes(tiny.to_bytes())
    assert public.secret_weights and public.weights_bytes() is None
    with pytest.raises(qmpc.SetupError, match="holds none"):
        public.run(x_tiny)
    assert qmpc.load(path, weights=False).weights_bytes() is None
    (tmp_path / "m.qmpw").unlink()
    assert qmpc.load(path, weights=False).digest == tiny.digest
    with pytest.raises(qmpc.ModelError, match="m.qmpw"):
        qmpc.load(path)
    with pytest.raises(qmpc.SetupError, match="no weights"):
        public.save(tmp_path / "p.qmpc")
    assert not (tmp_path / "p.qmpc").exists()
    whole = qmpc.Program.from_bytes(tiny.to_bytes(), tiny.weights_bytes())
    assert np.array_equal(whole.run(x_tiny), tiny.run(x_tiny))


def test_errors_are_one_line_of_their_kind(tiny, x_tiny, tmp_path):
    cases = [
        (qmpc.InputError, lambda: tiny.run(x_tiny[:, :5], protocol="rep3"),
         "has shape [8, 5], the model takes float32 [N, 64]"),
        (qmpc.InputError, lambda: tiny.run(x_tiny.astype(np.complex64)), "complex64"),
        (qmpc.SetupError, lambda: tiny.run(x_tiny, protocol="rot13"), "unknown protocol"),
        (qmpc.SetupError, lambda: tiny.run(x_tiny, protocol="rep3", data_owner=7), "data owner"),
        (qmpc.SetupError, lambda: tiny.cost(protocol="semi2k", parties=1), "parties"),
        (qmpc.ModelError, lambda: qmpc.compile(b"not onnx"), "not a valid ONNX"),
        (qmpc.ModelError, lambda: qmpc.compile(tmp_path / "absent.onnx"), "cannot read"),
        (qmpc.ModelError, lambda: qmpc.Program.from_bytes(b"\x00" * 40), "not a valid qmpc program"),
    ]
    for kind, call, words in cases:
        with pytest.raises(kind) as e:
            call()
        msg = str(e.value)
        assert words in msg and "\n" not in msg, msg
        assert isinstance(e.value, qmpc.Error)


def test_the_gil_is_released_while_parties_run():
    prog = qmpc.compile(shared(LENET))
    x = np.load(os.path.join(LENET_REF, "input.npy"))[:8]
    done = []
    t = threading.Thread(target=lambda: done.append(prog.run(x, protocol="rep3")))
    t.start()
    spins = 0
    while t.is_alive():
        spins += 1
    t.join()
    assert done and spins > 1000, spins


def test_lenet_rep3_equals_the_command_line(tmp_path):
    model = shared(LENET)
    x = np.load(os.path.join(LENET_REF, "input.npy"))
    inp = tmp_path / "x.npy"
    np.save(inp, x)
    out = tmp_path / "y.npy"
    subprocess.run(
        [qmpc_bin(), "run", model, "--protocol", "rep3", "--input", str(inp), "--output", str(out)],
        check=True,
    )
    start = time.time()
    y = qmpc.compile(model).run(x, protocol="rep3")
    print(f"LeNet rep3 batch {len(x)}: {time.time() - start:.2f} s from qmpc.compile")
    assert np.array_equal(y, np.load(out))
    want = np.load(os.path.join(LENET_REF, "output_0.npy"))
    assert (y.argmax(1) == want.argmax(1)).all()


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_parties_over_tls_equal_the_local_run(tiny, x_tiny, tmp_path):
    keys = [qmpc.keygen(i, tmp_path / "keys") for i in range(3)]
    assert all(k["fingerprint"].startswith("sha256:") for k in keys)
    with pytest.raises(qmpc.SetupError, match="exists"):
        qmpc.keygen(0, tmp_path / "keys")
    ports = free_ports(3)
    config = tmp_path / "parties.toml"
    config.write_text(
        'protocol = "rep3"\nio_timeout_s = 20\n'
        + "".join(
            f'[[party]]\nid = {i}\naddress = "127.0.0.1:{p}"\ncertificate = "{k["certificate"]}"\n'
            for i, (p, k) in enumerate(zip(ports, keys))
        )
    )
    public = qmpc.Program.from_bytes(tiny.to_bytes())
    results = {}

    def party(i):
        prog = tiny if i == 0 else public  # the model owner alone holds the weights
        x = x_tiny if i == 1 else None  # the data owner alone holds the input
        try:
            results[i] = prog.party(config, i, x, key=keys[i]["key"], return_stats=True)
        except qmpc.Error as e:
            results[i] = e

    threads = [threading.Thread(target=party, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(not isinstance(r, Exception) for r in results.values()), results
    assert results[0][0] is None and results[2][0] is None
    y, stats = results[1]
    assert np.array_equal(y, tiny.run(x_tiny))
    assert stats["rounds"] == tiny.cost(protocol="rep3", batch=len(x_tiny))["rounds"]


def test_only_the_model_owner_may_hold_the_weights(tiny, x_tiny, tmp_path):
    k = qmpc.keygen(1, tmp_path)
    config = tmp_path / "parties.toml"
    config.write_text(
        'protocol = "semi2k"\n'
        + "".join(
            f'[[party]]\nid = {i}\naddress = "127.0.0.1:{p}"\nfingerprint = "{k["fingerprint"]}"\n'
            for i, p in enumerate(free_ports(2))
        )
        + f'[dealer]\naddress = "127.0.0.1:{free_ports(1)[0]}"\nfingerprint = "{k["fingerprint"]}"\n'
    )
    start = time.time()
    with pytest.raises(qmpc.SetupError, match="not the model owner"):
        tiny.party(config, 1, x_tiny, key=k["key"])
    with pytest.raises(qmpc.SetupError, match="dealer must not"):
        tiny.dealer(config, key=k["key"])
    assert time.time() - start < 5  # refused before connecting


def test_a_party_alone_times_out_with_one_line(tiny, tmp_path):
    k = qmpc.keygen(0, tmp_path)
    ports = free_ports(3)
    config = tmp_path / "parties.toml"
    config.write_text(
        'protocol = "rep3"\nconnect_timeout_s = 1\nio_timeout_s = 1\n'
        + "".join(
            f'[[party]]\nid = {i}\naddress = "127.0.0.1:{p}"\nfingerprint = "{k["fingerprint"]}"\n'
            for i, p in enumerate(ports)
        )
    )
    start = time.time()
    with pytest.raises(qmpc.RunError) as e:
        tiny.party(config, 0, key=k["key"])
    assert time.time() - start < 20
    assert "\n" not in str(e.value) and "party" in str(e.value)


def test_training_is_bit_identical_across_protocols(tmp_path):
    data = np.load(shared(os.path.join(SHARED, "data", "digits.npz")))
    x, y = data["x_train"][:256], data["y_train"][:256]
    model = os.path.join(ROOT, "models", "train", "mlp_digits_init.onnx")
    clear, s1 = qmpc.train(model, x, y, protocol="clear", epochs=1, batch=128, lr=0.1,
                           momentum=0.9, test=(x[:128], y[:128]))
    rep3, s3 = qmpc.train(model, x, y, protocol="rep3", epochs=1, batch=128, lr=0.1,
                          momentum=0.9, test=(x[:128], y[:128]), output=tmp_path / "t.onnx")
    assert clear == rep3 and (tmp_path / "t.onnx").read_bytes() == rep3
    assert s1["test_correct"] == s3["test_correct"] and s3["rounds"] > 0
    with pytest.raises(qmpc.Error, match="lr|learning|optimizer"):
        qmpc.train(model, x, y, protocol="rep3", lr=0.1, optimizer="rmsprop")
    with pytest.raises(qmpc.SetupError, match="trunc"):
        qmpc.train(model, x, y, protocol="rep3", lr=0.1, trunc="exakt")


def test_from_torch(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed: from_torch untested here")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: from_torch untested here")
    import onnxruntime as ort

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 10)
    )
    # Calibration batches of another size than the example's (the export's batch is free).
    calib = [torch.randn(4, 1, 8, 8) for _ in range(4)]
    onnx_path = tmp_path / "q.onnx"
    prog = qmpc.from_torch(net, torch.randn(1, 1, 8, 8), calibration=calib, save_onnx=str(onnx_path))
    x = np.random.default_rng(1).standard_normal((16, 1, 8, 8)).astype(np.float32)
    y = prog.run(x, protocol="rep3")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"input": x})[0]
    assert y.shape == ref.shape
    assert (y.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert np.array_equal(y, prog.run(x))
