"""A model trained by an outside git repository: its own train command, in its own virtual environment.

The catalog entry ``external`` (as MLflow Projects run a repository's entry point): the repository is
cloned at a pinned ``ref`` (the commit SHA is recorded in the bundle), its ``requirements`` are
installed with ``uv`` into a virtual environment cached by their content, and ``train_command`` runs
with the checkout as working directory. The train and val model inputs arrive as Parquet files
(columns ``x0..x{F-1}`` and ``y``: standardised values for regression, class indices 0..k-1 for
classification); the command writes whatever it needs under ``{output_dir}`` plus per-epoch metrics
(JSON Lines ``{"epoch": 1, "val_loss": 0.4, ...}``), which become ``on_epoch`` progress and
``history_`` as they appear. Every line it prints goes to the step log.

The bundle carries the output directory and the repository's source at that commit (``git
archive``: committed files only), so serving needs neither the repository nor its environment's
train-time tools: ``predict_raw`` imports the ``predict`` entry point (``module:function``, called as
``function(X: DataFrame, model_dir: str)``) from the bundled source **in the serving process**, with
the server's packages. Only registered bundles (checked against their digest) are served, so only
code that was registered runs there.
"""
from __future__ import annotations

import collections
import hashlib
import importlib
import importlib.metadata
import io
import json
import logging
import math
import os
import queue
import re
import shutil
import signal
import string
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import Field

from ..errors import PlatformError, RecipeError
from .params import Params
from .registry import Adapter, register_adapter

log = logging.getLogger(__name__)

DEFAULT_COMMAND = ["python", "train.py", "--train", "{train}", "--val", "{val}", "--output-dir", "{output_dir}",
                   "--epochs", "{epochs}", "--seed", "{seed}"]
# Placeholders every command may use; ``parameters`` adds its own names.
PLACEHOLDERS = ("train", "val", "output_dir", "epochs", "seed", "target", "task", "n_classes", "python")
TARGET = "y"
TAIL_LINES = 20
EXAMPLE = '{"epoch": 1, "val_loss": 0.42}'  # a metrics record, as messages show it


class ExternalTrainingError(PlatformError, RuntimeError):
    """The outside repository's train command failed, timed out or left unusable metrics or weights."""


class ExternalParams(Params):
    repo: str                                   # a local path or file:// URL of a git repository
    ref: str = "HEAD"                           # branch, tag or commit; pinned to its commit SHA
    train_command: list[str] = Field(DEFAULT_COMMAND, min_length=1)
    requirements: str | None = None             # file in the repository; unset: requirements.txt if present, "": none
    system_site_packages: bool = False          # the environment also sees the platform's packages
    metrics_file: str = "metrics.jsonl"         # under {output_dir}; "stdout": JSON lines the command prints
    predict: str = Field("predict:predict", pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    parameters: dict[str, str | int | float | bool] = Field(default_factory=dict)  # more {placeholders}
    timeout_s: float = Field(3600.0, gt=0)


@register_adapter("external", framework="external", tags=("external",),
                  description="Your own git repository's train command and predict function (repo, ref, "
                              "train_command, requirements, metrics_file, predict).",
                  defaults={})
class ExternalAdapter(Adapter):
    Params = ExternalParams
    # Passed to the command as {epochs} and {seed}; a value other than the default needs its placeholder.
    train_options = frozenset({"epochs", "seed"})
    fitted_config = ("commit",)

    # --- checks (no I/O: the repository is first touched by fit) -----------------------------
    def check_params(self) -> None:
        if not self.params.get("repo"):
            raise RecipeError(f"model.params: the 'repo' parameter of {self.owner} is required: a local path or "
                              f"file:// URL of a git repository. Got {self.params.get('repo')!r} instead.")
        super().check_params()
        p = self._p()
        known = set(PLACEHOLDERS) | set(p.parameters)
        for arg in p.train_command:
            for name in _placeholders(arg, "train_command"):
                if name not in known:
                    raise RecipeError(f"model.params: the 'train_command' parameter of {self.owner} uses the "
                                      f"unknown placeholder {{{name}}}; known are {sorted(known)} (model.params."
                                      f"parameters adds more). Got {arg!r} instead.")

    def check_train(self, spec) -> None:
        super().check_train(spec)
        command, defaults = " ".join(self._p().train_command), type(spec)()
        for name in sorted(self.train_options):
            if getattr(spec, name) != getattr(defaults, name) and f"{{{name}}}" not in command:
                raise RecipeError(f"train.{name}: the {name!r} option of {self.owner} must be left at its default "
                                  f"{getattr(defaults, name)!r}; its train_command has no {{{name}}} placeholder to "
                                  f"pass it on. Got {getattr(spec, name)!r} instead.")

    @classmethod
    def cacheable(cls, params: dict[str, Any]) -> bool:
        """Whether a pipeline may reuse a finished train step for these params: only when ``ref`` is a full
        commit SHA (a branch or HEAD may have moved since)."""
        return bool(re.fullmatch(r"[0-9a-f]{40}", str(params.get("ref") or "")))

    @classmethod
    def source_version(cls, params: dict[str, Any]) -> str:
        """The commit ``ref`` names now: tuning keeps one study per commit, so trials of code a branch has
        since moved past are not mixed into a study of the new code."""
        p = ExternalParams.model_validate(params)
        if cls.cacheable(params):
            return p.ref
        with tempfile.TemporaryDirectory(prefix="external-ref-") as tmp:
            return clone_at(p.repo, p.ref, Path(tmp) / "checkout")

    def _p(self) -> ExternalParams:
        return ExternalParams.model_validate(self.params)

    # --- fit ---------------------------------------------------------------------------------
    def _fit(self, X, y, X_val, y_val, spec, callback) -> None:
        p = self._p()
        work = Path(tempfile.mkdtemp(prefix="external-"))
        weakref.finalize(self, shutil.rmtree, work, ignore_errors=True)
        checkout, data, output = work / "checkout", work / "data", work / "output"
        self.commit_ = clone_at(p.repo, p.ref, checkout)
        log.info("external: %s at %s (commit %s)", p.repo, p.ref, self.commit_)
        venv = environment(checkout, p.requirements, p.system_site_packages, p.timeout_s)
        data.mkdir()
        output.mkdir()
        values = {"train": _write_inputs(X, y, data / "train.parquet"), "val": _write_inputs(X_val, y_val,
                  data / "val.parquet"), "output_dir": str(output), "epochs": spec.epochs, "seed": spec.seed,
                  "target": TARGET, "task": self.task, "n_classes": self.n_classes or 0,
                  "python": str(_venv_python(venv)), **p.parameters}
        argv = [arg.format(**values) for arg in p.train_command]
        if argv[0] in ("python", "python3"):
            argv[0] = values["python"]
        metrics = None if p.metrics_file == "stdout" else output / p.metrics_file
        self.history_ = run_command(argv, checkout, _venv_env(venv), p.timeout_s, metrics, callback)
        archive_source(checkout, self.commit_, work / "src")
        shutil.rmtree(checkout, ignore_errors=True)
        self._src, self._output = work / "src", output
        self._entry()  # a missing entry point fails the train step, not the first request

    # --- predict -----------------------------------------------------------------------------
    def _entry(self) -> Callable:
        if getattr(self, "_predict_fn", None) is None:
            self._predict_fn = import_entry(self._src, self._p().predict)
        return self._predict_fn

    def _predict(self, X) -> np.ndarray:
        import pandas as pd

        frame = pd.DataFrame(X.reshape(len(X), -1), columns=[f"x{i}" for i in range(int(np.prod(X.shape[1:])))])
        out = np.asarray(self._entry()(frame, str(self._output)), dtype=np.float64)
        want = (len(X),) if self.task == "regression" else (len(X), self.n_classes)
        if self.task == "regression" and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        if out.shape != want:
            what = "values" if self.task == "regression" else f"probabilities of the {self.n_classes} classes"
            raise ExternalTrainingError(f"model.params.predict: {self._p().predict} returned shape {out.shape} for "
                                        f"{len(X)} rows; expected {what}, shape {want}")
        return out

    # --- persistence: the output directory and the source at the commit ------------------------
    def _save_weights(self, directory: Path) -> None:
        shutil.copytree(self._output, directory / "output")
        shutil.copytree(self._src, directory / "src", ignore=shutil.ignore_patterns("__pycache__"))

    def _load_weights(self, directory: Path, config: dict[str, Any]) -> None:
        # The source is imported from a private copy: bytecode Python writes beside it must not change
        # the bundle's files, whose digest is checked again each time a server loads it.
        work = Path(tempfile.mkdtemp(prefix="external-src-"))
        weakref.finalize(self, shutil.rmtree, work, ignore_errors=True)
        shutil.copytree(directory / "src", work / "src")
        self._src, self._output = work / "src", directory / "output"
        self._predict_fn = None
        self._entry()  # the server is ready only when the entry point imports


# --- the repository ----------------------------------------------------------------------------
def _git(args: list[str], cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=check,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})


def clone_at(repo: str, ref: str, dest: Path) -> str:
    """Clone ``repo`` into ``dest`` and check out ``ref`` detached; returns the commit SHA."""
    local = repo[len("file://"):] if repo.startswith("file://") else None if "://" in repo or "@" in repo else repo
    if local is not None:
        path = Path(local).expanduser().resolve()
        if not path.exists():
            raise RecipeError(f"model.params.repo: {repo!r} does not exist; expected a git repository (a local path "
                              f"or file:// URL)")
        top = _git(["rev-parse", "--show-toplevel"], cwd=path if path.is_dir() else path.parent, check=False)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != path:
            raise RecipeError(f"model.params.repo: {repo!r} is not a git repository (git init; git add; git commit "
                              f"the training code first)")
        if _git(["status", "--porcelain", "--untracked-files=no"], cwd=path).stdout.strip():
            log.warning("external: %s has uncommitted changes; they are not used (only commits are)", repo)
        repo = str(path)
    cloned = _git(["clone", "--quiet", "--no-checkout", repo, str(dest)], check=False)
    if cloned.returncode != 0:
        raise RecipeError(f"model.params.repo: cannot clone {repo!r}: {cloned.stderr.strip()}")
    for candidate in (ref, f"origin/{ref}"):
        found = _git(["rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}"], cwd=dest, check=False)
        if found.returncode == 0:
            sha = found.stdout.strip()
            _git(["checkout", "--quiet", "--detach", sha], cwd=dest)
            return sha
    branches = _git(["for-each-ref", "--format=%(refname:short)", "refs/remotes", "refs/tags"], cwd=dest).stdout.split()
    raise RecipeError(f"model.params.ref: {ref!r} is not a branch, tag or commit of {repo!r}; it has "
                      f"{sorted(b.removeprefix('origin/') for b in branches if b != 'origin/HEAD')}")


def archive_source(checkout: Path, commit: str, dest: Path) -> None:
    """The committed files at ``commit`` (no .git, nothing untracked or ignored) into ``dest``."""
    tar = subprocess.run(["git", "archive", "--format=tar", commit], cwd=checkout, capture_output=True, check=True)
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="data")
        else:  # Python before 3.11.4 (Debian bookworm's 3.11.2) has no filters: stricter checks by hand
            for member in archive.getmembers():
                if not (member.isfile() or member.isdir() or member.issym()) or _escapes(member.name) \
                        or (member.issym() and _escapes(member.linkname)):
                    raise ExternalTrainingError(
                        f"the repository holds {member.name!r}{f' -> {member.linkname!r}' if member.issym() else ''}, "
                        "which is not a file, a folder or a link within the repository (absolute or with ..)")
            archive.extractall(dest)


def _escapes(path: str) -> bool:
    """An absolute path or one with a ``..`` part: refused outright, as links may chain through each other."""
    return path.startswith("/") or ".." in Path(path).parts


# --- the environment ---------------------------------------------------------------------------
def environment(checkout: Path, requirements: str | None, system_site_packages: bool, timeout_s: float) -> Path:
    """A virtual environment with the repository's requirements, made with ``uv`` and cached under
    ``$PLATFORM_HOME/external/envs`` by the requirements' content (a later run with the same ones reuses it).
    With ``system_site_packages`` it also sees the platform's own packages (a ``.pth`` file: the
    platform may itself run in a virtual environment), and requirements those satisfy are not installed."""
    from ..settings import platform_home

    if requirements == "":
        req_file = None
    elif requirements is None:
        req_file = checkout / "requirements.txt" if (checkout / "requirements.txt").is_file() else None
    else:
        req_file = checkout / requirements
        if not req_file.is_file():
            raise RecipeError(f"model.params.requirements: {requirements!r} is not a file of the repository")
    lines = _requirement_lines(req_file) if req_file else []
    if system_site_packages:
        lines = [line for line in lines if not _satisfied(line)]
    key = hashlib.sha256(json.dumps([sys.version, sys.prefix, system_site_packages, lines]).encode()).hexdigest()[:16]
    venv = platform_home() / "external" / "envs" / key
    if _venv_python(venv).is_file():
        return venv
    uv = _uv()
    building = venv.with_name(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    _run_tool([uv, "venv", "--quiet", "--python", sys.executable, *(["--system-site-packages"] * system_site_packages),
               str(building)], "create the environment", timeout_s)
    if system_site_packages:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        purelib = Path(subprocess.run([str(_venv_python(building)), "-c", code], capture_output=True, text=True,
                                      check=True).stdout.strip())
        (purelib / "_platform_packages.pth").write_text("\n".join(_site_packages()) + "\n")
    if lines:
        req = building / "requirements.txt"
        req.write_text("\n".join(lines) + "\n")
        log.info("external: installing %d requirements into %s", len(lines), venv)
        _run_tool([uv, "pip", "install", "--quiet", "--python", str(_venv_python(building)), "-r", str(req)],
                  "install the requirements", timeout_s, cwd=checkout)
    try:
        building.rename(venv)
    except OSError:  # another process made the same environment meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return venv


def _requirement_lines(path: Path) -> list[str]:
    return [line.split(" #")[0].strip() for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _satisfied(line: str) -> bool:
    """Whether the platform's own packages satisfy a plain requirement line (options, URLs and paths never do)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(line)
    except InvalidRequirement:
        return False
    if req.marker is not None and not req.marker.evaluate():
        return True  # not for this platform: nothing to install
    if req.url:
        return False
    try:
        return req.specifier.contains(importlib.metadata.version(req.name), prereleases=True)
    except importlib.metadata.PackageNotFoundError:
        return False


def _site_packages() -> list[str]:
    import site

    return [p for p in [*site.getsitepackages(), site.getusersitepackages()] if Path(p).is_dir()]


def _uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv") or shutil.which("uv", path=str(Path(sys.executable).parent))
    if not found:
        raise ExternalTrainingError("the external model needs uv to make its environment; install it "
                                    "(pip install uv) in the train step's image")
    return found


def _run_tool(argv: list[str], what: str, timeout_s: float, cwd: Path | None = None) -> None:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ExternalTrainingError(f"model.params.timeout_s: uv did not {what} within {timeout_s:g} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-TAIL_LINES:])
        raise ExternalTrainingError(f"uv could not {what} (exit {done.returncode}):\n{tail}")


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _venv_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "VIRTUAL_ENV": str(venv), "PATH": f"{_venv_python(venv).parent}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1"}


# --- the run -----------------------------------------------------------------------------------
def _write_inputs(X, y, path: Path) -> str:
    import pandas as pd

    X = np.asarray(X).reshape(len(X), -1)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])
    frame[TARGET] = np.asarray(y)
    frame.to_parquet(path, index=False)
    return str(path)


def run_command(argv: list[str], cwd: Path, env: dict[str, str], timeout_s: float, metrics: Path | None,
                callback: Callable[[dict], None]) -> list[dict[str, float]]:
    """Run the train command; each output line goes to the log, each new metrics record to ``callback``
    as it appears. Returns the per-epoch history from the metrics file (or stdout when there is none)."""
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, text=True, errors="replace")
    except OSError as exc:
        raise ExternalTrainingError(f"model.params.train_command: cannot start {argv[0]!r}: {exc}") from None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    stdout_records: list[dict[str, float]] = []
    reported, deadline, done = 0, time.monotonic() + timeout_s, False
    try:
        while not done:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                done = True
            elif line:
                tail.append(line)
                log.info("external | %s", line)
                if metrics is None and (record := _stdout_record(line, len(stdout_records))):
                    stdout_records.append(record)
            live = stdout_records if metrics is None else _records(metrics, complete_only=True)
            for record in live[reported:]:
                callback(record)
            reported = max(reported, len(live))
            if time.monotonic() > deadline:
                _stop(proc)
                raise ExternalTrainingError(f"model.params.timeout_s: the train command ran past {timeout_s:g} s and "
                                            f"was stopped; its last output:\n" + "\n".join(tail))
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    if code != 0:
        raise ExternalTrainingError(f"the train command {' '.join(argv)} exited with status {code}; its last "
                                    f"{len(tail)} lines:\n" + "\n".join(tail))
    if metrics is None:
        history = stdout_records
        if not history:
            raise ExternalTrainingError(f"model.params.metrics_file: the train command printed no metrics; with "
                                        f"metrics_file: stdout each epoch is a line such as {EXAMPLE}")
    else:
        if not metrics.is_file():
            raise ExternalTrainingError(f"model.params.metrics_file: the train command wrote no {metrics.name} in "
                                        f"{{output_dir}}; expected JSON lines such as {EXAMPLE}")
        history = _records(metrics, complete_only=False)
    for record in history[reported:]:
        callback(record)
    return history


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _stop(proc: subprocess.Popen) -> None:
    """End the command and everything it started (its own session), politely first."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _stdout_record(line: str, index: int) -> dict[str, float] | None:
    text = line.strip()
    if not (text.startswith("{") and "val_loss" in text):
        return None
    try:
        return _record(json.loads(text), index, "stdout", index + 1)
    except (ValueError, ExternalTrainingError):
        return None


def _records(path: Path, complete_only: bool) -> list[dict[str, float]]:
    """The epochs in a metrics file: JSON Lines, or one JSON document (an object or a list of objects).
    ``complete_only`` (while the command runs): the lines written so far, malformed ones skipped."""
    if not path.is_file():
        return []
    text = path.read_text()
    if complete_only:
        if path.suffix == ".json":
            return []
        text = text[:text.rfind("\n") + 1]
    if path.suffix == ".json":
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ExternalTrainingError(f"model.params.metrics_file: {path.name} is not valid JSON ({exc})") from None
        items = [(i + 1, item) for i, item in enumerate(doc if isinstance(doc, list) else [doc])]
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append((number, json.loads(line)))
                except ValueError:
                    if complete_only:
                        continue
                    raise ExternalTrainingError(f"model.params.metrics_file: line {number} of {path.name} is not JSON: "
                                                f"{line[:80]!r}; expected one object per line such as "
                                                f"{EXAMPLE}") from None
    records = []
    for number, item in items:
        try:
            records.append(_record(item, len(records), path.name, number))
        except ExternalTrainingError:
            if not complete_only:
                raise
    if not records and not complete_only:
        raise ExternalTrainingError(f'model.params.metrics_file: {path.name} holds no epochs; expected JSON lines '
                                    f'such as {EXAMPLE}')
    return records


def _record(item: Any, index: int, source: str, number: int) -> dict[str, float]:
    """One epoch: its number (its position when absent), a finite ``val_loss`` and any other numbers."""
    loss = item.get("val_loss") if isinstance(item, dict) else None
    if isinstance(loss, bool) or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        raise ExternalTrainingError(f"model.params.metrics_file: record {number} of {source} has no finite numeric "
                                    f"'val_loss'; got {json.dumps(item)[:120]}")
    record = {"epoch": int(item.get("epoch", index + 1))}
    record.update({k: float(v) for k, v in item.items() if k != "epoch" and isinstance(v, (int, float))
                   and not isinstance(v, bool)})
    return record


# --- the entry point ---------------------------------------------------------------------------
def import_entry(src: Path, entry: str) -> Callable:
    """``module:function`` from the bundled source, imported in this process (its directory first on
    sys.path; a module of the same name imported from elsewhere, such as another bundle, is replaced)."""
    module_name, _, function = entry.partition(":")
    root = str(Path(src).resolve())
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    top = module_name.split(".")[0]
    cached = sys.modules.get(top)
    if cached is not None and not str(getattr(cached, "__file__", "") or "").startswith(root + os.sep):
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            del sys.modules[name]
    importlib.invalidate_caches()
    if not (Path(root) / (module_name.replace(".", os.sep) + ".py")).is_file() and \
            not (Path(root) / module_name.replace(".", os.sep) / "__init__.py").is_file():
        raise ExternalTrainingError(f"model.params.predict: the repository has no module {module_name!r} "
                                    f"(expected {module_name.replace('.', '/')}.py) for the entry point {entry!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ExternalTrainingError(f"model.params.predict: importing {module_name!r} from the repository failed: "
                                    f"{type(exc).__name__}: {exc}") from exc
    fn = getattr(module, function, None)
    if not callable(fn):
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise ExternalTrainingError(f"model.params.predict: {module_name}.py has no function {function!r} for the "
                                    f"entry point {entry!r}; it defines {names}")
    return fn


def _placeholders(text: str, owner: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise RecipeError(f"model.params: the {owner!r} argument {text!r} is not a valid template ({exc}); "
                          f"write a literal brace as {{{{ or }}}}") from None
