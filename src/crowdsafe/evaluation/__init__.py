"""Accuracy of the counter against labelled images: datasets, metrics, and the run loop."""
