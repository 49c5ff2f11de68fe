"""The package's stage folders and their import rules (README "Architecture").

Every import in the package is read from the source (module-level and inside
functions alike), so a lazy import cannot hide a wrong direction or a circle.
"""
import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "sketchtf"
CORE = {"keras", "config", "console"}      # shared by every stage
VERBS = {"prepare", "train", "distill", "launch", "evaluate", "export", "quantize", "gates", "binarize", "serve",
         "quickstart"}                     # python -m sketchtf.<verb>: thin, import anything, imported by nobody
BELOW = {                                  # stage -> the stages it may import (besides itself and core)
    "core": set(),
    "data": set(),
    "ops": set(),
    "layers": {"ops"},
    "models": {"layers", "ops"},
    "workdir": {"models", "layers", "ops"},
    "evaluation": {"data", "models", "layers", "ops", "workdir"},
    "training": {"data", "models", "layers", "ops", "workdir", "evaluation"},
    "ship": {"data", "models", "layers", "ops", "workdir", "evaluation", "training"},
    "adaptive": {"data", "models", "layers", "ops", "workdir", "evaluation", "training", "ship"},
    "verb": {"data", "models", "layers", "ops", "workdir", "evaluation", "training", "ship", "adaptive"},
}


def module_name(path):
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def stage(module):
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in CORE:
        return "core"
    if len(parts) == 2 and parts[1] in VERBS:
        return "verb"
    return parts[1]


def is_module(name):
    rel = pathlib.Path(*name.split("."))
    return (PKG.parent / rel).with_suffix(".py").exists() or (PKG.parent / rel / "__init__.py").exists()


def imports_of(path):
    """(line, imported sketchtf module) for every import statement in the file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "sketchtf"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "sketchtf":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((node.lineno, sub if is_module(sub) else node.module))
    return out


def graph():
    return {module_name(p): (p, imports_of(p)) for p in sorted(PKG.rglob("*.py"))}


def test_the_stage_folders_exist():
    for folder in ["data", "ops", "layers", "models", "training", "evaluation", "ship", "adaptive"]:
        assert (PKG / folder / "__init__.py").exists(), folder
    flat = sorted(p.stem for p in PKG.glob("*.py") if p.stem != "__init__")
    assert set(flat) == CORE | VERBS | {"workdir"}, f"top-level modules other than verbs and core: {flat}"


def import_violations(modules):
    bad = []
    for mod, (path, imports) in modules.items():
        mine = stage(mod)
        for line, target in imports:
            theirs = stage(target)
            if theirs == "verb" and target != mod:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: imports the command module {target}")
            elif theirs not in BELOW[mine] | {mine, "core"}:
                bad.append(f"{path.relative_to(PKG.parent)}:{line}: {mine} imports {target} ({theirs})")
    return bad


def test_every_import_points_down_the_stages():
    assert import_violations(graph()) == []


def test_the_rule_names_the_offending_import(tmp_path):
    # The checker itself: a model importing the trainer is reported with file and line.
    fake = {"sketchtf.models.bad": (PKG / "models" / "bad.py", [(7, "sketchtf.training.trainer")]),
            "sketchtf.data.worse": (PKG / "data" / "worse.py", [(3, "sketchtf.train")])}
    assert import_violations(fake) == [
        "sketchtf/models/bad.py:7: models imports sketchtf.training.trainer (training)",
        "sketchtf/data/worse.py:3: imports the command module sketchtf.train"]


def cycles(modules):
    """Strongly connected components with more than one module (Tarjan)."""
    edges = {m: {t for _, t in imps if t in modules and t != m} for m, (_, imps) in modules.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert cycles(graph()) == []


def test_the_circle_check_finds_one():
    fake = {"a": (None, [(1, "b")]), "b": (None, [(1, "c")]), "c": (None, [(1, "a")]), "d": (None, [(1, "a")])}
    assert cycles(fake) == [["a", "b", "c"]]


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_command_modules_are_thin(verb):
    # A command parses flags and calls into its stage: no library code lives there.
    tree = ast.parse((PKG / f"{verb}.py").read_text())
    functions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert len(functions) <= 6, f"sketchtf/{verb}.py defines {[f.name for f in functions]}"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "run" for n in tree.body), \
        f"sketchtf/{verb}.py has no run() for its console script"
