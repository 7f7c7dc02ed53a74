"""Training on a recorded session: windows cut by the runtime's synchronizer, split by labelled range."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgefuse.errors import DataError
from edgefuse.runtime.record import SessionWriter, write_labels
from edgefuse.runtime.sources import make_sources
from edgefuse.trainer.data import dataset_from_session, load_data


def record_virtual(spec, out, seconds: float, seed: int = 0):
    """A real session written by SessionWriter from synthetic sources on their virtual clock, with true labels."""
    sources = make_sources(spec, seed=seed, realtime=False)
    for s in sources.values():
        s.open()
    world = next(iter(sources.values())).world
    with SessionWriter(out, spec, sources) as writer:
        for _ in range(round(seconds / 0.1)):
            for s in sources.values():
                for sample in s.read(0.1):
                    writer.write(sample)
    rel = lambda t: max(0.0, (t - writer.start_ns) / 1e9)  # noqa: E731 - the world may start a moment earlier
    rows = [
        (rel(a), rel(b), labels) for a, b, labels in world.timeline(world.t0_ns, world.t0_ns + round(seconds * 1e9))
    ]
    write_labels(out / "labels.csv", rows, list(spec.labels))
    return rows, (writer.start_ns - world.t0_ns) / 1e9  # and how long the world ran before the writer started


@pytest.fixture(scope="module")
def session(tmp_path_factory, home_spec):
    out = tmp_path_factory.mktemp("rec") / "s1"
    rows, lead_s = record_virtual(home_spec, out, 40.0)
    return out, rows, lead_s


def test_windows_split_by_labelled_range_with_true_labels(home_spec, session):
    path, rows, lead_s = session
    ds = load_data(home_spec, path)  # a session folder is recognised by its session.json
    assert len(rows) == 5  # 8 s live episodes over 40 s
    assert len(ds) >= 30  # 2 Hz ticks whose 4 s window lies inside one episode
    assert set(ds.split) == {"train", "val", "test"}
    assert ds.inputs["camera"].shape[1:] == (3, 64, 64) and ds.inputs["mic"].shape[1:] == (1, 16000)
    classes = home_spec.labels["event"]
    starts = np.array([r[0] for r in rows])
    t = np.array([float(i.split("@")[1].rstrip("s")) for i in ds.ids])  # tick times, s since the session start
    seg = np.searchsorted(starts, t, side="right") - 1
    # Streams switch on as their windows reach min_coverage (mic 0.8 of 1 s, env 0.6 of 4 s, each grid point covered
    # within 0.75 period of a row), counted in world time: the world starts lead_s before the writer, whose start the
    # tick times count from. Measured switch-on: mic 0.76-0.84 s, env 2.14-2.26 s; the bounds below leave margin.
    w = t + lead_s
    assert ds.mask[:, 0].min() == 1.0  # the camera window is one frame: present from the first tick
    assert ds.mask[w < 0.6, 1].max() == 0.0 and ds.mask[w >= 1.0, 1].min() == 1.0
    assert ds.mask[w < 2.0, 2].max() == 0.0 and ds.mask[w >= 2.5, 2].min() == 1.0
    for k, target in zip(seg, ds.targets["event"], strict=True):
        assert classes[target] == rows[k][2]["event"]  # the label of the range the tick lies in
    for k in set(seg):
        assert len(set(ds.split[seg == k])) == 1  # one labelled range, one split: no leak between splits


def test_train_runs_on_a_session(home_spec, session, tmp_path):
    from edgefuse.trainer.train import train

    metrics = train(home_spec, session[0], tmp_path / "run", epochs=2, progress=False)
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    assert 0.0 <= metrics["val_accuracy"] <= 1.0


def test_session_errors_name_the_file(home_spec, session, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(session[0], bare)
    (bare / "labels.csv").unlink()
    with pytest.raises(DataError, match=r"labels\.csv: no labelled time ranges"):
        dataset_from_session(home_spec, bare)
    few = tmp_path / "few.csv"
    write_labels(few, session[1][:2], ["event"])
    with pytest.raises(DataError, match=r"few\.csv: 2 labelled range\(s\)"):
        dataset_from_session(home_spec, session[0], few)
