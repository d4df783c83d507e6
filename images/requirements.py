"""Print the requirements of the project's core and the given extras, one a line, from pyproject.toml.

The images install these in a layer of their own, before the source is copied in, so a code change
reuses that layer and rebuilds in seconds:  python3 images/requirements.py pyproject.toml data
"""
import re
import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    name, optional = project["name"], project.get("optional-dependencies", {})
    out, seen = list(project.get("dependencies", [])), set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        seen.add(extra)
        if extra not in optional:
            sys.exit(f"requirements.py: no extra {extra!r} in {pyproject} (have {', '.join(optional)})")
        for req in optional[extra]:
            own = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.replace(" ", ""))
            if own:  # the project's own extras, e.g. kfp-ml-platform[data,train]
                for sub in own.group(1).split(","):
                    add(sub)
            elif req not in out:
                out.append(req)

    for extra in extras:
        add(extra)
    return out


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
