"""TLS, mutual TLS and bearer tokens, through a real `tokenwire serve`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from harness import ServeProcess, wait_serving
from tokenwire.client import Client
from tokenwire.v1 import models_pb2

pytestmark = pytest.mark.e2e


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=tokenwire-test-ca",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, cn in (("server", "localhost"), ("client", "client")):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        ext = d / f"{name}.ext"
        ext.write_text(
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n" if name == "server" else "extendedKeyUsage=clientAuth\n"
        )
        openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(ext),
            "-out",
            str(d / f"{name}.pem"),
        )
    return d


def config(demo_models_dir: Path, tmp: Path) -> str:
    path = tmp / "one.toml"
    path.write_text(f'[[models]]\nname = "llama"\npath = "{demo_models_dir / "tiny-llama"}"\n')
    return str(path)


@pytest.fixture(scope="module")
def mtls_server(pki: Path, demo_models_dir: Path) -> Iterator[ServeProcess]:
    proc = ServeProcess(
        "--config",
        config(demo_models_dir, pki),
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
        "--tls-client-ca",
        str(pki / "ca.pem"),
    ).start()
    yield proc
    proc.kill()


def list_models(client: Client) -> int:
    return len(client.models.ListModels(models_pb2.ListModelsRequest(), timeout=20).models)


def test_mutual_tls(mtls_server: ServeProcess, pki: Path) -> None:
    read = lambda n: (pki / n).read_bytes()  # noqa: E731
    with Client(
        mtls_server.target,
        tls_ca=read("ca.pem"),
        tls_cert=read("client.pem"),
        tls_key=read("client.key"),
        options=[("grpc.ssl_target_name_override", "localhost")],
    ) as c:
        assert list_models(c) == 1
    for kwargs in ({"tls_ca": read("ca.pem")}, {}):  # no client certificate / no TLS at all
        with Client(mtls_server.target, options=[("grpc.ssl_target_name_override", "localhost")], **kwargs) as c:
            with pytest.raises(grpc.RpcError) as err:
                list_models(c)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_without_client_certificates(pki: Path, demo_models_dir: Path) -> None:
    proc = ServeProcess(
        "--config",
        config(demo_models_dir, pki),
        "--tls-cert",
        str(pki / "server.pem"),
        "--tls-key",
        str(pki / "server.key"),
    ).start()
    try:
        with Client(
            proc.target, tls_ca=(pki / "ca.pem").read_bytes(), options=[("grpc.ssl_target_name_override", "localhost")]
        ) as c:
            assert list_models(c) == 1
    finally:
        proc.kill()


def test_bearer_tokens(tmp_path: Path, demo_models_dir: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# rotated 2026-11\nalpha-secret\n\nbeta-secret\n")
    proc = ServeProcess("--config", config(demo_models_dir, tmp_path), "--auth-token-file", str(tokens)).start()
    try:
        with Client(proc.target) as anonymous:
            with pytest.raises(grpc.RpcError) as err:
                list_models(anonymous)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # health and reflection stay open by default (load balancers, grpcurl list): the
            # anonymous client sees the server turn SERVING
            wait_serving(anonymous)
            reply = anonymous.health.Check(health_pb2.HealthCheckRequest(service=""))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with Client(proc.target, token="wrong") as wrong:
            with pytest.raises(grpc.RpcError) as err:
                list_models(wrong)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for token in ("alpha-secret", "beta-secret"):
            with Client(proc.target, token=token) as c:
                assert list_models(c) == 1
    finally:
        proc.kill()


def test_tls_key_without_cert_refuses_to_start(pki: Path, demo_models_dir: Path) -> None:
    result = subprocess.run(
        [
            str(Path(ServeProcess().args[0])),
            "serve",
            "--config",
            config(demo_models_dir, pki),
            "--tls-key",
            str(pki / "server.key"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "'tls_cert' and 'tls_key' must be given together" in result.stderr
