"""The batch-scoring pipeline: one step that scores a table with a registered model, in chunks.

    python pipelines/submit.py predict --model models:/california-housing@champion \\
        --data data/california_housing.parquet [--output s3://bucket/predictions.parquet]
"""
from kfp import dsl
from kfp.dsl import Dataset, Metrics, Output

from pipelines.images import image_for


def batch_predict(model_uri: str, data_uri: str, output_uri: str, chunk_rows: int, predictions: Output[Dataset],
                  metrics: Output[Metrics]) -> str:
    """Score every row; predictions as Parquet (to output_uri, or this artifact); metrics when labelled."""
    import json

    from components.runner import step_logging, write_metadata_file
    from components.steps.predict import predict_batch

    step_logging()
    result = predict_batch(model_uri, data_uri, output_uri or predictions.path, chunk_rows)
    predictions.metadata.update({"rows": result["rows"], "model_version": result["model_version"],
                                 "output": output_uri or predictions.path})
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    write_metadata_file(metrics)
    if output_uri:  # the artifact points at where the predictions went
        import pathlib

        pathlib.Path(predictions.path).write_text(output_uri)
    return json.dumps(result)


def make_batch_pipeline(model_uri: str, data_uri: str, output_uri: str = "", chunk_rows: int = 50_000,
                        cluster=None):
    from pipelines.pipeline import ClusterConfig, use_secrets

    cluster = cluster or ClusterConfig()
    component = dsl.component(batch_predict, base_image=image_for("train", cluster.image_registry, cluster.image_tag),
                              install_kfp_package=False)

    @dsl.pipeline(name="kfp-ml-platform-batch-predict",
                  description="Score a table with a registered model, in chunks, to Parquet.")
    def scoring_pipeline(model: str = model_uri, data: str = data_uri, output: str = output_uri,
                         chunk_rows: int = chunk_rows):
        task = component(model_uri=model, data_uri=data, output_uri=output, chunk_rows=chunk_rows)
        task.set_display_name("batch-predict").set_caching_options(False)  # the champion may have moved
        use_secrets(cluster, s3=[task], mlflow=[task])

    return scoring_pipeline
