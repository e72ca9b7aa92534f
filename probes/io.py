"""Save and load fitted probes as safetensors (tensors) + JSON (everything else).

Nothing is pickled. The effective linear map (``weight``, ``bias``) is stored in float64
together with each method's extras (scaler statistics for ``logistic``, class means for
``lda``/``meandiff``), so a loaded probe scores exactly as the saved one did.

>>> import tempfile, torch
>>> from probes.methods import make_probe
>>> x = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]])
>>> probe = make_probe("lda").fit(x, [0, 0, 1, 1])
>>> with tempfile.TemporaryDirectory() as out:
...     _ = save_probe(probe, f"{out}/lda_L2")
...     torch.equal(load_probe(f"{out}/lda_L2").score(x), probe.score(x))
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from backdoor_models.core.artifacts import atomic_open, inside, read_json, sha256_file, write_json
from backdoor_models.core.errors import RunDirectoryError
from backdoor_models.core.provenance import git_revision
from probes.methods import Probe, make_probe
from probes.sites import Site

FORMAT_VERSION = 1


def _stem(path: str | Path) -> Path:
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path


def save_probe(
    probe: Probe, path: str | Path, *, site: Site | None = None, metadata: dict[str, Any] | None = None
) -> Path:
    """Write ``<path>.safetensors`` and ``<path>.json``; returns the JSON path."""
    weight = probe._require_fit()
    stem = _stem(path)
    tensors = {"weight": weight.contiguous(), "bias": torch.tensor([probe.bias], dtype=torch.float64)}
    tensors.update({f"extra.{k}": v.detach().contiguous() for k, v in probe.extras.items()})
    tensor_path = stem.with_name(stem.name + ".safetensors")
    with atomic_open(tensor_path, "wb") as handle:
        handle.write(safetensors_bytes(tensors))
    json_path = stem.with_name(stem.name + ".json")
    write_json(
        json_path,
        {
            "format_version": FORMAT_VERSION,
            "method": probe.name,
            "options": probe.options,
            "info": probe.info,
            "site": site.key if site is not None else None,
            "d": int(weight.shape[0]),
            "tensors": tensor_path.name,
            "tensors_sha256": sha256_file(tensor_path),
            "git_revision": git_revision(),
            "metadata": metadata or {},
        },
    )
    return json_path


def load_probe(path: str | Path) -> Probe:
    """Rebuild a probe saved by :func:`save_probe` (refuses a tensor file that was changed)."""
    stem = _stem(path)
    json_path = stem.with_name(stem.name + ".json")
    if not json_path.is_file():
        raise RunDirectoryError(f"{json_path} not found; pass the path given to save_probe()")
    meta = read_json(json_path)
    tensor_path = inside(json_path.parent, meta["tensors"], what=f"tensor file named in {json_path.name}")
    if not tensor_path.is_file() or sha256_file(tensor_path) != meta["tensors_sha256"]:
        raise RunDirectoryError(
            f"{tensor_path} is missing or does not match the sha256 in {json_path.name}; "
            "refit and save the probe again"
        )
    tensors = load_file(str(tensor_path))
    probe = make_probe(meta["method"], **meta["options"])
    probe.weight = tensors["weight"]
    probe.bias = float(tensors["bias"][0])
    probe.extras = {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}
    probe.info = dict(meta.get("info", {}))
    return probe


def probe_site(path: str | Path) -> Site | None:
    """The site a saved probe was fit at, if recorded."""
    key = read_json(_stem(path).with_name(_stem(path).name + ".json")).get("site")
    return Site.from_key(key) if key else None
