"""Delivery of alerts to the outside world (webhooks), never blocking the pipeline."""
