"""The Kinesis stream consumer: predictions for requests queued by ``POST /predict/stream``."""
