"""The report's TensorBoard events, read back as TensorBoard reads them: figures
as images at their own size, tables as text, no scalars, one set per rebuild."""

import glob
import os

import numpy as np
import pytest

from keras_uap.report.tensorboard import REPORT_RUN, write_tensorboard


def _png(path, height, width):
    import tensorflow as tf

    pixels = np.arange(height * width * 4, dtype=np.uint8).reshape(height, width, 4)
    tf.io.write_file(str(path), tf.io.encode_png(pixels))
    return str(path)


def _events(directory):
    """{tag: [(step, plugin name, value)]} over every event file under `directory`."""
    import tensorflow as tf

    found = {}
    for path in glob.glob(os.path.join(directory, "**", "events.out.tfevents.*"), recursive=True):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append(
                    (event.step, value.metadata.plugin_data.plugin_name, tf.make_ndarray(value.tensor)))
    return found


@pytest.fixture()
def written(tmp_path):
    figures = {"universal/gcnn": _png(tmp_path / "a.png", 30, 41),
               "vectors/gcnn/gradient": _png(tmp_path / "b.png", 9, 17)}
    tables = {"table1_principal_angles": "| model | angle |\n|---|---|\n| GCNN | 62.8 |"}
    out = write_tensorboard(str(tmp_path / "tb"), figures, tables, "3 of 4 claims agree")
    return tmp_path, figures, tables, out


def test_figures_are_images_at_their_own_size(written):
    tmp_path, _, _, out = written
    assert out == str(tmp_path / "tb" / REPORT_RUN)
    events = _events(out)
    for tag, (height, width) in (("universal/gcnn", (30, 41)), ("vectors/gcnn/gradient", (9, 17))):
        [(step, plugin, value)] = events[tag]
        assert (step, plugin) == (0, "images")
        assert [int(value[0]), int(value[1])] == [width, height] and len(value) == 3  # width, height, one PNG


def test_tables_and_reading_are_text_and_nothing_is_a_scalar(written):
    _, _, tables, out = written
    events = _events(out)
    [(_, plugin, table)] = events["tables/table1_principal_angles"]
    assert plugin == "text" and table.item().decode() == tables["table1_principal_angles"]
    assert events["reading"][0][2].item().decode() == "3 of 4 claims agree"
    assert {plugin for values in events.values() for _, plugin, _ in values} == {"images", "text"}


def test_a_rebuild_replaces_the_previous_events(written):
    tmp_path, figures, tables, out = written
    write_tensorboard(str(tmp_path / "tb"), {"universal/gcnn": figures["universal/gcnn"]}, tables, "again")
    events = _events(out)
    assert len(glob.glob(os.path.join(out, "events.out.tfevents.*"))) == 1
    assert "vectors/gcnn/gradient" not in events and events["reading"][0][2].item().decode() == "again"
