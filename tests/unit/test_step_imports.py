"""Steps that need no torch must not import it (their images do not have it)."""
import subprocess
import sys
import textwrap

from tests.conftest import ROOT


def test_data_register_and_deploy_steps_run_without_torch(regression_run, tmp_path):
    _, p = regression_run
    script = textwrap.dedent(f"""
        import os, sys
        os.environ["MLFLOW_TRACKING_URI"] = "sqlite:///{tmp_path}/m.db"
        from tests.conftest import make_recipe
        from components.steps import load, preprocess, split, register, deploy
        r = make_recipe()
        d = "{tmp_path}"
        load.load(r, d + "/raw.parquet")
        preprocess.preprocess(r, d + "/raw.parquet", d + "/clean.parquet", d + "/schema.json", d + "/r.md")
        split.split(r, d + "/clean.parquet", d + "/a.parquet", d + "/b.parquet", d + "/c.parquet")
        register.register(r, "{p['model']}", "{p['eval']}", "no-torch")
        images = make_recipe("classification", name="digits", data={{"uri": "{ROOT}/data/digits"}},
                             image={{"size": 32}}, model={{"name": "timm:resnet18", "params": {{}}}})
        load.load(images, d + "/img.parquet")
        preprocess.preprocess(images, d + "/img.parquet", d + "/iclean.parquet", d + "/ischema.json", d + "/i.md")
        assert "torch" not in sys.modules, "a torch-free step imported torch"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_reading_and_evaluating_a_bundle_needs_no_mlflow(regression_run, tmp_path):
    """Importing MLflow takes seconds; evaluate and the model server read bundles without it."""
    _, p = regression_run
    script = textwrap.dedent(f"""
        import sys
        from components.bundle import load_bundle
        from components.steps import evaluate
        import serving.predictor
        bundle = load_bundle("{p['model']}")
        bundle.predict_frame(__import__("pandas").read_parquet("{p['test.parquet']}")[bundle.feature_names].head(3))
        assert "mlflow" not in sys.modules, sorted(m for m in sys.modules if m.startswith("mlflow"))[:5]
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
