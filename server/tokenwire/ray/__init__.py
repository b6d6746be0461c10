"""tokenwire on Ray Serve: the same gRPC services, across replicas and machines.

A call travels:

    client ──gRPC──▶ Serve's gRPC proxy (one per node; tokenwire's .proto services registered
                     with `grpc_servicer_functions`, reflection served in the proxy itself)
           ──Ray──▶  Ingress deployment (`ingress.py`): reads the request's `model` field and
                     forwards the call to that model's deployment; answers grpc.health.v1
           ──Ray──▶  Model deployment (`replica.py`), N replicas per model: tokenwire's own
                     stack for one model (registry + loader, schedulers, batcher, the servicers
                     of `tokenwire.services` behind the same `ServerInterceptor`)

Each replica therefore batches exactly as one `tokenwire serve` process does, and the status
codes, messages, rich error details and trailers are the interceptor's own. What Serve's proxy
can and cannot carry back to the client is listed in `ingress.py` and docs/ray.md.

`app.py` builds the Serve application from a registry `Config`; `cli.py` is `tokenwire ray
serve`. Ray is an optional extra (`pip install 'tokenwire[ray]'`): nothing here is imported by
the plain server.
"""
