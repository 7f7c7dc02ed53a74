"""Runtime: sources on one clock, synchronizer, fused inference, ZeroMQ publishing, record and replay."""
