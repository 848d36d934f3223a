"""training/loop.py: train_head in-process: learns, selects on dev, bf16 ~ fp32, positives, the layer branch, the
closed form as a candidate. Faults (SIGKILL and resume, corrupt checkpoints, divergence, a failing step, a NaN dev
score) are in test_faults_checkpoints.py, which reuses head(), data() and args() from here."""

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from hf_simskip import SimSkipConfig, SimSkipHead, SimSkipModel, SimSkipObjective
from hf_simskip.training import EpochPermutation, HeadTrainingArguments, train_head

D, N = 16, 256


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g) * 0.05 + 0.01  # MiniLM-like scale


def head():
    torch.manual_seed(0)
    return SimSkipHead(SimSkipConfig(embedding_dim=D, zero_init=True))


def args(out, **kw):
    base = dict(
        output_dir=str(out),
        per_device_train_batch_size=32,
        max_steps=8,
        learning_rate=1e-2,
        warmup_ratio=0.1,
        logging_steps=2,
        eval_steps=0,
    )
    base.update(kw)
    return HeadTrainingArguments(**base)


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_train_head_learns_and_reports(tmp_path):
    h, x = head(), data()
    before = {k: v.clone() for k, v in h.state_dict().items()}
    m = train_head(h, x, args(tmp_path, max_steps=12), Accelerator(cpu=True))
    assert m["global_step"] == 12 and m["total_steps"] == 12 and torch.isfinite(torch.tensor(m["train_loss"]))
    assert m["train_loss"] < torch.log(torch.tensor(2 * 32 - 1.0)).item()  # below chance level log(2N-1)
    assert not torch.equal(before["refiner.linear.weight"], h.state_dict()["refiner.linear.weight"])
    torch.testing.assert_close(h.feature_std, x.std(0, unbiased=False))  # statistics fitted for the views
    assert not h.training


def test_dev_fn_best_selection(tmp_path):
    h, x = head(), data()
    scores = iter([2.0, 3.0, 5.0, 1.0, 0.0])  # step 0 (identity), 2, 4, 6, end: best at step 4
    seen = []

    def dev_fn(module):
        seen.append(module.refiner.linear.weight.detach().clone())
        return next(scores)

    m = train_head(h, x, args(tmp_path, eval_steps=2, max_steps=7), Accelerator(cpu=True), dev_fn=dev_fn)
    assert m["best_dev_score"] == 5.0 and m["best_step"] == 4 and m["final_dev_score"] == 0.0
    assert m["initial_dev_score"] == 2.0 and not seen[0].any()  # zero-init: the identity before training
    torch.testing.assert_close(h.refiner.linear.weight, seen[2])  # the best head is restored at the end


def test_epochs_drop_last_and_accumulation(tmp_path):
    m = train_head(
        head(),
        data()[:100],
        args(tmp_path, max_steps=-1, num_train_epochs=2, gradient_accumulation_steps=2),
        Accelerator(cpu=True),
    )
    assert m["total_steps"] == 4  # 100 // 32 = 3 full batches per epoch (drop_last) -> 2 updates x 2 epochs


def test_bad_input_is_clear(tmp_path):
    with pytest.raises(ValueError, match="fewer than one batch of 32"):
        train_head(head(), data()[:20], args(tmp_path), Accelerator(cpu=True))
    with pytest.raises(ValueError, match=r"expected embeddings of shape \(n, 16\), got \(256, 8\)"):
        train_head(head(), torch.randn(256, 8), args(tmp_path), Accelerator(cpu=True))
    with pytest.raises(ValueError, match="augmentation must be one of"):
        train_head(head(), data(), args(tmp_path, augmentation="blur"), Accelerator(cpu=True))
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        train_head(head(), data(), args(tmp_path, learning_rate=0), Accelerator(cpu=True))


def test_bf16_on_cpu_is_finite_and_close_to_fp32(tmp_path):
    fp32 = train_head(head(), data(), args(tmp_path / "a"), Accelerator(cpu=True))
    AcceleratorState._reset_state(reset_partial_state=True)
    bf16 = train_head(head(), data(), args(tmp_path / "b"), Accelerator(cpu=True, mixed_precision="bf16"))
    assert bf16["mixed_precision"] == "bf16"
    assert torch.isfinite(torch.tensor(bf16["train_loss"]))
    assert abs(bf16["train_loss"] - fp32["train_loss"]) < 0.05 * fp32["train_loss"]


def test_neighbour_positives_pair_each_row_with_its_nearest_other_row():
    from hf_simskip.training.loop import nearest_other_rows

    x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0], [-1.0, 0.2]])
    torch.testing.assert_close(nearest_other_rows(x, chunk=2), x[[1, 0, 3, 2, 2]])
    with pytest.raises(ValueError, match="positives must be"):
        HeadTrainingArguments(positives="labels").validate()


def test_neighbour_positives_read_the_table_a_chunk_at_a_time(monkeypatch):
    """positives="neighbor" read the whole (n, 1 + L, d) table at once (embeddings[:]); it now reads chunks of rows and
    keeps x alone, with the same nearest-other index."""
    import hf_simskip.training.loop as loop

    g = torch.Generator().manual_seed(0)
    table = torch.randn(50, 3, 4, generator=g)  # (n, 1 + 2 layers, d)
    reads = []

    class Table:  # what the loop sees of a memory-mapped FeatureTable: shape, len, rows by index
        shape = table.shape

        def __len__(self):
            return len(table)

        def __getitem__(self, index):
            rows = table[index]
            reads.append(len(rows))
            return rows

    monkeypatch.setattr(loop, "NEIGHBOR_CHUNK", 16, raising=False)  # (the whole table at once before)
    got = loop._partners(Table(), HeadTrainingArguments(output_dir="unused", positives="neighbor"), None)
    assert reads == [16, 16, 16, 2], reads
    assert torch.equal(got, loop.nearest_other_index(table[:, 0]))


def test_dropout_positives_train_on_the_given_partner_rows(tmp_path):
    h, x = head(), data()
    partners = x + 0.01 * data(seed=1)  # stand-in for one dropout embedding per row
    m = train_head(
        h,
        x,
        args(tmp_path, max_steps=12, positives="dropout", augmentation="none"),
        Accelerator(cpu=True),
        partners=partners,
    )
    assert m["global_step"] == 12 and m["train_loss"] < torch.log(torch.tensor(2 * 32 - 1.0)).item()
    assert m["args"]["positives"] == "dropout"
    with pytest.raises(ValueError, match=r"positives='dropout' needs partners of shape \(256, 16\)"):
        train_head(head(), x, args(tmp_path / "a", positives="dropout"), Accelerator(cpu=True))
    with pytest.raises(ValueError, match=r"needs partners of shape \(256, 16\).*got torch.Size\(\[255, 16\]\)"):
        train_head(head(), x, args(tmp_path / "b", positives="dropout"), Accelerator(cpu=True), partners=x[1:])
    with pytest.raises(ValueError, match="partners were given but positives='views'"):
        train_head(head(), x, args(tmp_path / "c"), Accelerator(cpu=True), partners=partners)


def layer_data(n_layers=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, 1 + n_layers, D, generator=g) * 0.05 + 0.01  # (n, 1 + L, d): x, then the layers


def layer_head(**kw):
    torch.manual_seed(0)
    return SimSkipHead(SimSkipConfig(embedding_dim=D, zero_init=True, layers=[0, 1, 2], layer_hidden_dim=32, **kw))


def test_a_layer_aware_head_trains_its_branch_by_default_and_keeps_f_the_identity(tmp_path):
    """The default loss of a layer-aware head (distillation, here with reconstruction, no NT-Xent): the branch and
    its decoder learn, the gate opens after the identity was scored, the untouched refiner and projector stay
    as they were (frozen for the run, trainable again afterwards)."""
    h, x = layer_head(), layer_data()
    before = {k: v.clone() for k, v in h.state_dict().items()}
    scored_gates = []

    def dev_fn(module):
        scored_gates.append(float(module.layer_branch.gate))
        return float(len(scored_gates))  # every later candidate scores higher: the trained head is kept

    m = train_head(h, x, args(tmp_path, max_steps=12, reconstruction_weight=1.0), Accelerator(cpu=True), dev_fn=dev_fn)
    assert scored_gates[0] == 0.0 and scored_gates[-1] == 1.0 and h.layer_branch.is_open
    after = h.state_dict()
    for name in ("layer_branch.net.0.weight", "layer_branch.closed_form.weight", "layer_decoder.weight"):
        assert not torch.equal(before[name], after[name]), name
    for name in ("refiner.linear.weight", "projector.0.weight"):
        assert torch.equal(before[name], after[name]), name
    assert all(p.requires_grad for n, p in h.named_parameters() if not n.endswith("gate"))
    out = h.eval().embed(x[:8])
    torch.testing.assert_close(out[:, :D], x[:8, 0])  # f(x) = x: the skip connection's identity on x
    # u is unit length times |x|: its share of the output's cosines is `scale` whatever the embedding's norm
    torch.testing.assert_close(out[:, D:].norm(dim=-1), h.layer_branch.scale * x[:8, 0].norm(dim=-1))
    assert torch.isfinite(torch.tensor(m["train_loss"]))


def test_the_identity_stays_a_candidate_of_a_layer_aware_head(tmp_path):
    """When the dev signal prefers the untrained head, training ends as the identity: the gate is closed."""
    h, x = layer_head(), layer_data()
    scores = iter([5.0, 1.0, 1.0, 1.0])  # the identity, the closed form, step 6, the end
    m = train_head(
        h, x, args(tmp_path, eval_steps=6, max_steps=12), Accelerator(cpu=True), dev_fn=lambda _: next(scores)
    )
    assert m["best_step"] == 0 and not h.layer_branch.is_open
    torch.testing.assert_close(h.eval().embed(x[:4]), torch.cat([x[:4, 0], torch.zeros(4, D)], dim=1))


def test_loss_weights_per_head_kind_and_nothing_to_train(tmp_path):
    a = args(tmp_path)
    plain, layered = head().config, layer_head().config
    assert SimSkipObjective(a, plain).weights["nt_xent"] == 1.0
    weights = SimSkipObjective(a, layered).weights
    assert weights["nt_xent"] == 0.0 and weights["distillation"] == 1.0 and weights["reconstruction"] == 0.0
    assert SimSkipObjective(args(tmp_path, contrastive_weight=0.5), layered).weights["nt_xent"] == 0.5
    with pytest.raises(ValueError, match="every loss weight is 0 for a head without layers"):
        SimSkipObjective(args(tmp_path, contrastive_weight=0.0), plain)
    with pytest.raises(ValueError, match="contrastive_weight must be None or a finite number >= 0"):
        args(tmp_path, contrastive_weight=-1.0).validate()
    with pytest.raises(ValueError, match="distillation_temperature must be a finite number > 0"):
        args(tmp_path, distillation_temperature=0.0).validate()


@pytest.mark.parametrize("layers", [[0, 1, 2], None])
def test_the_models_loss_is_the_trained_loss(tmp_path, layers):
    """forward(return_loss=True) and train_head compute the same objective on the same batch: the default of a
    layer-aware head (distillation) and the paper's NT-Xent of two views."""
    config = SimSkipConfig(embedding_dim=D, layers=layers, layer_hidden_dim=32, dropout=0.0)
    x = layer_data() if layers else data()
    train_args = args(tmp_path, max_steps=1, per_device_train_batch_size=32, logging_steps=1)
    torch.manual_seed(0)
    model = SimSkipModel(config)
    trained = SimSkipModel(config)
    trained.load_state_dict(model.state_dict())
    m = train_head(trained.head, x, train_args, Accelerator(cpu=True))
    # the same first batch, the same statistics and closed form, the gate open, the same view generator
    first = list(EpochPermutation(len(x), train_args.seed))[:32]
    model.head.fit_statistics(x)
    if layers:
        model.head.layer_branch.open()
    model.train()
    out = model(
        encoder_embeddings=x[first],
        return_loss=True,
        loss_args=train_args,
        generator=torch.Generator().manual_seed(train_args.seed),
    )
    assert out.loss.item() == pytest.approx(m["train_loss"], rel=1e-5)
    if layers:  # the layer branch learns through the model's own loss too (the gate does not block it)
        out.loss.backward()
        assert model.head.layer_branch.closed_form.weight.grad.abs().sum() > 0


def test_the_closed_form_is_a_candidate_and_is_kept_when_training_does_not_beat_it(tmp_path):
    h, x = layer_head(), layer_data()
    scores = iter([1.0, 3.0, 2.0, 2.0])  # the identity, the closed form, step 6, the end
    m = train_head(
        h, x, args(tmp_path, eval_steps=6, max_steps=12), Accelerator(cpu=True), dev_fn=lambda _: next(scores)
    )
    assert m["kept"] == "initial" and m["best_step"] == 0 and h.layer_branch.is_open
    assert list(m["dev_scores"]) == ["identity", "initial", "step 6", "step 12"]
    assert not h.layer_branch.net[-1].weight.any()  # the MLP as it started: the head is the closed form
    closed = layer_head()
    closed.fit_statistics(x)
    closed.layer_branch.open()
    torch.testing.assert_close(h.eval().embed(x[:8]), closed.eval().embed(x[:8]))


def test_no_gradient_step_fits_the_closed_form_only(tmp_path):
    h, x = layer_head(), layer_data()
    m = train_head(
        h,
        x,
        args(tmp_path, max_steps=0),
        Accelerator(cpu=True),
        dev_fn=lambda module: float(module.layer_branch.is_open),
    )
    assert m["global_step"] == 0 and m["kept"] == "initial" and h.layer_branch.is_open
