"""A checkpoint callback deletes only files it wrote itself, in this run, under its
own pattern; restored callback state goes to the callback it came from, whatever the
order of the callbacks (issue "Reliability, round two", rule 1)."""

import json
import shutil

import pytest
from test_resume import BATCH, build, data

from gpunn.callbacks import Callback, CSVLogger, EarlyStopping, ReduceLROnPlateau
from gpunn.checkpointing import ModelCheckpoint
from gpunn.errors import CheckpointError
from gpunn.persistence import training_state
from gpunn.persistence.safetensors import read_file, write_file


def fit(model, epochs, callbacks, resume_from=None):
    X, y = data(40)
    return model.fit(
        X,
        y,
        epochs=epochs,
        batch_size=BATCH,
        verbose=0,
        callbacks=list(callbacks),
        resume_from=resume_from,
    )


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def first_run(tmp_path, epochs=5):
    run1 = tmp_path / "run1"
    run1.mkdir()
    save = ModelCheckpoint(run1 / "ckpt-{epoch}.st", keep_last=2)
    fit(build(), epochs, [save])
    assert names(run1) == ["ckpt-4.st", "ckpt-5.st"]
    return run1


def test_a_resumed_run_with_another_pattern_leaves_the_old_files(tmp_path):
    run1 = first_run(tmp_path)
    before = {p.name: p.read_bytes() for p in run1.iterdir()}
    run2 = tmp_path / "run2"
    run2.mkdir()
    save = ModelCheckpoint(run2 / "ckpt-{epoch}.st", keep_last=2)
    fit(build(), 8, [save], resume_from=run1 / "ckpt-5.st")
    assert names(run2) == ["ckpt-7.st", "ckpt-8.st"]
    assert {p.name: p.read_bytes() for p in run1.iterdir()} == before
    assert save.saved == [str(run2 / "ckpt-7.st"), str(run2 / "ckpt-8.st")]


def test_the_same_pattern_resumed_keeps_pruning_its_own_run(tmp_path):
    run1 = first_run(tmp_path)
    save = ModelCheckpoint(run1 / "ckpt-{epoch}.st", keep_last=2)
    fit(build(), 7, [save], resume_from=run1 / "ckpt-5.st")
    assert names(run1) == ["ckpt-6.st", "ckpt-7.st"]  # as one uninterrupted run


def test_a_file_replaced_by_another_run_is_not_deleted(tmp_path):
    run1 = first_run(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    fit(build(seed=3), 1, [ModelCheckpoint(other / "x.st")])
    shutil.copy(other / "x.st", run1 / "ckpt-4.st")  # not this run's any more
    save = ModelCheckpoint(run1 / "ckpt-{epoch}.st", keep_last=2)
    with pytest.warns(UserWarning, match="ckpt-4.st"):
        fit(build(), 6, [save], resume_from=run1 / "ckpt-5.st")
    assert names(run1) == ["ckpt-4.st", "ckpt-5.st", "ckpt-6.st"]
    assert (run1 / "ckpt-4.st").read_bytes() == (other / "x.st").read_bytes()


def test_a_fresh_run_in_the_same_folder_deletes_only_its_own_files(tmp_path):
    run1 = first_run(tmp_path)
    save = ModelCheckpoint(run1 / "new-{epoch}.st", keep_last=1)
    fit(build(), 3, [save])
    assert names(run1) == ["ckpt-4.st", "ckpt-5.st", "new-3.st"]


def edited(src, dst, edit):
    tensors, metadata = read_file(src)
    state = json.loads(metadata[training_state.STATE_KEY])
    edit(state)
    metadata[training_state.STATE_KEY] = json.dumps(state)
    write_file(dst, tensors, metadata)
    return dst


def test_a_crafted_file_list_outside_the_pattern_is_refused(tmp_path):
    run1 = first_run(tmp_path)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")

    def add_victim(state):
        (key,) = [k for k in state["callbacks"] if k.startswith("ModelCheckpoint")]
        state["callbacks"][key]["saved"].insert(0, str(victim))

    crafted = edited(run1 / "ckpt-5.st", run1 / "ckpt-5.st", add_victim)
    save = ModelCheckpoint(run1 / "ckpt-{epoch}.st", keep_last=1)
    with pytest.raises(CheckpointError, match="precious.txt"):
        fit(build(), 7, [save], resume_from=crafted)
    assert victim.read_text() == "keep me"


class Probe(Callback):
    """Records the other callbacks' restored state when training begins."""

    def __init__(self, others):
        self.others, self.seen = others, None

    def on_train_begin(self, logs=None):
        self.seen = [_restored(c) for c in self.others]


def _restored(callback):
    if isinstance(callback, CSVLogger):
        return callback._size
    state = callback.get_state()
    return state["monitor"], state["best"]


def test_callback_states_are_matched_by_identity_not_position(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (tmp_path / "b.csv").write_text("an older run\n" * 3)

    def make():
        return [
            EarlyStopping("loss", patience=9),
            EarlyStopping("accuracy", patience=9),
            ReduceLROnPlateau("accuracy", patience=9),
            CSVLogger(tmp_path / "a.csv"),
            CSVLogger(tmp_path / "b.csv", append=True),
        ]

    first = make()
    fit(build(), 3, [*first, ModelCheckpoint(folder / "e{epoch}.st")])
    saved = [_restored(c) for c in first[:3]]
    saved += [(tmp_path / name).stat().st_size for name in ("a.csv", "b.csv")]
    again = make()
    order = [4, 1, 3, 0, 2]
    shuffled = [again[i] for i in order]
    probe = Probe(again)
    fit(build(), 4, [probe, *shuffled], resume_from=folder / "e3.st")
    assert probe.seen == saved


def test_keys_name_what_the_state_is_about():
    assert EarlyStopping("val_loss").state_key != EarlyStopping("loss").state_key
    assert (
        ModelCheckpoint("a/{epoch}.st").state_key
        != ModelCheckpoint("b/{epoch}.st").state_key
    )
    assert CSVLogger("a.csv").state_key != CSVLogger("b.csv").state_key
