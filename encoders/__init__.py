"""PyTorch encoders that turn frames, sounds and log lines into unit vectors."""
