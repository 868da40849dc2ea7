"""TensorBoard summaries of the report: spectra, universal curves, singular-vector
images and the report's tables.

Three event directories under `tensorboard_dir`, one per kind of content, so
that TensorBoard's run selector can show them apart:

- `analysis/`: `spectrum/<model>/<attack>` and `spectrum_sample/<model>/<attack>`
  (scalar = singular value, step = its index; `<attack>` includes `invariant`),
  `eigenvalue/<model>/<attack>/{top,second,gap}` (step 0), and
  `top_vectors/<model>/<attack>` (images of the top 5 singular vectors);
- `universal/`: `universal/<model>/<direction>/m<m>/{error_rate,fooling_rate,eps}`
  and `universal/<model>/random/{error_rate,fooling_rate,eps}`. TensorBoard steps are
  integers, so the step is the index in the eps grid and `.../eps` logs the
  norm at that index alongside;
- `report/`: `tables/<name>` and `reading` as markdown text.
"""

import os

import numpy as np

__all__ = ["write_tensorboard", "diverging_rgb"]


def diverging_rgb(vectors):
    """(k, 28, 28) real images -> (k, 28, 28, 3) RGB in [0, 1] on RdBu_r, 0 at the centre.

    TensorBoard shows images as they are, so the colormap is applied here; one
    symmetric scale for all k keeps their magnitudes comparable.
    """
    from matplotlib import colormaps

    images = np.asarray(vectors, dtype=np.float32)
    limit = float(np.max(np.abs(images))) or 1.0
    return colormaps["RdBu_r"](0.5 + 0.5 * images / limit)[..., :3].astype(np.float32)


def _series_writer(tf):
    """A function (tag, values) that logs `values` as one scalar per step 0, 1, ...

    Thousands of eager `tf.summary.scalar` calls take seconds each thousand on a
    busy CPU; one traced loop per writer does the same in milliseconds. The
    default writer is captured when the function is traced, hence one per writer.
    """
    from tensorboard.plugins.scalar import metadata

    scalar_metadata = metadata.create_summary_metadata(display_name=None, description=None)

    @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([None], tf.int64),
                                  tf.TensorSpec([None], tf.float32)])
    def write(tag, steps, values):
        for i in tf.range(tf.size(values)):
            tf.summary.write(tag, values[i], step=steps[i], metadata=scalar_metadata)

    def log(tag, values):
        # None (undefined, e.g. a norm never reached) is left out rather than drawn as 0.
        kept = [(i, float(v)) for i, v in enumerate(values or []) if v is not None]
        if kept:
            steps, numbers = zip(*kept)
            write(tf.constant(tag), tf.constant(steps, tf.int64), tf.constant(numbers, tf.float32))

    return log


def _write_analysis(tf, metrics, top_vectors):
    scalars = _series_writer(tf)
    for model, attacks in metrics["spectrum"].items():
        for attack, s in attacks.items():
            scalars(f"spectrum/{model}/{attack}", s["singular_values"])
            scalars(f"spectrum_sample/{model}/{attack}", s["singular_values_sample"])
    for model, s in metrics.get("invariant_spectrum", {}).items():
        scalars(f"spectrum/{model}/invariant", s["singular_values"])
        scalars(f"spectrum_sample/{model}/invariant", s["singular_values_sample"])
    for model, attacks in metrics["theory"].items():
        for attack, t in attacks.items():
            for name, key in (("top", "top_eigenvalue"), ("second", "second_eigenvalue"), ("gap", "eigengap")):
                scalars(f"eigenvalue/{model}/{attack}/{name}", [t[key]])
    for model, arrays in top_vectors.items():
        for name, vectors in arrays.items():
            if name != "invariant" and name not in metrics["spectrum"].get(model, {}):
                continue  # the `<name>_sample` arrays of top_vectors.npz: figures show all inputs' vectors
            tf.summary.image(f"top_vectors/{model}/{name}", diverging_rgb(np.asarray(vectors)[:5]), step=0,
                             max_outputs=5)


def _write_universal(tf, metrics):
    scalars = _series_writer(tf)

    def _write_curve(prefix, curve):
        for key in ("error_rate", "fooling_rate", "eps"):
            scalars(f"{prefix}/{key}", curve[key])

    for model, entries in metrics["universal"].items():
        for direction, entry in entries.items():
            if direction == "random":
                _write_curve(f"universal/{model}/random", entry)
            else:
                for m, curve in entry.items():
                    _write_curve(f"universal/{model}/{direction}/m{m}", curve)


def write_tensorboard(tensorboard_dir, metrics, top_vectors, tables, reading_markdown):
    """Writes the report's summaries as TensorBoard event files.

    Args:
        tensorboard_dir: root directory; `analysis/`, `universal/` and `report/` go under it.
        metrics: the report's metrics dict (see `build_report`).
        top_vectors: model -> name (attack or "invariant") -> (k, 28, 28) array.
        tables: table name -> markdown text.
        reading_markdown: the report's "Reading" section as markdown.

    Returns:
        The list of event directories written.
    """
    import tensorflow as tf

    written = []
    for name, write in (("analysis", lambda: _write_analysis(tf, metrics, top_vectors)),
                        ("universal", lambda: _write_universal(tf, metrics)),
                        ("report", lambda: _write_text(tf, tables, reading_markdown))):
        path = os.path.join(tensorboard_dir, name)
        writer = tf.summary.create_file_writer(path)
        with writer.as_default():
            write()
        writer.close()
        written.append(path)
    return written


def _write_text(tf, tables, reading_markdown):
    for name, markdown in tables.items():
        tf.summary.text(f"tables/{name}", markdown, step=0)
    tf.summary.text("reading", reading_markdown, step=0)
