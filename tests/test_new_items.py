"""Serving items that arrive after training: scored from their features as the dataset's cold items are,
with one clear error per bad input; every user's top-k written to a file."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_mamex.errors import InputFileError
from recbole_mamex.new_items import NewItemsError
from recbole_mamex.quick_start import run_recbole_mamex
from recbole_mamex.serving import Recommender, ServingError, main

from helpers import FAST

CONTENT_MODELS = [
    ("MAMEX", {}),
    ("MAMEX", {"feature_norm": "center_l2"}),  # the training items' centre is applied to new items too
    ("MILK", {}),
    ("VBPR", {}),
    ("CLCRec", {}),
    ("ContentProfile", {"epochs": 1}),
    ("RLMultimodalRec", {"cold_item_id": False}),
    ("VBPR", {"use_bias": False}),
    ("MAMEX", {"feature_storage": "bf16"}),  # new rows stored as the training's rows are
    ("CLCRec", {"feature_norm": "none"}),
    ("ALDI", {}),
    ("DropoutNet", {}),
]


def train(model, **overrides):
    config = {**FAST, "epochs": 2, **overrides}
    return run_recbole_mamex(model=model, dataset="tiny-cold", config_dict=config, cmd_args=[])["model_file"]


def raw_rows(cold_tiny, tokens):
    """Each modality's rows of ``tokens`` as the dataset's files hold them (row i = item token i)."""
    return {name: np.load(cold_tiny / f"{name}.npy")[[int(t) for t in tokens]] for name in ("text", "audio")}


def cold_test_items(server):
    return [str(t) for t in server.dataset.cold_item_tokens["test"]]


@pytest.mark.parametrize("model, overrides", CONTENT_MODELS, ids=[m + "".join(f"-{k}={v}" for k, v in o.items()) for m, o in CONTENT_MODELS])
def test_a_cold_item_given_as_new_gets_its_dataset_score_and_rank(cold_tiny, model, overrides):
    # one cold-test item lacks its text (a zero row): as a new item it must follow the same missing-modality rule
    text = np.load(cold_tiny / "text.npy")
    held = json.loads((cold_tiny / "tiny-cold.cold_items.json").read_text())["cold_test"]
    text[int(held[0])] = 0.0
    np.save(cold_tiny / "text.npy", text)

    server = Recommender(train(model, **overrides))
    cold = cold_test_items(server)
    assert len(cold) >= 3 and held[0] in cold
    new = [f"new-{t}" for t in cold]
    assert server.add_items(new, raw_rows(cold_tiny, cold)) == new
    assert not server.model.modality_mask[server.item_ids[f"new-{held[0]}"], 0]  # text missing, as in the dataset

    users = [str(u) for u in server.dataset.field2id_token["user_id"][1:]]
    scores = server.scores(server.user_ids(users))
    original = scores[:, [server.item_ids[t] for t in cold]]
    copies = scores[:, [server.item_ids[t] for t in new]]
    assert torch.allclose(copies, original, rtol=1e-5, atol=1e-6), (copies - original).abs().max()
    assert original.std() > 0  # a real ranking, not all ties

    by_dataset = server.recommend(users, k=len(cold), candidates="cold")
    by_new = server.recommend(users, k=len(cold), candidates="new")
    for user in users:
        assert [f"new-{r.item}" for r in by_dataset[user]] == [r.item for r in by_new[user]], user
    # one copy among the dataset's other cold items takes the original's rank
    swapped = [t for t in cold if t != cold[1]] + [f"new-{cold[1]}"]
    mixed = server.recommend(users, k=len(cold), candidates=swapped)
    for user in users:
        assert [r.item.removeprefix("new-") for r in mixed[user]] == [r.item for r in by_dataset[user]], user


def test_new_item_checks_and_forms(cold_tiny, tmp_path):
    server = Recommender(train("MAMEX"))
    cold = cold_test_items(server)
    rows = raw_rows(cold_tiny, cold[:2])

    def refused(match, tokens, features):
        with pytest.raises(NewItemsError, match=match):
            server.add_items(tokens, features)

    refused(r"features\['text'\]: expected rows of 8 values .*found 5", ["a", "b"], {"text": np.ones((2, 5)), "audio": rows["audio"]})
    nan = rows["text"].copy()
    nan[1, 3] = np.nan
    refused(r"features\['text'\]: expected finite values, found NaN or Inf in 1 row\(s\): items \['b'\]", ["a", "b"], {"text": nan})
    refused(r"expected features of the model's modalities \(text, audio\), found unknown modality \['image'\]",
            ["a", "b"], {"image": np.ones((2, 8))})
    refused(r"expected each new item token once, found 'a' at positions 0 and 1", ["a", "a"], rows)
    refused(r"already there: \['%s'\]" % cold[0], [cold[0], "b"], rows)
    refused(r"expected 3 rows \(one per new item token\), found 2", ["a", "b", "c"], rows)
    refused(r"expected features in at least one modality for every new item.*none for 1 item\(s\): \['b'\]",
            ["a", "b"], {"text": np.vstack([rows["text"][0], np.zeros(8)])})
    model, n = server.model, server.dataset.item_num
    assert server.n_items == model.n_items == n  # nothing was added by a refused call
    assert len(model.modality_mask) == len(model.modality_features("text")) == len(model.item_has_training) == n
    with pytest.raises(ValueError, match=r"audio rows of shape \(1, 4\) expected, found None"):
        model.add_items({"text": rows["text"][:1]}, np.ones((1, 2), dtype=bool))  # the model's own check: all or nothing
    assert model.n_items == n and len(model.modality_features("text")) == n and len(model.modality_mask) == n

    # a modality left out is missing for every new item: the same scores as zero rows
    server.add_items(["only-text"], {"text": rows["text"][:1]})
    server.add_items(["zero-audio"], {"text": rows["text"][:1], "audio": np.zeros((1, 4))})
    scores = server.scores(server.user_ids(["0", "1"]))
    assert torch.equal(scores[:, server.item_ids["only-text"]], scores[:, server.item_ids["zero-audio"]])
    refused(r"already there: \['only-text'\]", ["only-text"], {"text": rows["text"][:1]})

    # the folder form: items.txt and one <modality>.npy each, as the feature store's ids layout
    folder = tmp_path / "arrivals"
    folder.mkdir()
    (folder / "items.txt").write_text("f1\nf2\n")
    np.save(folder / "text.npy", rows["text"])
    np.save(folder / "audio.npy", rows["audio"])
    assert server.add_items(features=folder) == ["f1", "f2"]
    scores = server.scores(server.user_ids(["0"]))
    assert torch.allclose(scores[0, [server.item_ids["f1"], server.item_ids["f2"]]], scores[0, [server.item_ids[t] for t in cold[:2]]],
                          rtol=1e-5, atol=1e-6)
    (folder / "items.txt").write_text("h1\nh2\n")
    np.save(folder / "image.npy", rows["text"])
    with pytest.raises(NewItemsError, match=r"image.npy: expected features of the model's modalities .*unknown modality \['image'\]"):
        server.add_items(features=folder)
    (folder / "image.npy").unlink()
    (folder / "items.txt").write_text("g1\n")
    with pytest.raises(InputFileError, match=r"items.txt: expected 2 item tokens"):
        server.add_items(features=folder)
    with pytest.raises(ServingError, match=r"expected candidates \['cold', 'warm', 'all', 'new', 'all\+new'\]"):
        server.recommend(["0"], candidates="fresh")


def test_models_without_content_refuse_new_items(cold_tiny):
    rows = {"text": np.ones((1, 8), dtype=np.float32)}
    server = Recommender(train("BPR", epochs=1))
    with pytest.raises(ServingError, match=r"found BPR, which cannot: it scores items by ID embeddings"):
        server.add_items(["x"], rows)
    with pytest.raises(ServingError, match=r"expected new items for 'new' candidates .*found none added"):
        server.recommend(["0"], candidates="new")
    server = Recommender(train("RLMultimodalRec", epochs=1, use_content=False))
    with pytest.raises(ServingError, match=r"found RLMultimodalRec, which cannot: with use_content: False it is LightGCN"):
        server.add_items(["x"], rows)


def test_command_line_new_items_and_all_users(cold_tiny, tmp_path, capsys):
    checkpoint = train("MAMEX")
    server = Recommender(checkpoint)
    cold = cold_test_items(server)
    folder = tmp_path / "arrivals"
    folder.mkdir()
    (folder / "items.txt").write_text("".join(f"new-{t}\n" for t in cold))
    for name, matrix in raw_rows(cold_tiny, cold).items():
        np.save(folder / f"{name}.npy", matrix)

    assert main([str(checkpoint), "--users", "0", "3", "--k", "2", "--new-items", str(folder), "--candidates", "new"]) == 0
    out = capsys.readouterr()
    assert f"added {len(cold)} new items" in out.err
    expected = server.recommend(["0", "3"], k=2, candidates="cold")
    lines = [line.split("\t") for line in out.out.strip().splitlines()[1:]]
    assert [(u, item) for u, _, item, _ in lines] == [(u, f"new-{r.item}") for u in ("0", "3") for r in expected[u]]

    # every user's top-k: the file holds what recommend gives each user, in batches of any size
    users = [str(u) for u in server.dataset.field2id_token["user_id"][1:]]
    wanted = server.recommend(users, k=3, candidates="warm")
    csv = tmp_path / "top.csv"
    assert main([str(checkpoint), "--all-users", "--out", str(csv), "--k", "3", "--candidates", "warm"]) == 0
    assert f"for {len(users)} users" in capsys.readouterr().out
    table = pd.read_csv(csv, dtype={"user": str, "item": str})
    assert list(table.columns) == ["user", "rank", "item", "score"]
    for user in users:
        rows = table[table.user == user]
        assert rows["item"].tolist() == [r.item for r in wanted[user]], user
        assert rows["rank"].tolist() == list(range(1, len(wanted[user]) + 1))
        assert np.allclose(rows["score"], [r.score for r in wanted[user]], rtol=1e-6)
    parquet = tmp_path / "top.parquet"
    assert server.recommend_all(parquet, k=3, candidates="warm", batch_size=5, progress=False) == len(table)
    stored = pd.read_parquet(parquet)
    assert stored[["user", "rank", "item"]].astype({"rank": int}).equals(table[["user", "rank", "item"]].astype({"rank": int}))
    assert np.allclose(stored["score"], table["score"], rtol=1e-6)

    # batches in which no user has a candidate left (one item, seen by most users): no row, the same schema
    item = max(wanted, key=lambda u: len(wanted[u]))
    seen_by = {u for u in users if not server.recommend([u], k=1, candidates=[wanted[item][0].item])[u]}
    assert seen_by and len(seen_by) < len(users)
    one = tmp_path / "one.parquet"
    rows_written = server.recommend_all(one, k=1, candidates=[wanted[item][0].item], batch_size=1, progress=False)
    assert rows_written == len(users) - len(seen_by)
    assert set(pd.read_parquet(one)["user"]) == set(users) - seen_by

    before = csv.read_bytes()
    assert main([str(checkpoint), "--all-users", "--out", str(csv)]) == 2
    assert "an existing file" in capsys.readouterr().err and csv.read_bytes() == before
    assert main([str(checkpoint), "--all-users", "--out", str(csv), "--force", "--k", "1"]) == 0
    assert len(pd.read_csv(csv)) == len(users)  # one cold item each: replaced
    assert main([str(checkpoint), "--all-users", "--out", str(tmp_path / "top.txt")]) == 2
    assert "expected an output file ending in .csv or .parquet" in capsys.readouterr().err
    assert not (tmp_path / "top.txt").exists()
