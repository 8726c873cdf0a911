"""Column importance of tables: features grouped back to their column, permutation moves a column's
features together, and a column the model ignores gets exactly zero."""

import numpy as np
import pandas as pd
import torch
from torch import nn

from modelmill.evaluation.importance import attribution_by_column, column_importance, plot_importance
from modelmill.kinds.tabular import Column, TabularSchema, fit_preprocessor


def test_feature_groups_follow_the_transformed_matrix():
    frame = pd.DataFrame(
        {"age": [1.0, np.nan, 3.0, 4.0], "city=x": [5.0, 6.0, 7.0, 8.0], "pet": ["cat", "dog", "cat", "eel"]}
    )
    schema = TabularSchema(
        name="t",
        classes=("a", "b"),
        columns=(
            Column("age", "numeric"),
            Column("city=x", "numeric"),
            Column("pet", "categorical", categories=("cat", "dog", "eel")),
        ),
        target="target",
    )
    pre = fit_preprocessor(frame, schema)
    groups = pre.feature_groups()
    names = pre.feature_names()
    assert sorted(i for idx in groups.values() for i in idx) == list(range(pre.width))
    assert [names[i] for i in groups["age"]] == ["age", "age__missing"]
    assert [names[i] for i in groups["city=x"]] == ["city=x"]  # an '=' in a name is not a category
    assert [names[i] for i in groups["pet"]] == ["pet=cat", "pet=dog", "pet=eel", "pet=__unknown__"]


def test_the_used_column_ranks_first_and_an_ignored_one_drops_nothing(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 4, generator=gen)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 2)
    with torch.no_grad():  # uses feature 0 only: column "signal"; "noise" is features 1-3 (a one-hot, say)
        model.weight.copy_(torch.tensor([[-5.0, 0, 0, 0], [5.0, 0, 0, 0]]))
        model.bias.zero_()
    groups = {"signal": [0], "noise": [1, 2, 3]}
    ig = torch.zeros(4, 4)
    ig[:, 0], ig[:, 1], ig[:, 2] = 2.0, 1.0, -1.0  # the signed parts of one column cancel
    importance = column_importance(model, x, y, ig, groups, repeats=3, seed=1)
    assert importance.ranked() == ["signal", "noise"]
    assert importance.permutation["signal"] > 0.3 and importance.permutation["noise"] == 0.0
    assert attribution_by_column(ig, groups) == {"signal": 2.0, "noise": 0.0}
    assert plot_importance(importance, tmp_path / "i.png").stat().st_size > 1000
