"""The model card: Hugging Face layout (front matter with model-index), JSON facts, limitations."""

import json

import yaml

from modelmill.evaluation.card import CardFacts, card_markdown, write_card


def facts(**changes) -> CardFacts:
    base = CardFacts(
        model_name="digits-classifier",
        version="3",
        task="image-classification",
        dataset={"name": "digits", "version": "abc123.dir", "n_test": 252, "class_balance": {"0": 178}},
        intended_use="Classify 8x8 digits.",
        training={"train.epochs": 2},
        intervals={"accuracy": {"point": 0.96, "low": 0.93, "high": 0.98, "level": 0.95}},
        per_class={"0": {"precision": 1.0, "recall": 0.9, "f1": 0.947, "support": 20}},
        robustness={
            "strongest": 0.05,
            "checks": [{"name": "pgd_at_most_fgsm", "passed": False, "detail": "max +0.05"}],
        },
    )
    for key, value in changes.items():
        setattr(base, key, value)
    return base


def test_markdown_front_matter_is_a_model_index():
    md = card_markdown(facts())
    front = yaml.safe_load(md.split("---\n")[1])
    result = front["model-index"][0]["results"][0]
    assert front["model-index"][0]["name"] == "digits-classifier"
    assert result["dataset"]["revision"] == "abc123.dir"
    assert result["metrics"][0] == {
        "type": "accuracy",
        "name": "Test accuracy",
        "value": 0.96,
        "verified": False,
    }
    assert "| accuracy | 0.9600 | [0.9300, 0.9800] |" in md


def test_limitations_name_failed_checks_and_the_interval():
    limits = facts().limitations()
    assert any("sanity check failed: pgd_at_most_fgsm" in line for line in limits)
    assert any("+-0.025" in line and "252 items" in line for line in limits)
    assert "FAIL" in card_markdown(facts())


def test_write_card_writes_both_files(tmp_path):
    md, js = write_card(facts(), tmp_path / "card")
    data = json.loads(js.read_text())
    assert data["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.96
    assert data["metrics"]["accuracy"]["low"] == 0.93
    assert md.read_text().startswith("---\nlibrary_name: pytorch")


def test_a_tables_card_ranks_its_columns():
    importance = {
        "ranked": ["income", "city"],
        "attribution": {"income": 0.8, "city": 0.1},
        "permutation_accuracy_drop": {"income": 0.125, "city": 0.0},
        "permutation_repeats": 5,
    }
    md = card_markdown(facts(explanations={"checks": [], "column_importance": importance}))
    table = md.split("Column importance (5 permutations each):")[1]
    assert table.index("| income | 12.50 | 0.8 |") < table.index("| city | 0.00 | 0.1 |")
    assert "column_importance" not in md.split("Column importance")[0]  # not dumped as JSON too


def test_a_long_card_drops_its_largest_sections_to_fit_mlflows_description_limit():
    """PostgreSQL refuses a model version description over 5000 characters (sqlite does not)."""
    from modelmill.evaluation.card import DESCRIPTION_LIMIT, version_description

    sizes = [300, 2500, 400, 1800, 600, 1200, 200]
    sections = [f"## Section {i}\n\n" + "x" * n for i, n in enumerate(sizes)]
    card = "---\nfront: matter\n---\n\n" + "\n\n".join(sections) + "\n"
    short = version_description(card, "runs:/abc/card/README.md")
    assert len(card) > DESCRIPTION_LIMIT >= len(short)
    kept = [f"## Section {i}" for i in (0, 2, 3, 4, 5, 6)]
    assert short.startswith("---\nfront: matter") and all(k in short for k in kept)
    assert "## Section 1\n" not in short
    assert short.rstrip().endswith(
        "Cut to fit MLflow's description limit: Section 1; the whole card: `runs:/abc/card/README.md`.*"
    )
    assert version_description("# small card\n", "x") == "# small card\n"
