"""The development and test server: TF Serving's gRPC and REST APIs over SavedModel versions (`python -m serving.server`).

`model_registry` finds and loads versions, `servable` runs one, `dispatch` turns a request into a call,
`grpc_service` and `rest` are the two front ends, `request_batching` merges concurrent requests (TF Serving's
batching parameters), `errors` maps failures to gRPC and HTTP codes, `server` starts and stops it all.
"""
