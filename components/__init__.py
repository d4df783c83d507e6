"""kfp-ml-platform: the shared library behind the pipeline steps, the bundle and serving."""
