"""govflow: model governance for ML platform teams."""

__version__ = "0.1.0"
