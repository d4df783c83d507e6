"""The compiled pipeline with a tune section: trial workers in a dsl.ParallelFor on one shared study,
the tune step before train on the GPU node, its best values an input of train; none of it without one."""
from tests.integration.test_compile import compiled

TUNE = ["--set", "tune.trials=24", "--set", "tune.workers=3", "--set", "tune.space={dropout: [0.0, 0.2]}"]


def test_no_tune_section_no_tune_step(tmp_path):
    spec, _ = compiled(tmp_path)
    assert not [name for name in spec["components"] if "tune" in name]
    assert "tuned_params" not in spec["root"]["dag"]["tasks"]["train-model"]["inputs"].get("parameters", {})


def test_workers_share_one_study_and_train_takes_the_best_values(tmp_path):
    spec, platform = compiled(tmp_path, *TUNE)
    tasks = spec["root"]["dag"]["tasks"]
    name, loop = next((n, t) for n, t in tasks.items() if n.startswith("for-loop"))
    assert loop["taskInfo"]["name"] == "tune-workers"
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2]"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 3
    worker = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]["tune-trials"]
    assert worker["inputs"]["parameters"]["worker"]["componentInputParameter"].startswith("pipelinechannel--loop-item")
    assert worker["inputs"]["artifacts"]["train"]["componentInputArtifact"] == "pipelinechannel--split-data-train"

    tune = tasks["tune-model"]
    assert {name, "split-data", "preprocess-data"} <= set(tune["dependentTasks"])
    assert tune["inputs"]["parameters"]["recipe_json"]["taskOutputParameter"]["outputParameterKey"] == "tune"
    train = tasks["train-model"]
    assert train["inputs"]["parameters"]["tuned_params"]["taskOutputParameter"] == {
        "outputParameterKey": "Output", "producerTask": "tune-model"}
    assert "tune-model" in train["dependentTasks"]

    executors = spec["deploymentSpec"]["executors"]
    for name in ("exec-tune-model", "exec-tune-trials"):
        assert executors[name]["container"]["image"].endswith("/train:0.1.0")
        assert executors[name]["container"]["resources"]["accelerator"]["count"] == "1"
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name in ("exec-tune-model", "exec-tune-trials"):
        secrets = {s["secretName"]: {e["envVar"] for e in s["keyToEnv"]} for s in k8s[name]["secretAsEnv"]}
        assert secrets["kfp-ml-platform-tuning"] == {"PLATFORM_TUNING_STORAGE"}
        assert "MLFLOW_TRACKING_URI" in secrets["kfp-ml-platform-mlflow"]
        assert k8s[name]["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}


def test_one_worker_is_one_tune_step(tmp_path):
    spec, _ = compiled(tmp_path, "--set", "tune.trials=5")
    tasks = spec["root"]["dag"]["tasks"]
    assert "tune-model" in tasks and not any(name.startswith("for-loop") for name in tasks)
