"""Activation clustering (Chen et al. 2018): two clusters of the scored batch, one of them suspect.

Chen et al. reduce activations to 10 dimensions (ICA) and split them with 2-means; a
poisoned class splits into a large clean and a small poisoned cluster. Here the reduction
(PCA) is fit on trusted clean activations and the scored stream is clustered. Which cluster
is suspect is decided with the trusted data rather than by size (a stream may hold more
triggered than clean prompts): the one whose centre lies farther from the clean mean. A
prompt's score is how much closer it lies to the suspect centre than to the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA

from detect.activations import ActivationDetector, ActivationOptions
from detect.base import TrustedData


@dataclass(frozen=True, kw_only=True)
class ClusteringOptions(ActivationOptions):
    """Options of :class:`ActivationClustering`."""

    components: int = 10
    """Dimension the activations are reduced to before clustering (capped by d_model and the trusted prompts)."""

    positive = ("components",)


class ActivationClustering(ActivationDetector):
    """PCA fit on trusted activations, then a 2-means of the scored stream."""

    name = "clustering"
    cost = "one forward pass per prompt and a 2-means of the scored batch"
    batch_dependent = True
    Options = ClusteringOptions
    options: ClusteringOptions

    def _fit_acts(self, x: np.ndarray, data: TrustedData) -> None:
        k = min(self.options.components, x.shape[1], x.shape[0] - 1)
        self.pca = PCA(n_components=k, random_state=data.seed).fit(x)

    def _score_acts(self, x: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        z = self.pca.transform(x)
        km = KMeans(n_clusters=2, n_init=10, random_state=self.seed).fit(z)
        centres = km.cluster_centers_
        suspect = int(np.argmax(np.linalg.norm(centres, axis=1)))  # PCA coordinates: the clean mean is 0

        def score(points: np.ndarray) -> np.ndarray:
            d = np.linalg.norm(points[:, None, :] - centres[None], axis=2)
            return d[:, 1 - suspect] - d[:, suspect]

        self.details["suspect_cluster_share"] = float(np.mean(km.labels_ == suspect))
        return score(z), None if reference is None else score(self.pca.transform(reference))
