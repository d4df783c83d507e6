"""KServe model server for platform bundles: ``python -m serving --model_dir DIR --model_name NAME``."""
