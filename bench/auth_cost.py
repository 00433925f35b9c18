"""What identity costs a caller: GetIncident against a stack as `lifeline up` runs it (TLS,
a verified bearer token, the role matrix) next to the same call against a stack with both
switched off, in the same run on the same machine; plus the token check alone, in process.

    python bench/auth_cost.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from lifeline.common.v1 import common_pb2
from lifeline.devstack import Stack
from lifeline.dispatch.v1 import dispatch_pb2, dispatch_pb2_grpc
from lifeline.embedded import EmbeddedPostgres
from lifeline.grpcutil import channel, client_credentials
from lifeline.identity.tokens import TokenIssuer, TokenVerifier


def percentiles(millis: list[float]) -> tuple[float, float]:
    ordered = sorted(millis)
    return statistics.median(ordered), ordered[round(0.99 * (len(ordered) - 1))]


async def get_incident_latencies(stack: Stack, calls: int) -> list[float]:
    operator = stack.token("bench-operator", "operator")
    dispatch = dispatch_pb2_grpc.DispatchServiceStub(channel(
        stack.address("dispatch"), client_credentials(stack.ca_pem, operator or None)))
    incident = (await dispatch.ReportIncident(dispatch_pb2.ReportIncidentRequest(
        hazard="gas_leak", location=common_pb2.GeoPoint(lat=31.2, lon=121.4)))).incident
    request = dispatch_pb2.GetIncidentRequest(incident_id=incident.id)
    for _ in range(200):  # warm up: connection, TLS session, token cache
        await dispatch.GetIncident(request)
    out = []
    for _ in range(calls):
        start = time.perf_counter()
        await dispatch.GetIncident(request)
        out.append((time.perf_counter() - start) * 1000)
    return out


def token_checks(n: int) -> tuple[list[float], list[float]]:
    key = Ed25519PrivateKey.generate()
    issuer, verifier = TokenIssuer(key), TokenVerifier([key.public_key()])
    tokens = [issuer.issue(f"user-{i}", ["viewer"]) for i in range(n)]
    first, again = [], []
    for samples in (first, again):  # each token once uncached, then cached
        for token in tokens:
            start = time.perf_counter()
            verifier.verify(token)
            samples.append((time.perf_counter() - start) * 1000)
    return first, again


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lifeline-bench-auth-"))
    postgres = EmbeddedPostgres(root / "postgres")
    postgres.start()
    results = {}
    try:
        for name, secure in (("plaintext, no authentication", False),
                             ("TLS + bearer token + role matrix", True)):
            postgres.create_database(f"auth_{secure}")
            with Stack(root / f"stack-{secure}", database_url=postgres.dsn(f"auth_{secure}"),
                       secure=secure) as stack:
                print(f"measuring {args.calls} GetIncident calls: {name}", flush=True)
                results[name] = asyncio.run(get_incident_latencies(stack, args.calls))
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
    first, again = token_checks(1000)
    print()
    for label, samples in (("token check, first sight (Ed25519 verify)", first),
                           ("token check, seen before (cache)", again)):
        median, p99 = percentiles(samples)
        print(f"{label:<48} median {median:7.3f} ms   p99 {p99:7.3f} ms")
    for label, samples in results.items():
        median, p99 = percentiles(samples)
        print(f"GetIncident, {label:<35} median {median:7.3f} ms   p99 {p99:7.3f} ms")
    (plain, _), (secure_median, _) = (percentiles(s) for s in results.values())
    print(f"identity costs a GetIncident {secure_median - plain:+.3f} ms at the median "
          f"({secure_median / plain:.2f}x)")


if __name__ == "__main__":
    main()
