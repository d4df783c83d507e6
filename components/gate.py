"""Gate rules such as ``rmse <= 0.6``: one syntax, read by the recipe (validation), by check (which
metric a rule names) and by evaluate (the verdict). Its own module so that check, which the recipe's
command line calls, need not import the recipe module at run time."""
import re

# A metric name: the task's (lower case), or a per-class one, which keeps the class name's letters.
GATE_RE = re.compile(r"^\s*([A-Za-z0-9_.-]+?)\s*(<=|>=|<|>|==)\s*(-?[0-9.eE+-]+)\s*$")


def per_class(metric: str, class_name) -> str:
    """``map50`` of class ``traffic light`` → ``map50_class_traffic_light`` (MLflow and KFP accept
    letters, digits, _ - . in metric names)."""
    return f"{metric}_class_{re.sub(r'[^A-Za-z0-9_.-]', '_', str(class_name))}"
