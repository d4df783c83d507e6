"""Gate rules such as ``rmse <= 0.6``: one syntax, read by the recipe (validation), by check (which
metric a rule names) and by evaluate (the verdict). Its own module so that check, which the recipe's
command line calls, need not import the recipe module at run time."""
import re

GATE_RE = re.compile(r"^\s*([a-z_0-9]+)\s*(<=|>=|<|>|==)\s*(-?[0-9.eE+-]+)\s*$")
