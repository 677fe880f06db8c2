"""Graph operators: the sparse normalised adjacency against a dense reference and RecBole's LightGCN."""

import numpy as np
import pytest
import torch
from recbole.data import data_preparation
from recbole.model.general_recommender import LightGCN

from recbole_mamex.config import Config
from recbole_mamex.model.graph import dataset_adjacency, normalized_adjacency
from recbole_mamex.data.loading import create_dataset

from helpers import FAST


def test_tiny_graph_equals_dense_reference():
    users = torch.tensor([0, 0, 1, 2, 2, 2])
    items = torch.tensor([0, 1, 1, 0, 2, 2])  # (2, 2) twice: counts once
    adjacency = normalized_adjacency(users, items, n_users=4, n_items=3).to_dense().numpy()
    a = np.zeros((7, 7))
    for u, i in {(0, 0), (0, 1), (1, 1), (2, 0), (2, 2)}:
        a[u, 4 + i] = a[4 + i, u] = 1
    d = a.sum(1) + 1e-7
    expected = a / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    np.testing.assert_allclose(adjacency, expected, rtol=1e-6, atol=1e-7)
    assert adjacency[3].sum() == 0  # user 3 has no interaction


def test_matches_recbole_lightgcn(tiny_dataset):
    config = Config(model="LightGCN", dataset="tiny", config_dict=FAST, cmd_args=[])
    train, _, _ = data_preparation(config, create_dataset(config))
    ours = dataset_adjacency(train._dataset).to_dense()
    theirs = LightGCN(config, train._dataset).norm_adj_matrix.to_dense()
    torch.testing.assert_close(ours, theirs)


def test_propagation_in_csr_with_the_symmetric_backward_matches_autograd_on_coo():
    from recbole_mamex.model.graph import csr_adjacency, normalized_adjacency, propagate

    torch.manual_seed(0)
    users, items = torch.randint(0, 30, (200,)), torch.randint(0, 40, (200,))
    coo = normalized_adjacency(users, items, 30, 40)
    x = torch.randn(70, 8, requires_grad=True)
    weights = torch.randn(70, 8)
    # reference: stacked layers of torch.sparse.mm on COO, autograd's own backward
    layers = [x]
    for _ in range(2):
        layers.append(torch.sparse.mm(coo, layers[-1]))
    reference = torch.stack(layers, dim=1).mean(dim=1)
    (expected_grad,) = torch.autograd.grad((reference * weights).sum(), x)
    for adjacency in (coo, csr_adjacency(coo)):
        out = propagate(adjacency, x, 2)
        (grad,) = torch.autograd.grad((out * weights).sum(), x)
        torch.testing.assert_close(out, reference)
        torch.testing.assert_close(grad, expected_grad)
    assert csr_adjacency(coo).layout == torch.sparse_csr


def test_csr_adjacency_refuses_an_asymmetric_matrix_and_propagate_runs_under_autocast():
    from recbole_mamex.model.graph import AdjacencyError, csr_adjacency, normalized_adjacency, propagate

    asymmetric = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 2]]), torch.tensor([1.0, 2.0]), (3, 3))
    with pytest.raises(AdjacencyError, match="expected a symmetric adjacency"):
        csr_adjacency(asymmetric)
    adjacency = csr_adjacency(normalized_adjacency(torch.tensor([0, 1, 2]), torch.tensor([1, 0, 2]), 3, 3))
    x = torch.randn(6, 4, requires_grad=True)
    reference = propagate(adjacency, x, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = propagate(adjacency, x, 2)
    out.sum().backward()
    assert out.dtype == torch.float32 and x.grad.dtype == torch.float32
    torch.testing.assert_close(out, reference)
