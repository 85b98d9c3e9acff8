"""Accuracy of the counter against labelled images: datasets, metrics, and the run loop."""

from crowdsafe.evaluation.dataset import Dataset, DatasetError, find_datasets, load_dataset
from crowdsafe.evaluation.metrics import Metrics, compute_metrics
from crowdsafe.evaluation.runner import DatasetResult, ImageResult, evaluate_dataset

__all__ = ["Dataset", "DatasetError", "DatasetResult", "ImageResult", "Metrics",
           "compute_metrics", "evaluate_dataset", "find_datasets", "load_dataset"]
