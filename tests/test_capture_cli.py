"""``quantlens activations`` and ``quantlens data cifar10`` through the real command line entry point.

The download tests serve archives from an http.server on 127.0.0.1 and never contact another host.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading

import numpy as np
import pytest

from quantlens.cli.main import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


# quantlens activations


def test_activations_prints_layers_and_prediction(capsys, cifar_dir):
    code, out, _ = run_cli(capsys, "activations", "resnet8_int8.onnx", "--input", "cifar10:3", "--data-dir", str(cifar_dir))
    assert code == 0
    assert "/stack1/conv2/Conv_output_0_QuantizeLinear_Output" in out
    assert "scale=" in out
    assert "label " in out
    assert "top-3" in out
    assert "NHWC 32x32x3" in out


def test_activations_values_option(capsys):
    code, out, _ = run_cli(capsys, "activations", "resnet8.onnx", "--input", "random:1", "--values", "2", "--layer", "logits")
    assert code == 0
    assert "first 2 values" in out


def test_activations_save_npz(capsys, tmp_path, cifar_dir):
    target = tmp_path / "acts.npz"
    code, _, _ = run_cli(
        capsys, "activations", "resnet8_int8.onnx", "--input", "cifar10:3", "--data-dir", str(cifar_dir),
        "--layer", "/stack1/conv2/Conv", "--layer", "/stack1/conv2/Conv_output_0_QuantizeLinear",
        "--save", str(target),
    )
    with np.load(target) as data:
        keys = set(data.files)
        codes = data["/stack1/conv2/Conv_output_0_QuantizeLinear_Output__codes"]
    assert code == 0
    assert keys == {
        "/stack1/conv2/Conv_output_0",
        "/stack1/conv2/Conv_output_0_QuantizeLinear_Output",
        "/stack1/conv2/Conv_output_0_QuantizeLinear_Output__codes",
        "__input__",
        "__output__",
    }
    assert codes.dtype == np.int8


def test_activations_list_layers(capsys):
    code, out, _ = run_cli(capsys, "activations", "resnet8_int8.pt", "--list-layers")
    assert code == 0
    assert "stack1.conv1" in out
    assert "quantized::conv2d_relu" in out


def test_activations_layer_index(capsys):
    code, out, _ = run_cli(capsys, "activations", "resnet8.pt", "--input", "random", "--layer-index", "1")
    assert code == 0
    assert "1 activation, statistics" in out


def test_activations_stats(capsys, cifar_dir):
    code, out, _ = run_cli(
        capsys, "activations", "resnet8.onnx", "--input", "cifar10:0-19", "--data-dir", str(cifar_dir),
        "--stats", "--batch-size", "10", "--layer", "/stack1/conv1/Conv", "--bins", "8",
    )
    assert code == 0
    assert "over 20 inputs" in out
    assert "top-1 accuracy" in out
    assert "histogram of /stack1/conv1/Conv_output_0" in out


@pytest.mark.parametrize(
    "spec, message",
    [("cifar10:10000", "out of range"), ("cifar10:abc", "invalid CIFAR-10 index"), ("random:x", "invalid random input")],
)
def test_activations_bad_input(capsys, cifar_dir, spec, message):
    code, _, err = run_cli(capsys, "activations", "resnet8.onnx", "--input", spec, "--data-dir", str(cifar_dir))
    assert_one_line_error(code, err)
    assert message in err


def test_activations_missing_data_dir(capsys, tmp_path):
    code, _, err = run_cli(capsys, "activations", "resnet8.onnx", "--input", "cifar10:3", "--data-dir", str(tmp_path / "absent"))
    assert_one_line_error(code, err)
    assert "quantlens data cifar10" in err


def test_activations_not_an_image(capsys, tmp_path):
    fake = tmp_path / "cat.png"
    fake.write_text("not an image")
    code, _, err = run_cli(capsys, "activations", "resnet8.onnx", "--input", str(fake))
    assert_one_line_error(code, err)
    assert "cat.png" in err


def test_activations_unknown_layer(capsys):
    code, _, err = run_cli(capsys, "activations", "resnet8.onnx", "--input", "random", "--layer", "nope")
    assert_one_line_error(code, err)
    assert "'nope'" in err


def test_activations_without_input(capsys):
    code, _, err = run_cli(capsys, "activations", "resnet8.onnx")
    assert_one_line_error(code, err)
    assert "--input is required" in err


def test_activations_help_states_units(capsys):
    with pytest.raises(SystemExit):
        main(["activations", "--help"])
    out = capsys.readouterr().out
    assert "scale * (q - zero_point)" in out
    assert "default: 5" in out


# quantlens data cifar10


def build_archive(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


@pytest.fixture
def archive_server():
    """Serve ``server.payload`` at any path on 127.0.0.1 and yield the server."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802  (http.server's method name)
            payload = self.server.payload  # type: ignore[attr-defined]
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.payload = b""  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: http.server.HTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/cifar-10-python.tar.gz"


def test_data_download_unpacks(capsys, tmp_path, archive_server):
    payload = build_archive({"cifar-10-batches-py/test_batch": b"data", "cifar-10-batches-py/batches.meta": b"meta"})
    archive_server.payload = payload
    md5 = hashlib.md5(payload).hexdigest()
    code, out, _ = run_cli(capsys, "data", "cifar10", "--dest", str(tmp_path), "--url", url_of(archive_server), "--md5", md5)
    assert code == 0
    assert (tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes() == b"data"
    assert "--data-dir" in out
    assert not list(tmp_path.glob("*.part"))


def test_data_download_skips_existing(capsys, tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"x")
    code, out, _ = run_cli(capsys, "data", "cifar10", "--dest", str(tmp_path), "--url", "http://127.0.0.1:9/none")
    assert code == 0
    assert "already" in out


def test_data_download_md5_mismatch(capsys, tmp_path, archive_server):
    archive_server.payload = build_archive({"cifar-10-batches-py/test_batch": b"data"})
    code, _, err = run_cli(capsys, "data", "cifar10", "--dest", str(tmp_path), "--url", url_of(archive_server), "--md5", "0" * 32)
    assert_one_line_error(code, err)
    assert "MD5" in err
    assert not (tmp_path / "cifar-10-batches-py").exists()


def test_data_download_rejects_escaping_member(capsys, tmp_path, archive_server):
    payload = build_archive({"cifar-10-batches-py/test_batch": b"data", "../escaped.txt": b"x"})
    archive_server.payload = payload
    dest = tmp_path / "dest"
    code, _, err = run_cli(
        capsys, "data", "cifar10", "--dest", str(dest), "--url", url_of(archive_server), "--md5", hashlib.md5(payload).hexdigest()
    )
    assert_one_line_error(code, err)
    assert "outside" in err
    assert not (tmp_path / "escaped.txt").exists()
    assert not (dest / "cifar-10-batches-py").exists()


def test_data_download_closed_port(capsys, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run_cli(capsys, "data", "cifar10", "--dest", str(tmp_path), "--url", f"http://127.0.0.1:{port}/a.tar.gz")
    assert_one_line_error(code, err)
    assert "download of" in err
    assert "failed" in err
    assert "by hand" in err


def test_data_download_rejects_other_scheme(capsys, tmp_path):
    code, _, err = run_cli(capsys, "data", "cifar10", "--dest", str(tmp_path), "--url", "ftp://127.0.0.1/a.tar.gz")
    assert_one_line_error(code, err)
    assert "invalid download URL" in err


def test_data_download_file_url(capsys, tmp_path):
    payload = build_archive({"cifar-10-batches-py/test_batch": b"local"})
    archive = tmp_path / "local.tar.gz"
    archive.write_bytes(payload)
    dest = tmp_path / "dest"
    code, _, _ = run_cli(capsys, "data", "cifar10", "--dest", str(dest), "--url", archive.as_uri(), "--md5", hashlib.md5(payload).hexdigest())
    assert code == 0
    assert (dest / "cifar-10-batches-py" / "test_batch").read_bytes() == b"local"


def test_stats_odd_bins_rejected_before_running(capsys):
    assert main(["activations", "resnet8.onnx", "--input", "random", "--stats", "--bins", "7"]) == 2
    captured = capsys.readouterr()
    assert "--bins must be an even number >= 2, got 7" in captured.err
    assert "%" not in captured.err  # no progress bar started
