"""Categorical item attributes as a multi-hot modality (dataset_prep.attributes, sparse .npz modalities in
the feature store) and S3Rec-layout datasets in one command (dataset_prep.s3rec)."""

import json

import numpy as np
import pytest
from scipy import sparse

from dataset_prep.attributes import main as attributes_main, read_attributes
from dataset_prep.common import DataImportError
from dataset_prep.s3rec import main as s3rec_main, prepare_s3rec
from recbole_mamex.data.features import FeatureFileError, ModalitySpec, load_item_features
from recbole_mamex.quick_start import run_recbole_mamex

from helpers import FAST


def write_json(path, data):
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_json_attributes_become_a_multi_hot_matrix(tmp_path):
    path = write_json(tmp_path / "a.json", {"1": [3, 10], "3": [10, 10, 2]})
    attrs = read_attributes(path, [None, "1", "2", "3"])
    assert attrs.columns == ["2", "3", "10"]  # numeric order, not "10" < "2"
    dense = attrs.matrix.toarray()
    np.testing.assert_array_equal(dense, [[0, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1]])  # a repeated id counts once
    assert attrs.listed == 2


def test_tsv_attributes_follow_the_row_order_given(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_text("# brand and category\nB002\tnike shoes\n\nB001\tshoes\n", encoding="utf-8")
    attrs = read_attributes(path, ["B001", "B003", "B002"])
    assert attrs.columns == ["nike", "shoes"]
    np.testing.assert_array_equal(attrs.matrix.toarray(), [[0, 1], [0, 0], [1, 1]])


@pytest.mark.parametrize(
    "content, expected, found",
    [
        ({"1": [1], "9": [2]}, "attributes only for items of the dataset", "unknown item(s): '9'"),
        ({"1": [1], "2": []}, "at least one attribute id for every item listed", "empty lists for items '2'"),
        ({"1": [0, 4]}, "attribute ids >= 1", "ids below 1 for items '1'"),
        ({"1": [-3]}, "attribute ids >= 1", "ids below 1 for items '1'"),
        ({"B00X": [1]}, "item ids written as integers >= 1", "item keys 'B00X'"),
        ({"01": [1]}, "item ids written as integers >= 1", "item keys '01'"),
        ({"1": ["red"]}, "a list of integer attribute ids for every item", "other values for items '1'"),
        ({"1": 5}, "a list of integer attribute ids for every item", "other values for items '1'"),
        ([1, 2], "a non-empty json object", "list"),
    ],
)
def test_bad_json_is_a_clear_error_and_nothing_is_written(tmp_path, capsys, content, expected, found):
    path = write_json(tmp_path / "attrs.json", content)
    ids = tmp_path / "ids.txt"
    ids.write_text("1\n2\n3\n", encoding="utf-8")
    out = tmp_path / "out" / "attributes.npz"
    assert attributes_main([str(path), "--ids", str(ids), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: expected {expected}") and found in err, err
    assert "\n" not in err and not out.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text, found",
    [
        ("1 2 3\n", "other text on line(s) 1"),
        ("1\t\n", "no attribute for items '1'"),
        ("1\ta\n1\tb\n", "items listed more than once: '1'"),
        ("", "none"),
    ],
)
def test_bad_tsv_is_a_clear_error(tmp_path, text, found):
    path = tmp_path / "attrs.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataImportError, match="attrs.tsv") as err:
        read_attributes(path, ["1", "2"])
    assert found in str(err.value)


def test_cli_writes_npz_and_columns_and_never_overwrites(tmp_path, capsys):
    path = write_json(tmp_path / "a.json", {"2": [5], "4": [5, 6]})
    out = tmp_path / "attributes.npz"
    assert attributes_main([str(path), "--out", str(out)]) == 0  # json without --ids: row i = item i
    matrix = sparse.load_npz(out)
    assert matrix.shape == (5, 2) and matrix.nnz == 3 and matrix[4].toarray().tolist() == [[1, 1]]
    assert (tmp_path / "attributes.columns.txt").read_text() == "5\n6\n"
    before = out.read_bytes()
    write_json(path, {"2": [7]})
    assert attributes_main([str(path), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert attributes_main([str(path), "--out", str(out), "--force"]) == 0 and out.read_bytes() != before


def test_the_feature_store_reads_a_sparse_modality_like_a_dense_one(tmp_path):
    dense = np.array([[0, 0, 0], [1, 0, 2], [0, 0, 0], [0, 3, 0]], dtype=np.float32)
    sparse.save_npz(tmp_path / "a.npz", sparse.csr_matrix(dense.astype(np.uint8)))
    np.save(tmp_path / "a.npy", dense)
    tokens = ["[PAD]", "3", "1", "2"]
    from_sparse = load_item_features([ModalitySpec("a", tmp_path / "a.npz")], tokens)
    from_dense = load_item_features([ModalitySpec("a", tmp_path / "a.npy")], tokens)
    np.testing.assert_array_equal(from_sparse.matrices["a"], from_dense.matrices["a"])
    assert from_sparse.matrices["a"].dtype == np.float32
    np.testing.assert_array_equal(from_sparse.mask[:, 0], [False, True, True, False])  # item 2's row is empty


def test_bad_sparse_files_are_clear_errors(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip", encoding="utf-8")
    with pytest.raises(FeatureFileError, match="text.npz: expected a sparse matrix written by scipy.sparse.save_npz"):
        load_item_features([ModalitySpec("a", tmp_path / "text.npz")], ["[PAD]", "1"])
    bad = sparse.csr_matrix(np.array([[0.0, np.nan], [1.0, 0.0]], dtype=np.float32))
    sparse.save_npz(tmp_path / "nan.npz", bad)
    with pytest.raises(FeatureFileError, match="NaN or Inf in 1 row"):
        load_item_features([ModalitySpec("a", tmp_path / "nan.npz")], ["[PAD]", "1"])


def write_s3rec(root, n_users=40, n_items=30, per_user=8, seed=0, without_attributes=(5,)):
    """A small S3Rec-layout dataset: sequential_data.txt, item2attributes.json, id_maps.json."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = [" ".join([str(u)] + [str(i) for i in rng.choice(np.arange(1, n_items + 1), per_user, replace=False)]) for u in range(1, n_users + 1)]
    (root / "sequential_data.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    attrs = {str(i): [int(a) for a in rng.choice(np.arange(1, 13), 3, replace=False)] for i in range(1, n_items + 1) if i not in without_attributes}
    write_json(root / "item2attributes.json", attrs)
    write_json(root / "id_maps.json", {"user2id": {}, "item2id": {f"ASIN{i:03d}": i for i in range(1, n_items + 1)}})
    return root


def test_s3rec_writes_warm_and_cold_datasets_that_train(workdir):
    raw = write_s3rec(workdir / "raw")
    result = prepare_s3rec(raw / "sequential_data.txt", raw / "item2attributes.json", "tiny-s3", out_root="dataset", properties_dir="properties", log=lambda *_: None)
    assert result["statistics"] == {"users": 40, "items": 30, "interactions": 320}
    assert sum(result["cold_counts"].values()) == 320
    for name in ("tiny-s3", "tiny-s3-cold"):
        assert (workdir / "dataset" / name / "attributes.npz").is_file()
        assert "attributes: attributes.npz" in (workdir / "properties" / "dataset" / f"{name}.yaml").read_text()
    run = run_recbole_mamex("MAMEX", "tiny-s3-cold", config_dict={**FAST, "epochs": 1}, cmd_args=[])
    assert set(run["test_result_by_candidates"]) == {"cold", "warm", "all"}
    from recbole_mamex.quick_start import load_data_and_model

    _, model, dataset, *_ = load_data_and_model(run["model_file"])
    assert model.modality_dims == {"attributes": 12}
    internal = dataset.token2id(dataset.iid_field, "5")
    assert not model.modality_mask[internal].any()  # item 5 has no attributes: the modality is missing


def test_s3rec_places_mmrec_features_through_the_asins(workdir):
    raw = write_s3rec(workdir / "raw")
    mmrec = workdir / "mmrec"
    mmrec.mkdir()
    order = np.random.default_rng(1).permutation(np.arange(1, 31))[:25]  # MMRec lacks 5 items, rows permuted
    (mmrec / "i_id_mapping.csv").write_text("asin\titemID\n" + "".join(f"ASIN{i:03d}\t{r}\n" for r, i in enumerate(order)), encoding="utf-8")
    image = np.random.default_rng(2).normal(size=(25, 6)).astype(np.float32)
    np.save(mmrec / "image_feat.npy", image)
    prepare_s3rec(raw / "sequential_data.txt", raw / "item2attributes.json", "tiny-s3", id_maps=raw / "id_maps.json",
                  mmrec=mmrec, cold=False, log=lambda *_: None)
    placed = np.load(workdir / "dataset" / "tiny-s3" / "image.npy")
    assert placed.shape == (31, 6)
    for r, item in enumerate(order):
        np.testing.assert_array_equal(placed[item], image[r])
    missing = sorted(set(range(1, 31)) - set(order))
    assert not placed[missing].any() and not placed[0].any()
    assert "image: image.npy" in (workdir / "properties" / "dataset" / "tiny-s3.yaml").read_text()


def test_s3rec_refuses_to_overwrite_and_checks_its_inputs(workdir, capsys):
    raw = write_s3rec(workdir / "raw")
    args = ["--sequential", str(raw / "sequential_data.txt"), "--attributes", str(raw / "item2attributes.json"), "--name", "tiny-s3"]
    assert s3rec_main(args) == 0
    yaml_before = (workdir / "properties" / "dataset" / "tiny-s3.yaml").read_text()
    assert s3rec_main(args) == 2
    assert "tiny-s3" in capsys.readouterr().err
    assert (workdir / "properties" / "dataset" / "tiny-s3.yaml").read_text() == yaml_before
    write_json(raw / "bad.json", {"1": [1], "77": [2]})
    assert s3rec_main(["--sequential", str(raw / "sequential_data.txt"), "--attributes", str(raw / "bad.json"), "--name", "other"]) == 2
    assert "unknown item(s): '77'" in capsys.readouterr().err
    assert not (workdir / "dataset" / "other").exists() and not (workdir / "properties" / "dataset" / "other.yaml").exists()
    (raw / "seq.txt").write_text("1 2 3\n2 x 4\n", encoding="utf-8")
    assert s3rec_main(["--sequential", str(raw / "seq.txt"), "--attributes", str(raw / "item2attributes.json"), "--name", "other"]) == 2
    assert "seq.txt: expected lines 'user item item ...' of integer ids >= 1, found other text on line(s) 2" in capsys.readouterr().err


def test_the_shipped_sports_copy(workdir):
    # (a run that names amazon-sports prepares it on first use: tests/test_first_use.py)
    # as in a source checkout run from its root: ./properties/dataset/amazon-sports.yaml is the package's own
    from recbole_mamex.paths import properties_dir

    shipped = properties_dir() / "dataset" / "amazon-sports.yaml"
    checkout_yaml = workdir / "properties" / "dataset" / "amazon-sports.yaml"
    checkout_yaml.parent.mkdir(parents=True)
    checkout_yaml.write_bytes(shipped.read_bytes())
    logged = []
    result = prepare_s3rec(cold=False, log=logged.append)  # the copy shipped with the package
    assert result["check"] == "match"  # 35,598 users, 18,357 items, 296,337 interactions
    assert "[dataset_prep] the yaml shipped with recbole_mamex for 'amazon-sports' applies; none written" in logged
    assert checkout_yaml.read_bytes() == shipped.read_bytes()
    matrix = sparse.load_npz(workdir / "dataset" / "amazon-sports" / "attributes.npz")
    assert matrix.shape == (18358, 2277) and np.diff(matrix.indptr)[1:].min() >= 2


def test_a_working_directory_yaml_that_says_otherwise_is_replaced_only_with_force(workdir, capsys):
    """The shipped amazon-sports.yaml applies unless ./properties holds another yaml for the name (it would
    override the package's at run time): that one is refused, or replaced with --force."""
    from dataset_prep.common import dataset_yaml_text, shipped_yaml_applies
    from recbole_mamex.paths import properties_dir

    attributes_only = dataset_yaml_text("amazon-sports", {"attributes": "attributes.npz"}, "an older import")
    mine = workdir / "properties" / "dataset" / "amazon-sports.yaml"
    assert shipped_yaml_applies("amazon-sports", attributes_only, mine)  # no file there
    mine.parent.mkdir(parents=True)
    mine.write_bytes((properties_dir() / "dataset" / "amazon-sports.yaml").read_bytes())
    assert shipped_yaml_applies("amazon-sports", attributes_only, mine)  # says what the package's says
    assert not shipped_yaml_applies("amazon-sports", dataset_yaml_text("amazon-sports", {}, "no modality"))

    mine.write_text(attributes_only)
    raw = write_s3rec(workdir / "raw")
    args = ["--sequential", str(raw / "sequential_data.txt"), "--attributes", str(raw / "item2attributes.json"),
            "--id-maps", str(raw / "id_maps.json"), "--name", "amazon-sports", "--no-cold"]
    assert s3rec_main(args) == 2
    assert "amazon-sports.yaml already exists" in capsys.readouterr().err
    assert mine.read_text() == attributes_only and not (workdir / "dataset" / "amazon-sports").exists()
    assert s3rec_main(args + ["--force"]) == 0
    assert "prepared by dataset_prep.s3rec" in mine.read_text()
