"""training/dev.py: the dev signals (STS-B dev, SICK-R trial) as constraints and the weight of u they allow."""

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from hf_simskip import SimSkipConfig, SimSkipHead
from hf_simskip.training import DevSignal, HeadTrainingArguments, dev_pairs, train_head

D = 8


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


class ScriptedGeometry(DevSignal):
    """The real selection logic, with Spearmans that fall with the weight of u as ``fall`` says (the identity,
    u off, scores 80 / 70)."""

    def __init__(self, fall, tolerance, scales):
        pairs = {"stsb": (torch.zeros(2, 3, D), torch.zeros(2, 3, D), [0.0, 1.0])}
        super().__init__(pairs, tolerance, scales)
        self.fall = fall

    def spearmans(self, head):
        branch = head.layer_branch
        w = branch.scale if branch.is_open else 0.0
        return {"stsb": 80.0 - self.fall["stsb"] * w, "sickr": 70.0 - self.fall["sickr"] * w}


def layer_head():
    torch.manual_seed(0)
    return SimSkipHead(SimSkipConfig(embedding_dim=D, layers=[0, 1], layer_hidden_dim=16))


def test_the_largest_weight_that_keeps_both_splits_is_chosen():
    head = layer_head()
    signal = ScriptedGeometry({"stsb": 2.0, "sickr": 1.0}, tolerance=1.0, scales=[0.3, 0.5, 0.7, 1.0])
    identity = signal(head)
    assert identity.key == (0.0, 75.0) and identity.details["layer_scale"] is None
    head.layer_branch.open()
    score = signal(head)  # stsb falls 2 per unit of weight: within 1.0 up to w = 0.5
    assert score.key[0] == 0.5 and head.layer_branch.scale == 0.5 == head.config.layer_scale
    assert score.details == {"layer_scale": 0.5, "stsb": 79.0, "sickr": 69.5} and score.value == 74.25
    steep = ScriptedGeometry({"stsb": 10.0, "sickr": 1.0}, tolerance=1.0, scales=[0.3, 0.5])
    steep(layer_head())
    head = layer_head()
    steep(head)
    head.layer_branch.open()
    assert steep(head).key[0] == -1.0  # no weight keeps the geometry: below the identity's 0


def test_training_keeps_the_candidate_with_the_largest_weight_and_saves_it_in_the_config(tmp_path):
    head, x = layer_head(), torch.randn(128, 3, D) * 0.05
    signal = ScriptedGeometry({"stsb": 2.0, "sickr": 1.0}, tolerance=1.0, scales=[0.3, 0.5, 0.7, 1.0])
    args = HeadTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=32, max_steps=4, eval_steps=2)
    m = train_head(head, x, args, Accelerator(cpu=True), dev_fn=signal)
    assert m["kept"] == "initial" and m["layer_scale"] == 0.5 == head.config.layer_scale == head.layer_branch.scale
    assert m["dev_details"]["initial"]["layer_scale"] == 0.5 and m["best_dev_score"] == 74.25
    assert m["dev_scores"]["identity"] == 75.0  # the backbone's own geometry, u off
    # the scoring never changes the training: the trained steps ran at the config's weight, restored after each
    assert m["dev_details"]["step 2"]["layer_scale"] == 0.5


def test_dev_pairs_are_sts_b_dev_and_sick_r_trial(tiny_senteval):
    pairs = dev_pairs(tiny_senteval)
    assert set(pairs) == {"stsb", "sickr"} and all(len(a) == len(b) == len(g) > 0 for a, b, g in pairs.values())
    assert dev_pairs(tiny_senteval, max_pairs=3)["sickr"][0] == pairs["sickr"][0][:3]
    with pytest.raises(ValueError, match="dev tolerance must be a finite number >= 0"):
        DevSignal({"stsb": (torch.zeros(2, D), torch.zeros(2, D), [0.0, 1.0])}, float("nan"), [0.5])
    with pytest.raises(ValueError, match="layer_scales must be a non-empty list"):
        HeadTrainingArguments(layer_scales=[]).validate()


def test_a_resumed_run_compares_with_the_identity_it_scored_before_the_crash(tmp_path):
    """The reference is the identity's geometry; a resumed run does not score the identity again, so the dev
    signal takes it from the checkpoint (else its first trained candidate became the reference)."""
    head, x = layer_head(), torch.randn(128, 3, D) * 0.05
    kw = dict(output_dir=str(tmp_path), per_device_train_batch_size=32, max_steps=4, eval_steps=2)

    def crash(step, state):
        if step == 3:
            raise RuntimeError("a crash after the checkpoint of step 2")

    first = ScriptedGeometry({"stsb": 2.0, "sickr": 1.0}, tolerance=1.0, scales=[0.3, 0.5, 0.7, 1.0])
    with pytest.raises(RuntimeError, match="a crash"):
        train_head(
            head,
            x,
            HeadTrainingArguments(**kw, checkpointing_steps=2),
            Accelerator(cpu=True),
            first,
            step_callback=crash,
        )
    AcceleratorState._reset_state(reset_partial_state=True)
    resumed = ScriptedGeometry({"stsb": 2.0, "sickr": 1.0}, tolerance=1.0, scales=[0.3, 0.5, 0.7, 1.0])
    args = HeadTrainingArguments(**kw, checkpointing_steps=2, resume_from_checkpoint="latest")
    m = train_head(layer_head(), x, args, Accelerator(cpu=True), resumed)
    assert resumed.reference == {"stsb": 80.0, "sickr": 70.0} and m["layer_scale"] == 0.5
