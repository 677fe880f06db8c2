"""FREEDOM: the frozen item-item kNN graph (neighbours, normalisation, blocks, modality weights, missing
modalities), degree-sensitive pruning of the user-item graph, shapes and gradients, cold items, learning."""

import json

import numpy as np
import pytest
import torch

from recbole_mamex.config import Config
from recbole_mamex.errors import ConfigError
from recbole_mamex.model.freedom import (
    FREEDOM, _DirectedProduct, combine_modalities, edge_keep_weights, keep_edges, modality_knn, modality_weights,
)
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.registry import get_model, our_models, proposed_models

from helpers import (
    FAST, batch, build_model, check_step_and_scores_with_missing_modalities, cold_and_warm_items,
    cold_recall_on_content_data, full_scores, item_id,
)


def build(dataset="tiny", **overrides):
    _, data, train, model = build_model(FREEDOM, dataset, **{"embedding_size": 8, **overrides})
    return data, train, model


def dense(rows, cols, values, n):
    out = torch.zeros(n, n)
    out.index_put_((rows, cols), values, accumulate=True)
    return out


# ----------------------------------------------------------------------------- the kNN graph
# six items on a plane (item 0 is padding, no features): 1 and 2 point one way, 3 and 4 another, 5 between
PLANE = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, -0.1], [0.0, 1.0], [0.1, 3.0], [1.0, 0.9]])
HAS = torch.tensor([False, True, True, True, True, True])


def test_knn_neighbours_and_normalisation_on_a_hand_made_matrix():
    trained = torch.ones(6, dtype=torch.bool)
    rows, cols, values = modality_knn(lambda: [(0, PLANE)], HAS, trained, k=2)
    graph = dense(rows, cols, values, 6)
    neighbours = {i: set(torch.nonzero(graph[i]).flatten().tolist()) for i in range(6)}
    # each item: itself (cosine 1) and its most similar other item; the padding row gets nothing
    assert neighbours == {0: set(), 1: {1, 2}, 2: {2, 1}, 3: {3, 4}, 4: {4, 3}, 5: {5, 1}}
    # D^-1/2 S D^-1/2 with D the row sums (2 everywhere): every entry 1/2
    torch.testing.assert_close(values, torch.full_like(values, 0.5))
    # item 5 (cosine 0.743 with 1, 0.709 with 2) is no neighbour of 1: the graph is directed, as the authors'
    assert graph[1, 5] == 0 and graph[5, 1] > 0


def test_cold_items_are_no_neighbours_but_get_their_own_row():
    trained = torch.tensor([False, True, False, True, True, True])  # item 2 is cold
    rows, cols, values = modality_knn(lambda: [(0, PLANE)], HAS, trained, k=2)
    graph = dense(rows, cols, values, 6)
    assert graph[:, 2].nonzero().flatten().tolist() == [2]  # only its own row points to it
    assert set(graph[2].nonzero().flatten().tolist()) == {2, 1}  # itself and its nearest training item
    assert set(graph[1].nonzero().flatten().tolist()) == {1, 5}  # item 1's next best, now that 2 is cold


def test_fewer_candidates_than_k_gives_shorter_rows_normalised_by_their_length():
    trained = torch.tensor([False, True, False, False, False, False])  # one training item
    rows, cols, values = modality_knn(lambda: [(0, PLANE)], HAS, trained, k=10)
    graph = dense(rows, cols, values, 6)
    assert graph[1].nonzero().flatten().tolist() == [1] and graph[1, 1] == pytest.approx(1.0)
    # a cold item: itself and item 1 (2 entries), item 1's row has 1: 1/sqrt(2 * 1) and 1/sqrt(2 * 2)
    assert graph[3, 1] == pytest.approx(2 ** -0.5) and graph[3, 3] == pytest.approx(0.5)


def test_blockwise_knn_equals_the_whole_matrix():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(300, 16, generator=generator)
    has = torch.rand(300, generator=generator) > 0.1
    features[~has] = 0.0
    trained = torch.rand(300, generator=generator) > 0.3
    whole = modality_knn(lambda: [(0, features)], has, trained, k=7)
    # the same graph, row by row, from store blocks of 37 rows and similarity blocks of 5 queries
    blocks = lambda: [(s, features[s : s + 37].numpy()) for s in range(0, 300, 37)]  # noqa: E731
    split = modality_knn(blocks, has, trained, k=7, block_rows=5)
    torch.testing.assert_close(dense(*split, 300), dense(*whole, 300))
    # and the brute force: cosine similarities, a full sort per row
    unit = torch.nn.functional.normalize(features, dim=1)
    similarity = unit @ unit.T
    similarity[:, ~(has & trained)] = float("-inf")
    similarity[torch.arange(300), torch.arange(300)] = float("inf")  # itself first
    expected = torch.zeros(300, 300)
    for i in torch.nonzero(has).flatten():
        expected[i, similarity[i].argsort(descending=True)[:7]] = 1.0 / 7
    torch.testing.assert_close(dense(*whole, 300), expected)
    assert (dense(*whole, 300)[~has] == 0).all() and (dense(*whole, 300)[:, ~has] == 0).all()


def test_modalities_combine_with_weights_renormalised_over_the_ones_an_item_has():
    # two modalities over 4 items; item 3 lacks the second
    first = (torch.tensor([1, 2, 3]), torch.tensor([2, 1, 1]), torch.tensor([1.0, 1.0, 1.0]))
    second = (torch.tensor([1, 2]), torch.tensor([1, 1]), torch.tensor([1.0, 1.0]))
    mask = torch.tensor([[False, False], [True, True], [True, True], [True, False]])
    graph = combine_modalities({"image": first, "text": second}, {"image": 0.1, "text": 0.9}, mask, 4).to_dense()
    assert graph[1, 2] == pytest.approx(0.1) and graph[1, 1] == pytest.approx(0.9)
    assert graph[2, 1] == pytest.approx(1.0)  # 0.1 (image) + 0.9 (text) on the same neighbour
    assert graph[3, 1] == pytest.approx(1.0)  # image only: its weight renormalised to 1
    # a modality with weight 0 is left out
    graph = combine_modalities({"image": first, "text": second}, {"image": 0.0, "text": 1.0}, mask, 4).to_dense()
    assert graph[1, 2] == 0 and graph[3].sum() == 0


def test_modality_weights_follow_the_authors_for_image_and_text_and_generalise():
    assert modality_weights(["image", "text"], 0.1, None) == pytest.approx({"image": 0.1, "text": 0.9})
    assert modality_weights(["text", "image", "audio"], 0.1, None) == pytest.approx({"text": 0.45, "image": 0.1, "audio": 0.45})
    assert modality_weights(["text", "vggish", "whisper"], 0.1, None) == pytest.approx({n: 1 / 3 for n in ("text", "vggish", "whisper")})
    assert modality_weights(["image"], 0.1, None) == {"image": 1.0}
    assert modality_weights(["text", "audio"], 0.1, {"text": 3, "audio": 1}) == {"text": 0.75, "audio": 0.25}
    assert modality_weights(["text", "audio"], 0.1, {"text": 1}) == {"text": 1.0, "audio": 0.0}
    with pytest.raises(ConfigError, match=r"modality_weights: expected modalities of the dataset \(text, audio\), found \['image'\]"):
        modality_weights(["text", "audio"], 0.1, {"image": 1.0})
    with pytest.raises(ConfigError, match="modality_weights: expected numbers >= 0 with a positive sum"):
        modality_weights(["text", "audio"], 0.1, {"text": 0, "audio": 0})
    with pytest.raises(ConfigError, match=r"mm_image_weight: expected a number in \[0, 1\], found 1.5"):
        modality_weights(["image", "text"], 1.5, None)


def test_the_directed_product_backpropagates_through_the_transpose():
    generator = torch.Generator().manual_seed(2)
    matrix = torch.rand(6, 6, generator=generator) * (torch.rand(6, 6, generator=generator) > 0.6)
    assert not torch.equal(matrix, matrix.T)
    x = torch.randn(6, 3, generator=generator, requires_grad=True)
    upstream = torch.randn(6, 3, generator=generator)
    out = _DirectedProduct.apply(matrix.to_sparse_csr(), matrix.T.to_sparse_csr(), x)
    torch.testing.assert_close(out, matrix @ x)
    (grad,) = torch.autograd.grad((out * upstream).sum(), [x])
    torch.testing.assert_close(grad, matrix.T @ upstream)


# ----------------------------------------------------------------------------- pruning
def test_pruning_keeps_the_expected_edges_and_drops_high_degree_products_more():
    # user 0 and item 0 are hubs; every other user has one item
    users = torch.tensor([0] * 20 + list(range(1, 41)))
    items = torch.tensor(list(range(20)) + [0] * 20 + list(range(20, 40)))
    weights = edge_keep_weights(users, items, 41, 40)
    torch.testing.assert_close(weights[0], torch.tensor((20.0 * 21.0) ** -0.5))  # the hub-hub edge
    generator = torch.Generator().manual_seed(1)
    kept = torch.zeros(len(weights))
    for _ in range(2000):
        index = keep_edges(weights, 12, generator)
        assert len(index) == 12 and len(index.unique()) == 12  # 12 distinct edges, every draw
        kept[index] += 1
    rate = kept / 2000
    low = torch.arange(40, 60)  # the one-edge users' own items: degree product 1
    high = torch.arange(1, 20)  # hub user, one-edge items: degree product 20
    assert rate[low].mean() > 3 * rate[high].mean()  # kept far more often
    assert rate[0] < rate[high].mean()  # the hub-hub edge is the most pruned
    # and each rate is what sampling without replacement by these weights gives (successive draws)
    expected = torch.zeros(len(weights))
    for _ in range(2000):
        expected[torch.multinomial(weights, 12, replacement=False, generator=generator)] += 1
    torch.testing.assert_close(rate, expected / 2000, atol=0.04, rtol=0)


def test_the_pruned_graph_is_normalised_over_the_kept_edges_and_redrawn_each_epoch(tiny_dataset):
    _, train, m = build(dropout=0.5)
    n_edges = len(m.edge_weights)
    assert n_edges == len(set(zip(train._dataset.inter_feat["user_id"].tolist(), train._dataset.inter_feat["item_id"].tolist())))
    m.train()
    m.calculate_loss(batch([1], [2], [3]))
    first = m._pruned
    assert first._nnz() == 2 * int(n_edges * 0.5)  # both directions of the kept edges
    graph = first.to_dense()
    degree = (graph != 0).sum(1).float()
    rows, cols = torch.nonzero(graph, as_tuple=True)
    torch.testing.assert_close(graph[rows, cols], (degree[rows] * degree[cols]).rsqrt())
    m.calculate_loss(batch([1], [2], [3]))
    assert m._pruned is first  # one draw per epoch
    m.eval()
    m.train()  # RecBole's trainer, at the next epoch
    m.calculate_loss(batch([1], [2], [3]))
    assert m._pruned is not first and not torch.equal(m._pruned.to_dense(), graph)
    # evaluation propagates over the whole graph
    m.eval()
    users, items = m._final_embeddings()
    expected = m.forward(m.norm_adj_matrix)
    torch.testing.assert_close(items, expected[1])


# ----------------------------------------------------------------------------- the model
def test_registered_as_a_baseline_with_the_authors_defaults(tiny_dataset):
    assert get_model("FREEDOM") is FREEDOM and "FREEDOM" in our_models() and FREEDOM.is_baseline
    assert "FREEDOM" not in proposed_models()
    config = Config(model="FREEDOM", dataset="tiny", config_dict=FAST, cmd_args=[])
    expected = {"embedding_size": 64, "knn_k": 10, "n_mm_layers": 1, "n_ui_layers": 2, "mm_image_weight": 0.1,
                "modality_weights": None, "dropout": 0.8, "reg_weight": 1e-4, "feature_finetune": True, "feature_norm": "l2",
                "learning_rate": 0.001}
    assert {key: config[key] for key in expected} == expected


def test_shapes_loss_and_finite_gradients_with_missing_modalities(tiny_dataset):
    data, _, m = build()
    item5, item7 = check_step_and_scores_with_missing_modalities(m, data)  # no text, no audio
    assert not m.modality_mask[item5, 0] and not m.modality_mask[item7, 1]
    # the training step's gradients
    assert m.item_id_embedding.weight.grad.abs().sum() > 0 and m.projections["text"].weight.grad.abs().sum() > 0
    assert m.tuned_features[0].grad.abs().sum() > 0  # the authors' trainable features
    # the item without text: no row and no column in the text graph; its row of S is its audio row
    _, _, text_only = build(modality_weights={"text": 1.0})
    _, _, audio_only = build(modality_weights={"audio": 1.0})
    graph, text_graph, audio_graph = (g.item_graph.to_dense() for g in (m, text_only, audio_only))
    assert text_graph[item5].sum() == 0 and text_graph[:, item5].sum() == 0
    torch.testing.assert_close(graph[item5], audio_graph[item5])
    torch.testing.assert_close(graph[1], 0.5 * (text_graph[1] + audio_graph[1]))  # both: equal weights


def test_modality_terms_count_triples_whose_items_both_have_the_modality(tiny_dataset):
    data, _, m = build(feature_finetune=False)
    item5 = item_id(data, "5")  # no text
    a, b, c = torch.nonzero(m.modality_mask.all(1)).flatten()[:3].tolist()
    u = torch.randn(2, 8)
    loss = m.modality_loss(u, torch.tensor([a, item5]), torch.tensor([b, c]))
    bpr = torch.nn.functional.logsigmoid

    def scores(name, items):  # u . (W f_pos + b) - u . (W f_neg + b): the bias cancels
        f = m.modality_features(name)
        return [(u[k] * m.projections[name](f[i] - f[j]) - u[k] * m.projections[name].bias).sum() for k, (i, j) in items]

    text = -bpr(scores("text", [(0, (a, b))])[0])  # the triple with item 5 is left out of the text term
    audio = -bpr(torch.stack(scores("audio", [(0, (a, b)), (1, (item5, c))]))).mean()
    torch.testing.assert_close(loss, text + audio)


def test_cold_items_have_no_id_part_and_content_dependent_scores(cold_tiny):
    data, train, m = build(dataset="tiny-cold")
    trained = m.item_has_training
    cold, _ = cold_and_warm_items(m)
    assert len(cold) and trained.sum() > 1
    before = full_scores(m, users=(1, 2, 3, 4, 5))
    assert (before[:, cold] != 0).all()
    # a cold item's score is u . h_i: S's row over the training items' ID embeddings (its own is 0)
    with torch.no_grad():
        user_e, _ = m.forward(m.norm_adj_matrix)
        ids = m.item_id_embedding.weight * trained.unsqueeze(1)
        expected = user_e[1:6] @ (m.item_graph.to_dense()[cold] @ ids).T
    torch.testing.assert_close(before[:, cold], expected)
    graph = m.item_graph.to_dense()
    assert (graph[:, cold][~torch.isin(torch.arange(m.n_items), cold)] == 0).all()  # no item's neighbour
    # its own ID embedding changes nothing; its features do (through its neighbours)
    with torch.no_grad():
        m.item_id_embedding.weight[cold] += 1.0
    torch.testing.assert_close(full_scores(m, users=(1, 2, 3, 4, 5))[:, cold], before[:, cold])
    text = np.load(cold_tiny / "text.npy")
    token = data.id2token("item_id", [int(cold[0])])[0]
    other = next(t for t in data.field2token_id["item_id"] if t != "[PAD]" and trained[item_id(data, t)] and t != token)
    text[int(token)] = text[int(other)] * 5.0  # now its text is a trained item's
    np.save(cold_tiny / "text.npy", text)
    _, _, changed = build(dataset="tiny-cold")
    assert not torch.equal(changed.item_graph.to_dense()[cold[0]], graph[cold[0]])
    assert changed.item_graph.to_dense()[cold[0], item_id(data, other)] > 0


def test_bad_settings_are_clear_errors(tiny_dataset):
    for key, value, message in [
        ("knn_k", 0, "knn_k: expected an integer >= 1, found 0"),
        ("n_ui_layers", -1, "n_ui_layers: expected an integer >= 0, found -1"),
        ("dropout", 1.0, r"dropout: expected a number in \[0, 1\), found 1.0"),
        ("modality_weights", {"image": 1.0}, r"modality_weights: expected modalities of the dataset \(text, audio\)"),
    ]:
        with pytest.raises(ConfigError, match=message):
            build(**{key: value})


def test_feature_storage_rounds_the_projection_inputs_only(cold_tiny):
    _, train, wide = build(dataset="tiny-cold", feature_finetune=False, reg_weight=1.0)
    _, _, narrow = build(dataset="tiny-cold", feature_finetune=False, reg_weight=1.0, feature_storage="bf16")
    narrow.load_state_dict(wide.state_dict())
    assert narrow.modality_features("text").dtype == torch.bfloat16
    torch.testing.assert_close(narrow.item_graph.to_dense(), wide.item_graph.to_dense(), rtol=0, atol=0)  # raw features
    b = next(iter(train))
    wide.eval(), narrow.eval()
    with torch.no_grad():
        assert torch.equal(wide.full_sort_predict(b), narrow.full_sort_predict(b))
    torch.manual_seed(0)
    wide.train()
    a = wide.calculate_loss(b)
    torch.manual_seed(0)
    narrow.train()
    c = narrow.calculate_loss(b)
    assert a != c and torch.isclose(a, c, rtol=0.02)


# ----------------------------------------------------------------------------- learning
def test_learns_cold_items_from_content(workdir):
    cold, chance = cold_recall_on_content_data(workdir, "FREEDOM", 30, embedding_size=32, learning_rate=0.01)
    assert cold > 2 * chance, (cold, chance)


# ----------------------------------------------------------------------------- new items
@pytest.mark.parametrize("settings", [{}, {"feature_finetune": False, "n_mm_layers": 2}])
def test_a_cold_item_given_as_new_gets_its_dataset_score(cold_tiny, settings):
    """The check of tests/test_new_items.py for the content models: a dataset cold item passed again as a new
    item (one of them without its text) gets its row of the frozen graph, so its dataset score; no existing
    item's row changes."""
    from recbole_mamex.serving import Recommender

    text = np.load(cold_tiny / "text.npy")
    held = json.loads((cold_tiny / "tiny-cold.cold_items.json").read_text())["cold_test"]
    text[int(held[0])] = 0.0
    np.save(cold_tiny / "text.npy", text)
    result = run_recbole_mamex("FREEDOM", "tiny-cold", config_dict={**FAST, "epochs": 2, **settings}, cmd_args=[])
    server = Recommender(result["model_file"])
    cold = [str(t) for t in server.dataset.cold_item_tokens["test"]]
    before = server.model.item_graph.to_dense()
    rows = {name: np.load(cold_tiny / f"{name}.npy")[[int(t) for t in cold]] for name in ("text", "audio")}
    new = [f"new-{t}" for t in cold]
    assert server.add_items(new, rows) == new
    assert not server.model.modality_mask[server.item_ids[f"new-{held[0]}"], 0]
    graph = server.model.item_graph.to_dense()
    torch.testing.assert_close(graph[: len(before), : len(before)], before, rtol=0, atol=0)  # frozen
    original = [server.item_ids[t] for t in cold]
    copies = [server.item_ids[t] for t in new]
    # each copy's row is the original's, its self-neighbour moved to its own id
    for o, c in zip(original, copies):
        expected = graph[o].clone()
        expected[c], expected[o] = expected[o], 0.0
        torch.testing.assert_close(graph[c], expected)
    users = [str(u) for u in server.dataset.field2id_token["user_id"][1:]]
    scores = server.scores(server.user_ids(users))
    assert torch.allclose(scores[:, copies], scores[:, original], rtol=1e-5, atol=1e-6)
    assert scores[:, original].std() > 0
