import pytest
import torch

from modelmill.config import ModelConfig, TrainConfig
from modelmill.device import select_device
from modelmill.models import build_model
from modelmill.training import predict_proba, seed_everything, train


def toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    return x, y


CFG = TrainConfig(epochs=4, batch_size=32, learning_rate=0.01, patience=4, num_threads=1)
MODEL = ModelConfig(width=4, depth=1, hidden=8, dropout=0.0)


def test_training_learns_and_reports_each_epoch():
    seen = []
    result = train(build_model((8, 8), 2, MODEL), toy(), toy(seed=1), CFG, on_epoch=seen.append)
    assert [m.epoch for m in seen] == [1, 2, 3, 4]
    assert seen[-1].train_loss < seen[0].train_loss
    assert result.best.val_loss == min(m.val_loss for m in seen)
    probs = predict_proba(result.model, toy(seed=2)[0])
    assert probs.shape == (256, 2) and torch.allclose(probs.sum(1), torch.ones(256))


def test_same_seed_same_weights():
    """Seeded before the weights are initialised, as tasks/train.py does (whatever ran before)."""
    cfg = CFG.model_copy(update={"epochs": 2})

    def seeded_run():
        seed_everything(cfg.seed)
        return train(build_model((8, 8), 2, MODEL), toy(), toy(seed=1), cfg)

    a = seeded_run()
    torch.rand(100)  # global RNG draws between the runs (another test, in random order) change nothing
    b = seeded_run()
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def test_early_stopping_keeps_the_best_epoch():
    cfg = CFG.model_copy(update={"epochs": 30, "patience": 1, "learning_rate": 0.5, "optimizer": "sgd"})
    result = train(build_model((8, 8), 2, MODEL), toy(), toy(seed=1), cfg)
    assert result.stopped_early and len(result.history) == result.best_epoch + 1


def test_on_epoch_can_stop_training():
    class Stop(Exception):
        pass

    def stop(_):
        raise Stop

    with pytest.raises(Stop):
        train(build_model((8, 8), 2, MODEL), toy(), toy(seed=1), CFG, on_epoch=stop)


def test_thread_count_is_the_callers_again_after_training():
    """A tuning trial trains on 1 thread in the caller's process; the final model must not."""
    before, during = torch.get_num_threads(), []
    target = 1 if before > 1 else 2
    train(
        build_model((8, 8), 2, MODEL),
        toy(),
        toy(seed=1),
        CFG.model_copy(update={"epochs": 1, "num_threads": target}),
        on_epoch=lambda m: during.append(torch.get_num_threads()),
    )
    assert during == [target] and torch.get_num_threads() == before


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            select_device("cuda")
