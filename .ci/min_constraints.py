"""Write pip constraints that pin every dependency of pyproject.toml to its declared minimum.

    python .ci/min_constraints.py EXTRA [EXTRA ...] > constraints.txt

Reads the core dependencies, the named extras and the build requirements, and prints one
``name==version`` line for each requirement declared as ``name>=version`` (a requirement with no
lower bound, such as ``mpich``, is left free). Given to pip as ``PIP_CONSTRAINT``, the pins hold for
the build environment too, so the oldest declared versions are the ones built against and tested.
Exits 1 when a requirement has an upper bound or an exact pin here, which this script cannot lower.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def minimum_pins(requirements: list[str]) -> dict[str, str]:
    """Canonical name -> ``name==min`` for each requirement with a ``>=`` bound."""
    pins: dict[str, str] = {}
    for text in requirements:
        match = _REQ.match(text)
        if match is None:
            raise SystemExit(f"cannot parse requirement {text!r}")
        name, _, spec, _ = match.groups()
        key = re.sub(r"[-_.]+", "-", name).lower()
        floors = [s.strip()[2:].strip() for s in spec.split(",") if s.strip().startswith(">=")]
        others = [s.strip() for s in spec.split(",") if s.strip() and not s.strip().startswith(">=")]
        if others:
            raise SystemExit(f"{text!r}: only '>=' bounds can be pinned to a minimum, found {others}")
        if floors:
            pins[key] = f"{name}=={floors[0]}"
    return pins


def main(argv: list[str]) -> int:
    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras = project.get("optional-dependencies", {})
    unknown = [e for e in argv if e not in extras]
    if unknown:
        raise SystemExit(f"no such extra: {', '.join(unknown)} (declared: {', '.join(extras)})")
    requirements = list(pyproject["build-system"]["requires"]) + list(project["dependencies"])
    todo, seen = list(argv), set()
    while todo:  # an extra may name others: "fastadmm[mnist,sklearn]"
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in extras[extra]:
            own = re.match(rf"^\s*{project['name']}\s*\[([^\]]*)\]", req)
            if own:
                todo += [e.strip() for e in own.group(1).split(",")]
            else:
                requirements.append(req)
    for line in minimum_pins(requirements).values():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
