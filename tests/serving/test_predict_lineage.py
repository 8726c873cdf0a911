"""`modelmill predict` on a table and an image folder with the champion (chunked, atomic output),
and `modelmill lineage` of the champion and of its data version."""

import numpy as np
import pandas as pd
import pytest

from tasks.aliases import CHAMPION, alias_target
from tests.serving.conftest import MODEL
from tests.serving.test_registry_audit import cli
from tests.support.mlflow_store import client_for


@pytest.fixture(scope="module")
def champion(served_project) -> str:
    return alias_target(client_for(served_project), MODEL, CHAMPION)


def expected_labels(served_project, champion, items: pd.DataFrame) -> list[str]:
    from modelmill.scoring import scorer_of
    from tasks.modelstore import load_verified

    scorer = scorer_of(load_verified(client_for(served_project), MODEL, champion))
    return [
        a["label"]
        for a in scorer.answers(scorer.logits(scorer.raw_input(items.filter(like="px").values.tolist())))
    ]


def test_predict_scores_a_table_in_chunks(served_project, champion, tmp_path):
    items = pd.read_parquet(served_project / "data" / "items.parquet").head(250)
    items.to_csv(tmp_path / "items.csv", index=False)
    out = tmp_path / "scored.parquet"
    result = cli(
        served_project, "predict", str(tmp_path / "items.csv"), "-o", str(out), "--chunk-size", "100"
    )
    assert result.returncode == 0, result.stderr
    assert f"250 rows scored by {MODEL} v{champion}" in result.stdout and "rows/s" in result.stdout
    scored = pd.read_parquet(out)
    assert list(scored.columns) == ["id", "label", *[f"p_{i}" for i in range(10)], "model_version"]
    assert scored["id"].tolist() == items["item_id"].astype(str).tolist()
    assert set(scored["model_version"]) == {champion}
    assert scored["label"].tolist() == expected_labels(served_project, champion, items)
    np.testing.assert_allclose(scored.filter(like="p_").sum(axis=1), 1.0, atol=1e-6)
    assert not list(tmp_path.glob(".scored.parquet.*"))  # the temp file was renamed into place


def test_predict_scores_an_image_folder_and_names_a_bad_file(served_project, champion, tmp_path):
    from PIL import Image

    items = pd.read_parquet(served_project / "data" / "items.parquet").head(3)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, row in enumerate(items.filter(like="px").to_numpy()):
        grid = (row.reshape(8, 8).astype(int) * 255 // 16).astype(np.uint8)
        Image.fromarray(grid).save(folder / f"digit{i}.png")
    result = cli(served_project, "predict", str(folder))
    assert result.returncode == 0, result.stderr
    scored = pd.read_csv(tmp_path / "images.predictions.csv", dtype={"model_version": str, "label": str})
    assert scored["id"].tolist() == ["digit0.png", "digit1.png", "digit2.png"]
    (folder / "digit3.png").write_bytes(b"not a png")
    broken = cli(served_project, "predict", str(folder))
    assert broken.returncode == 1 and "digit3.png: not a decodable image" in broken.stderr
    assert len(broken.stderr.strip().splitlines()) == 1


def test_predict_names_a_missing_column(served_project, tmp_path):
    pd.DataFrame({"px0": [1.0]}).to_csv(tmp_path / "short.csv", index=False)
    result = cli(served_project, "predict", str(tmp_path / "short.csv"))
    assert result.returncode == 1 and "column 'px1' is missing (63 in all)" in result.stderr


def test_lineage_of_the_champion_and_of_its_data_version(served_project, champion):
    shown = cli(served_project, "lineage", f"{MODEL}/{champion}")
    assert shown.returncode == 0, shown.stderr
    lines = dict(
        line.split(": ", 1) for line in shown.stdout.splitlines() if ": " in line and not line.startswith(" ")
    )
    data_version = lines["data_version"]
    assert (
        len(data_version) >= 32
        and len(lines["git_commit"].split("-")[0]) == 40
        and lines["prefect_flow_run"] != "-"
    )
    assert '"train.epochs": "1"' in shown.stdout or "train.epochs" in shown.stdout
    assert "audit: " in shown.stdout and f'"to_version":"{champion}"' in shown.stdout
    listed = cli(served_project, "lineage", "--data", data_version)
    assert listed.returncode == 0 and f"{MODEL}/{champion}" in listed.stdout.splitlines()


def test_a_float_model_is_served_by_onnxruntime_unless_told_and_both_agree(served_project, champion):
    """serve.onnx_at_load: the export at load answers as torch does; off, torch serves it."""
    import numpy as np

    from modelmill.scoring import EXPORTED_ONNX, TORCH, scorer_of
    from tasks.modelstore import load_verified

    loaded = load_verified(client_for(served_project), MODEL, champion)
    exported, plain = scorer_of(loaded), scorer_of(loaded, export_onnx=False)
    assert (exported.runtime, plain.runtime) == (EXPORTED_ONNX, TORCH)
    items = pd.read_parquet(served_project / "data" / "items.parquet").head(64)
    x = plain.raw_input(items.filter(like="px").values.tolist())
    np.testing.assert_allclose(exported.logits(x), plain.logits(x), atol=1e-5)
