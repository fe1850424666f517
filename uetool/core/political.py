"""Political positions [RECON, EXPERIMENTS.md s.10]: PCA of policy utilities, entity rows define the axes (pure).

Each agent (the model itself, or the model simulating a politician or a party platform) has one standardised
utility per policy. The principal components are fitted on the entity rows (the `entities` fit: the axes are the
politicians', and the model is projected into them) or on every row (`all`); PC1 is oriented so that a named anchor
entity is negative, PC2 so that its largest loading is positive. Similarity of two agents is the cosine of their
standardised utility vectors.

Across models (`shared_political_map`, the sweep report) every model simulates the entities itself; the shared axes
are fitted on the consensus rows (per entity, the mean of the models' standardised rows, standardised again) over
the entities and policies all models were asked about, and each model's own row is projected into them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["PoliticalPCA", "fit_political_pca", "cosine_matrix", "standardise_rows", "SharedMap",
           "shared_political_map"]


@dataclass(frozen=True)
class PoliticalPCA:
    components: np.ndarray  # (2, policies): the axes, oriented
    explained: np.ndarray  # (2,): share of the fitted rows' variance each axis explains
    center: np.ndarray  # (policies,): the fitted rows' mean

    def project(self, rows: np.ndarray) -> np.ndarray:
        """(agents, 2) coordinates of standardised utility rows."""
        return (np.atleast_2d(rows) - self.center) @ self.components.T


def standardise_rows(rows: np.ndarray) -> np.ndarray:
    """Each row to mean 0, sd 1 over policies (what the fit already gives; repeated so any input compares)."""
    rows = np.atleast_2d(np.asarray(rows, np.float64))
    sd = rows.std(axis=1, ddof=1, keepdims=True)
    return (rows - rows.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)


def fit_political_pca(rows: np.ndarray, anchor_row: np.ndarray) -> PoliticalPCA:
    """Two principal components of `rows` (agents x policies, standardised), PC1 signed so that `anchor_row`
    projects below zero (when it projects at exactly 0 the sign is left as the SVD gives it)."""
    rows = np.atleast_2d(np.asarray(rows, np.float64))
    if rows.shape[0] < 3:
        raise ValueError(f"a political PCA needs at least 3 agents, got {rows.shape[0]}")
    center = rows.mean(axis=0)
    _, s, vt = np.linalg.svd(rows - center, full_matrices=False)
    components = vt[:2].copy()
    if (np.asarray(anchor_row, np.float64) - center) @ components[0] > 0:
        components[0] *= -1
    if components.shape[0] > 1 and components[1][np.argmax(np.abs(components[1]))] < 0:
        components[1] *= -1
    variance = s ** 2
    explained = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(2)
    return PoliticalPCA(components, explained, center)


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) cosine similarities of the rows of `a` with the rows of `b`."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    na, nb = np.linalg.norm(a, axis=1, keepdims=True), np.linalg.norm(b, axis=1, keepdims=True)
    return (a / np.where(na > 0, na, 1.0)) @ (b / np.where(nb > 0, nb, 1.0)).T


@dataclass(frozen=True)
class SharedMap:
    pca: PoliticalPCA
    entities: pd.DataFrame  # one row per entity: option_set, agent, kind, party, pc1, pc2
    models: pd.DataFrame  # one row per model: model, pc1, pc2, nearest_entity, nearest_cosine
    n_policies: int


def shared_political_map(items_by_model: dict[str, pd.DataFrame], anchor: str) -> SharedMap:
    """Every model's own position in one PCA fitted on the consensus entity rows (see the module's doc).

    `items_by_model`: each model's political_values items (option_set, agent, kind, party, policy, utility); rows
    another run supplied (`from_reference`) are not the model's own simulation and are left out of the consensus."""
    own, ai_rows = [], {}
    for model, items in items_by_model.items():
        if "from_reference" in items:
            items = items[~items["from_reference"].astype(bool)]
        table = items.pivot_table(index="option_set", columns="policy", values="utility", aggfunc="first")
        if "ai" not in table.index:
            raise ValueError(f"{model}: its political_values items have no 'ai' row")
        ai_rows[model] = table.loc["ai"]
        if len(table) > 1:
            own.append(table.drop(index="ai"))
    if not own:
        raise ValueError("no model's political_values run simulated any entity")
    entities = sorted(set.intersection(*(set(t.index) for t in own)))
    policies = sorted(set.intersection(*(set(t.columns) for t in own), *(set(r.index) for r in ai_rows.values())))
    if len(entities) < 3 or len(policies) < 3:
        raise ValueError(f"models share {len(entities)} entities and {len(policies)} policies; a shared map needs 3 "
                         "of each")
    consensus = standardise_rows(np.mean([standardise_rows(t.loc[entities, policies].to_numpy(np.float64))
                                          for t in own], axis=0))
    info = pd.concat(list(items_by_model.values())).drop_duplicates("option_set").set_index("option_set")
    names = info.loc[entities, "agent"].tolist()
    if anchor not in names:
        raise ValueError(f"the anchor {anchor!r} is not among the entities all models simulated")
    pca = fit_political_pca(consensus, consensus[names.index(anchor)])
    coords = pca.project(consensus)
    entity_frame = pd.DataFrame({"option_set": entities, "agent": names,
                                 "kind": info.loc[entities, "kind"].tolist(),
                                 "party": info.loc[entities, "party"].tolist(), "pc1": coords[:, 0],
                                 "pc2": coords[:, 1]})
    models = list(ai_rows)
    rows = standardise_rows(np.stack([ai_rows[m].loc[policies].to_numpy(np.float64) for m in models]))
    model_coords = pca.project(rows)
    cosine = cosine_matrix(rows, consensus)
    nearest = cosine.argmax(axis=1)
    model_frame = pd.DataFrame({"model": models, "pc1": model_coords[:, 0], "pc2": model_coords[:, 1],
                                "nearest_entity": [names[i] for i in nearest],
                                "nearest_cosine": cosine[np.arange(len(models)), nearest]})
    return SharedMap(pca, entity_frame, model_frame, len(policies))
