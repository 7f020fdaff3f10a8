"""mmselect's quality-metric layer: registered metrics that score record batches, and the runner that drives them."""
from selector.core.metric_api import Batch, Metric
from metrics.registry import METRICS, available, build, metric_class, register

__all__ = ["Batch", "METRICS", "Metric", "available", "build", "metric_class", "register"]
