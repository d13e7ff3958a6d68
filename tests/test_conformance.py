"""Every registered generator passes synthkit.testing.check_generator (as DESIGN.md requires).

A generator registered later is picked up here automatically; give it quick settings in FAST
if its defaults train for long.
"""

from __future__ import annotations

import pytest

import synthkit as sk
from synthkit.testing import check_generator

#: Settings that keep each family's run short on two CPU cores.
FAST = {
    "tabular/ctgan": {"epochs": 2, "batch_size": 100, "progress": False},
    "tabular/tvae": {"epochs": 2, "batch_size": 100, "progress": False},
    "tabular/ddpm": {"epochs": 2, "batch_size": 100, "hidden_dims": (64, 64), "timesteps": 50,
                     "progress": False},
    "tabular/argn": {"epochs": 2, "batch_size": 200, "embedding_dim": 32, "feedforward_dim": 64,
                     "progress": False},
    "sdv/GaussianCopulaSynthesizer": {},
    "tabular/dpcopula": {"dp": {"epsilon": 10.0, "delta": 1e-5}},
    "tabular/auto": {"candidates": ["tabular/tvae"], "min_neural_rows": 10,
                     "options": {"tabular/tvae": {"epochs": 2, "batch_size": 100}}},
}
#: A concrete name for each wildcard registration.
WILDCARDS = {"sdv/*": "sdv/GaussianCopulaSynthesizer"}


def _names() -> list[str]:
    # image and text families learn ImageSets / corpora, not tables: test_images.py, test_text.py
    names = [n for n in sk.available_generators() if not n.startswith(("image/", "text/"))]
    # tabular/endpoint needs a chat-completions server: test_text_endpoint.py runs this suite on it
    names = [n for n in names if n != "tabular/endpoint"]
    # tabular/with-text needs a text column (wage has none): test_with_text.py runs this suite on one
    names = [n for n in names if n != "tabular/with-text"]
    return sorted(WILDCARDS.get(name, name) for name in names)


@pytest.mark.parametrize("name", _names())
def test_registered_generator_conforms(name: str, wage_small, tmp_path) -> None:
    passed = check_generator(sk.create(name, seed=0, **FAST.get(name, {})), wage_small, tmp_path=tmp_path)
    assert "save_load_round_trip" in passed
