"""The client of TF Serving's gRPC and REST APIs (`python -m serving.client`); `client` holds the library."""
