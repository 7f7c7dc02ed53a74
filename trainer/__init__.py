"""Trainer: synthetic scenario data, the folder dataset, compact fused models, training and evaluation."""
