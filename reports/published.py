"""The papers' numbers (reports/published.toml) and what makes ours comparable with them.

Every `[[entry]]` names its method, architecture, dataset, metric, value, source,
convention, the paper's epochs (0: not stated) and whether the setting can be compared at
all (`comparable`). A test-error entry also declares, before any run, its equivalence
margin (`margin_pp`, percentage points) with a one-line justification (`margin_why`), and,
when comparable, the paper's training recipe (`recipe`, the name of a `[recipe.NAME]`
table in our spec keys plus `augmentation`), so that the comparison below is mechanical.
Optional: `n_train` (the paper's training images, when it states them), `hparams` (where
the paper's configuration differs from our method's defaults, in its options), `paper_n` and `paper_sd_pp` (when the
paper reports its own seeds and spread), and for op counts `resolution` (the unit of the
printed figure, e.g. 10000 for "≈68.10M").

`mismatches` compares one entry with one setting of ours: a different recipe, dataset
size, architecture or a longer budget makes the row *not comparable*; a shorter budget of
the same recipe is a *reduced budget*. Hardware never does: another CPU or GPU model
changes a run as another seed does (the spread over seeds covers it).
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pandas as pd

from harness.errors import UserError

PUBLISHED = Path(__file__).with_name("published.toml")
ENTRY_KEYS = {"method", "arch", "dataset", "metric", "value", "source", "convention", "epochs",
              "comparable"}
ABLATION_KEYS = {"name", "with", "without", "arch", "dataset", "paper_with", "paper_without",
                 "source"}
# the recipe keys a run spec records; `augmentation` is "none" for every run (the harness has none)
RECIPE_KEYS = ("optimizer", "lr", "batch_size", "schedule", "lr_min", "momentum", "weight_decay",
               "warmup_epochs", "clip_norm", "augmentation")
OUR_AUGMENTATION = "none"


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: cannot read the published numbers ({exc}); fix the file") from None


def _check_entry(path: Path, i: int, e: dict, recipes: dict) -> None:
    where = f"{path}: entry[{i}] ({e.get('method')}/{e.get('arch')} {e.get('metric')})"
    missing = ENTRY_KEYS - set(e)
    if missing:
        raise UserError(f"{where} lacks {sorted(missing)}; add them")
    if not str(e["source"]).strip() or not str(e["convention"]).strip():
        raise UserError(f"{where} has an empty source or convention; say where the number comes from")
    if e["metric"] != "test_error":
        return
    if not isinstance(e.get("margin_pp"), (int, float)) or not e["margin_pp"] > 0 \
            or not str(e.get("margin_why", "")).strip():
        raise UserError(f"{where} declares no equivalence margin; add margin_pp (> 0, percentage "
                        f"points) and margin_why (one line: why this margin)")
    if e["comparable"] and e.get("recipe") not in recipes:
        raise UserError(f"{where} is comparable but names no [recipe.NAME] table "
                        f"(recipe = {e.get('recipe')!r}); add the paper's recipe")
    if ("paper_n" in e) != ("paper_sd_pp" in e) or ("paper_n" in e and not e["paper_n"] >= 2):
        raise UserError(f"{where}: give paper_n (>= 2) and paper_sd_pp together, or neither")


def load(path: Path = PUBLISHED) -> tuple[pd.DataFrame, dict]:
    """(entries, recipes): every entry checked, every recipe with all RECIPE_KEYS."""
    doc = _read(path)
    recipes = doc.get("recipe", {})
    for name, r in recipes.items():
        missing = set(RECIPE_KEYS) - set(r)
        if missing:
            raise UserError(f"{path}: [recipe.{name}] lacks {sorted(missing)}; state them "
                            f"(the paper's value, or the reading of an unstated one)")
    entries = doc.get("entry", [])
    for i, e in enumerate(entries):
        _check_entry(path, i, e, recipes)
    return pd.DataFrame(entries), recipes


def load_published(path: Path = PUBLISHED) -> pd.DataFrame:
    """The papers' numbers; every entry must name its source and convention."""
    return load(path)[0]


def load_ablations(path: Path = PUBLISHED) -> list[dict]:
    out = []
    for i, a in enumerate(_read(path).get("ablation", [])):
        missing = ABLATION_KEYS - set(a)
        if missing:
            raise UserError(f"{path}: ablation[{i}] lacks {sorted(missing)}; add them")
        out.append(a)
    return out


def paper_configuration(entry) -> dict:
    """The paper's method options: the method's defaults (our reading of the paper) with the
    entry's `hparams` over them. A record holds every option, resolved."""
    import methods

    try:
        defaults = methods.get(entry["method"]).hparam_defaults(entry["arch"])
    except UserError:          # not a registered method: only what the entry states
        defaults = {}
    return {**defaults, **(_given(entry, "hparams") or {})}


def spec_defaults() -> dict:
    """RunSpec's defaults: what a record written before a recipe key existed ran with."""
    import dataclasses

    from harness.spec import RunSpec
    return {f.name: f.default for f in dataclasses.fields(RunSpec)
            if f.default is not dataclasses.MISSING}


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-15)
    return a == b


def _given(entry, key):
    """An optional entry field: None when absent (NaN in a DataFrame row)."""
    v = entry.get(key) if hasattr(entry, "get") else None
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def mismatches(entry, recipes: dict, spec: dict, epochs: float, subset: int,
               n_train) -> tuple[list[str], str]:
    """(reasons the row is not comparable, the reduced-budget note or '').

    `spec` is a run spec of ours (the first run of the row), `epochs` the epochs it ran.
    """
    if not entry["comparable"]:
        return [f"the paper's setting differs ({entry['convention']})"], ""
    reasons = []
    recipe = recipes.get(_given(entry, "recipe"))
    if recipe is None:
        reasons.append("the paper's recipe is not stated in published.toml")
    else:
        ours = {**spec_defaults(), **spec, "augmentation": OUR_AUGMENTATION}
        diff = [f"{k}: ours {ours.get(k)}, the paper's {recipe[k]}" for k in RECIPE_KEYS
                if not _same(ours.get(k), recipe[k])]
        if diff:
            reasons.append("recipe differs (" + "; ".join(diff) + ")")
    if subset:
        reasons.append(f"ours trained on a subset ({int(subset):,} images)")
    paper_n = _given(entry, "n_train")
    if paper_n and n_train is not None and not _same(int(n_train), int(paper_n)):
        reasons.append(f"training images: ours {int(n_train):,}, the paper's {int(paper_n):,}")
    theirs = paper_configuration(entry)
    ours_hp = spec.get("hparams") or {}
    arch = [f"{k}: ours {ours_hp[k]}, the paper's {theirs.get(k, '(no such option)')}"
            for k in sorted(ours_hp) if k not in theirs or not _same(ours_hp[k], theirs[k])]
    if arch:
        reasons.append("architecture differs (" + "; ".join(arch) + ")")
    paper_epochs = int(entry["epochs"] or 0)
    if not paper_epochs:
        reasons.append("the paper's budget is not stated")
    elif epochs > paper_epochs:
        reasons.append(f"budget differs: ours {epochs:g} epoch{'' if epochs == 1 else 's'}, the paper's {paper_epochs}")
    elif epochs < paper_epochs:
        return reasons, f"{epochs:g} of the paper's {paper_epochs} epochs"
    return reasons, ""
