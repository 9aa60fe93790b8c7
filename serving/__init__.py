"""Serving EML-NET: SavedModel export, a TF-Serving-compatible server, its client, offline batch scoring.

- `serving.export`: an EMLNet `.keras` file -> a versioned SavedModel for TF Serving (`python -m serving.export`).
- `serving.server`: the development and test server speaking TF Serving's gRPC and REST APIs
  (`python -m serving.server`); production runs the same export on the official server.
- `serving.client`: scores images through either server (`python -m serving.client`).
- `serving.batch`: scores large collections offline (`python -m serving.batch_score`).
"""
