"""Political positions [RECON, EXPERIMENTS.md s.10]: PCA of policy utilities, entity rows define the axes (pure).

Each agent (the model itself, or the model simulating a politician or a party platform) has one standardised
utility per policy. The principal components are fitted on the entity rows (the `entities` fit: the axes are the
politicians', and the model is projected into them) or on every row (`all`); PC1 is oriented so that a named anchor
entity is negative, PC2 so that its largest loading is positive. Similarity of two agents is the cosine of their
standardised utility vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PoliticalPCA", "fit_political_pca", "cosine_matrix", "standardise_rows"]


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
