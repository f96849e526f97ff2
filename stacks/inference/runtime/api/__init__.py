"""The REST API's Lambda: real-time predictions, the stream entry, read-back and feedback."""
